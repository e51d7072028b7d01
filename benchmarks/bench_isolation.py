"""What running llama.cpp in a child process costs, against running it in-process.

    .venv/bin/python benchmarks/bench_isolation.py [--rounds 8]

Alternates an in-process and an isolated runner of the tiny MoE model, ``--rounds``
times each (alternating, so the machine's drift hits both alike), and prints the median
load_ms, tg_tps (tg64) and pp_tps (pp128) of each and their ratios, plus the process start
time the isolated runner adds (outside every metric).
"""

from __future__ import annotations

import argparse
import statistics
import time

from pytest_llmperf.backends.inprocess import InProcessRunner
from pytest_llmperf.backends.runner import IsolatedRunner
from pytest_llmperf.machine import tiny
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.workloads import Workload


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args()
    path = str(tiny.ensure_variant("tiny-moe-mxfp4"))
    params = LoadParams(n_threads=2, n_ctx=512)
    figures: dict[str, dict[str, list[float]]] = {"in-process": {}, "isolated": {}}
    for _ in range(args.rounds):
        for label, cls in (("in-process", InProcessRunner), ("isolated", IsolatedRunner)):
            start = time.perf_counter()
            runner = cls(path, params, "tiny-moe-mxfp4")
            setup_s = time.perf_counter() - start
            tg = runner.measure(Workload.parse("tg64"), repetitions=3, warmup=1)
            pp = runner.measure(Workload.parse("pp128"), repetitions=3, warmup=1)
            runner.close()
            row = figures[label]
            row.setdefault("setup_s", []).append(setup_s)
            row.setdefault("load_ms", []).append(runner.load_ms)
            row.setdefault("tg_tps", []).append(statistics.median(tg.values["tg_tps"]))
            row.setdefault("pp_tps", []).append(statistics.median(pp.values["pp_tps"]))
    med = {k: {m: statistics.median(v) for m, v in rows.items()} for k, rows in figures.items()}
    print(f"tiny-moe-mxfp4, 2 threads, {args.rounds} alternating rounds (medians)")
    for metric in ("load_ms", "tg_tps", "pp_tps", "setup_s"):
        a, b = med["in-process"][metric], med["isolated"][metric]
        print(
            f"  {metric:<8} in-process {a:9.2f}  isolated {b:9.2f}  isolated/in-process {b / a:.3f}"
        )


if __name__ == "__main__":
    main()
