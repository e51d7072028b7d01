"""How much the timed loop adds to llama.cpp's own time, and how steady it is.

    .venv/bin/python benchmarks/bench_engine.py [--reps 10] [--threads 2]

For the default tiny MoE model and a tiny model with a 256k-token vocabulary, prints:
tg_tps from the engine against llama.cpp's own counter (n_eval / t_eval_ms) in the same
runs, the same for pp_tps, the coefficient of variation of tg_tps over the repetitions,
and, for reference, llama-cpp-python's high-level generate() loop on the same model.
Targets: tg ratio >= 0.98, pp ratio >= 0.97, CV < 3% on an idle machine.

    .venv/bin/python benchmarks/bench_engine.py --llama-bench PATH [--model NAME=PATH]

instead runs the engine and llama-bench of the same llama.cpp side by side (paired rounds)
and prints the engine's rates as a fraction of llama-bench's (target >= 0.98).
"""

from __future__ import annotations

import argparse
import statistics
import time

from pytest_llmperf.backends.engine import LoadedModel
from pytest_llmperf.machine import tiny
from pytest_llmperf.model.metrics import per_sample_metrics
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.workloads import Workload

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
    ap.add_argument("--llama-bench", default="", help="a llama-bench binary to compare with")
    ap.add_argument("--model", action="append", default=[], help="NAME=PATH of a real model")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    models = {"tiny-moe-mxfp4": str(tiny.ensure_variant("tiny-moe-mxfp4"))}
    models.update(dict(m.split("=", 1) for m in args.model))
    if args.llama_bench:
        for name, path in models.items():
            versus_llama_bench(name, path, args.llama_bench, args.threads, args.rounds)
        return
    bench("tiny-moe-mxfp4", models["tiny-moe-mxfp4"], args.reps, args.threads)
    big = tiny.ensure_model(BIG_VOCAB, "q8_0", family="tiny-256k").path
    bench("tiny-256k-vocab-q8_0", str(big), args.reps, args.threads)


def versus_llama_bench(name: str, path: str, binary: str, threads: int, rounds: int) -> None:
    """The engine against llama-bench of the same vendored llama.cpp, side by side in
    interleaved rounds (the paired machinery): the ratio engine/llama-bench of tg and pp.
    llama-bench's tg rate counts every decoded token, the engine's all but the first, so
    the engine runs tg129 against llama-bench's -n 128."""
    from pytest_llmperf.backends.llamabench import LlamaBenchRunner
    from pytest_llmperf.backends.runner import IsolatedRunner
    from pytest_llmperf.session.pairs import PairRunner
    from pytest_llmperf.verdict import paired
    from pytest_llmperf.verdict.thresholds import default_rules

    params = LoadParams(n_threads=threads, n_ctx=1024)

    class Bench(LlamaBenchRunner):
        """llama-bench answering the engine's workload in its own terms."""

        def measure(self, workload: Workload, repetitions: int = 3, warmup: int = 1):  # type: ignore[no-untyped-def]
            bench_wl = Workload(n_prompt=workload.n_prompt, n_gen=max(workload.n_gen - 1, 0))
            m = super().measure(bench_wl, repetitions, warmup)
            m.workload = workload
            return m

    n = 3 * rounds  # a fixed number of rounds over 3 loads: an estimate, not a verdict
    design = paired.Design(loads=3, max_loads=3, min_rounds=n, max_rounds=n, max_seconds=600)
    print(f"{name}: engine vs llama-bench ({binary}), {threads} threads, 3 loads x {rounds} rounds")
    pair = PairRunner(
        lambda: Bench(binary, path, params, "m"), lambda: IsolatedRunner(path, params, "m"), design
    )
    for wl, metric in ((Workload(n_gen=129), "tg_tps"), (Workload(n_prompt=512), "pp_tps")):
        result = pair.measure(wl, default_rules())
        c = paired.as_mapping(result.comparisons)[metric]
        print(
            f"  {metric}: llama-bench {c.baseline_median:8.1f}  engine {c.current_median:8.1f}  "
            f"engine/llama-bench {c.ratio:.3f} [{c.ratio_low:.3f}, {c.ratio_high:.3f}]  "
            "(target >= 0.98)"
        )
    pair.close()


if __name__ == "__main__":
    main()
