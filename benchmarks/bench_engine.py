"""How much the timed loop adds to llama.cpp's own time, and how steady it is.

    .venv/bin/python benchmarks/bench_engine.py [--reps 10] [--threads 2]

For the default tiny MoE model and a tiny model with a 256k-token vocabulary, prints:
tg_tps from the engine against llama.cpp's own counter (n_eval / t_eval_ms) in the same
runs, the same for pp_tps, the coefficient of variation of tg_tps over the repetitions,
and, for reference, llama-cpp-python's high-level generate() loop on the same model.
Targets: tg ratio >= 0.98, pp ratio >= 0.97, CV < 3% on an idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

from pytest_llmperf import tiny
from pytest_llmperf.backend.engine import LoadedModel
from pytest_llmperf.metrics import per_sample_metrics
from pytest_llmperf.params import LoadParams, Workload

BIG_VOCAB = tiny.TinySpec(
    n_layer=4, n_embd=256, n_ff=512, n_head=4, n_head_kv=2, n_vocab=256_000, n_ctx_train=4096
)


def high_level_tps(path: str, threads: int, n: int) -> float:
    """tokens/s of llama-cpp-python's Llama.generate() for n tokens (EOS ignored)."""
    import llama_cpp

    llm = llama_cpp.Llama(path, n_threads=threads, n_ctx=1024, verbose=False)
    tokens = [llm.token_bos()]
    times: list[int] = []
    for i, _tok in enumerate(llm.generate(tokens, temp=0.0, reset=True)):
        times.append(time.perf_counter_ns())
        if i + 1 >= n:
            break
    llm.close()
    return (len(times) - 1) / ((times[-1] - times[0]) / 1e9)


def bench(name: str, path: str, reps: int, threads: int) -> None:
    with LoadedModel(path, LoadParams(n_threads=threads, n_ctx=1024)) as m:
        tg = per_sample_metrics(m.run(Workload(n_gen=128), repetitions=reps, warmup=1))
        pp = per_sample_metrics(m.run(Workload(n_prompt=512), repetitions=reps, warmup=1))
    tg_med = statistics.median(tg["tg_tps"])
    tg_llama = statistics.median(tg["llama_tg_tps"])
    pp_med = statistics.median(pp["pp_tps"])
    pp_llama = statistics.median(pp["llama_pp_tps"])
    cv = statistics.stdev(tg["tg_tps"]) / statistics.mean(tg["tg_tps"])
    hl = high_level_tps(path, threads, 128)
    print(f"{name}: {m.n_vocab} vocab, {reps} reps, {threads} threads")
    print(
        f"  tg128: engine {tg_med:8.1f} t/s  llama.cpp counter {tg_llama:8.1f} t/s  "
        f"ratio {tg_med / tg_llama:.3f}  (target >= 0.98)"
    )
    print(
        f"  pp512: engine {pp_med:8.1f} t/s  llama.cpp counter {pp_llama:8.1f} t/s  "
        f"ratio {pp_med / pp_llama:.3f}  (target >= 0.97)"
    )
    print(f"  tg_tps CV over {reps} repetitions: {cv * 100:.2f}%  (aim < 3%)")
    print(
        f"  llama-cpp-python Llama.generate(): {hl:8.1f} t/s  (engine/generate = {tg_med / hl:.3f})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    bench("tiny-moe-mxfp4", str(tiny.ensure_variant("tiny-moe-mxfp4")), args.reps, args.threads)
    big = tiny.ensure_model(BIG_VOCAB, "q8_0", family="tiny-256k").path
    bench("tiny-256k-vocab-q8_0", str(big), args.reps, args.threads)


if __name__ == "__main__":
    main()
