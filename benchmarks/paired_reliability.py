"""How often a paired verdict fails, side by side with the stored-baseline gate.

    .venv/bin/python benchmarks/paired_reliability.py [--runs 20] [--cases aa,10,5,build]

BaselineValues A: the built-in tiny MoE model (8 layers, Q8_0), tg64 and pp128, 2 threads.
Candidates, each measured --runs times:

- ``aa``: A against A (two workers of the same configuration): every failure is false;
- ``10``: two more layers (10 of 8; measured here: tg about 13%, pp about 19% slower);
- ``5``: one more layer (9 of 8; measured here: tg 2-5%, pp about 10% slower: on a model
  this small the per-token work outside the layers is a large part);
- ``build``: A against A on a copy of the installed llama.cpp library (the build path).

For each case it prints how many paired verdicts said a speed (tg_tps or pp_tps)
regressed and how many said any metric did (with the default 5% threshold; more layers
also mean more memory, a true regression of rss), the median ratios B/A of tg_tps and
pp_tps, the wall time per verdict (both workloads), and, in the same
run, how often the stored-baseline gate (A accepted once at the start, default thresholds,
3 repetitions) fails the same candidate measured alone. A real second build (``--build
NAME``, e.g. one from ``llmperf build``) is measured with --real-build.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pytest_llmperf.backends.protocol import Runner
from pytest_llmperf.backends.runner import IsolatedRunner
from pytest_llmperf.machine import tiny
from pytest_llmperf.machine.builds import Runtime
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.results import BaselineValues
from pytest_llmperf.model.workloads import Workload
from pytest_llmperf.verdict import paired
from pytest_llmperf.verdict.judge import Policy, compare, judge
from pytest_llmperf.verdict.thresholds import default_rules

P = LoadParams(n_threads=2, n_ctx=512)
WORKLOADS = (Workload.parse("tg64"), Workload.parse("pp128"))


def model(**changes: int) -> str:
    spec = dataclasses.replace(tiny.MOE, **changes)
    family = (
        "tiny-moe" if not changes else "bench-" + "-".join(f"{k}{v}" for k, v in changes.items())
    )
    return str(tiny.ensure_model(spec, "q8_0", family=family).path)


def starter(path: str, lib: str | None = None) -> Callable[[], Runner]:
    runtime = Runtime(sys.executable, {"LLAMA_CPP_LIB_PATH": lib}, lib) if lib else None
    return lambda: IsolatedRunner(path, P, "m", runtime=runtime, build="copy" if lib else "default")


def stored_gate_fails(baseline: dict[str, BaselineValues], start_b: Callable[[], Runner]) -> bool:
    runner = start_b()
    try:
        ms = [runner.measure(w, 3, 1) for w in WORKLOADS]
    finally:
        runner.close()
    comps = compare(ms, baseline, default_rules())
    return judge("t", comps, Policy(), has_entry=True).outcome == "fail"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--cases", default="aa,10,5,build")
    ap.add_argument("--real-build", default="", help="a library folder to compare with A")
    args = ap.parse_args()

    a_path = model()
    candidates: dict[str, tuple[str, Callable[[], Runner]]] = {
        "aa": ("A vs A", starter(a_path)),
        "10": ("two more layers", starter(model(n_layer=10))),
        "5": ("one more layer", starter(model(n_layer=9))),
    }
    tmp = Path(tempfile.mkdtemp(prefix="llmperf-bench-"))
    if "build" in args.cases:
        import llama_cpp

        copy = tmp / "lib"
        shutil.copytree(Path(llama_cpp.__file__).parent / "lib", copy)
        candidates["build"] = ("A vs A on a copied library", starter(a_path, str(copy)))
    if args.real_build:
        candidates["real"] = (f"A vs build {args.real_build}", starter(a_path, args.real_build))
        if "real" not in args.cases.split(","):
            args.cases += ",real"

    # the stored baseline: A accepted once, at the start
    runner = starter(a_path)()
    try:
        baseline = {w.name: BaselineValues.of(runner.measure(w, 3, 1)) for w in WORKLOADS}
    finally:
        runner.close()

    rules = default_rules()
    head = ("case", "speed fails", "any fails", "tg B/A", "pp B/A", "s/verdict", "stored fails")
    print(
        f"{head[0]:<28} {head[1]:>11} {head[2]:>9} {head[3]:>7} {head[4]:>7} {head[5]:>9} "
        f"{head[6]:>12}"
    )
    for key in args.cases.split(","):
        if key not in candidates:
            continue
        label, start_b = candidates[key]
        speed_fails = any_fails = stored = 0
        ratios: dict[str, list[float]] = {"tg_tps": [], "pp_tps": []}
        seconds: list[float] = []
        for _ in range(args.runs):
            t0 = time.monotonic()
            speed = regressed = False
            for w in WORKLOADS:
                result = paired.run(starter(a_path), start_b, w, rules)
                regressed |= any(c.verdict == "regressed" for c in result.comparisons)
                by_metric = paired.as_mapping(result.comparisons)
                for name, values in ratios.items():
                    c = by_metric.get(name)
                    if c is not None and c.ratio is not None:
                        values.append(c.ratio)
                        speed |= c.verdict == "regressed"
            seconds.append(time.monotonic() - t0)
            speed_fails += speed
            any_fails += regressed
            stored += stored_gate_fails(baseline, start_b)
        tg, pp = (statistics.median(v) if v else float("nan") for v in ratios.values())
        n = args.runs
        print(
            f"{label:<28} {speed_fails:>8}/{n:<2} {any_fails:>6}/{n:<2} {tg:>7.3f} {pp:>7.3f} "
            f"{statistics.median(seconds):>9.1f} {stored:>9}/{n:<2}",
            flush=True,
        )
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
