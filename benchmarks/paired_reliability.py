"""How often a paired verdict fails, side by side with the stored-baseline gate.

    .venv/bin/python benchmarks/paired_reliability.py [--runs 20] [--cases aa,10,5,build]

Reference A: the built-in tiny MoE model (8 layers, Q8_0), tg64 and pp128, 2 threads.
Candidates, each measured --runs times:

- ``aa``: A against A (two workers of the same configuration): every failure is false;
- ``10``: the same model id with one more layer (9 of 8: about 10% slower);
- ``5``: a slightly wider expert FFN (about 5% slower);
- ``build``: A against A on a copy of the installed llama.cpp library (the build path).

For each case it prints how many paired verdicts regressed (with the default 5%
threshold), the median ratio B/A of tg_tps, the wall time per verdict, and, in the same
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

from pytest_llmperf import paired, tiny
from pytest_llmperf.backend.runner import IsolatedRunner, Runner
from pytest_llmperf.builds import Runtime
from pytest_llmperf.judge import Policy, compare, judge
from pytest_llmperf.params import LoadParams, Workload
from pytest_llmperf.results import Reference
from pytest_llmperf.thresholds import default_rules

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


def stored_gate_fails(baseline: dict[str, Reference], start_b: Callable[[], Runner]) -> bool:
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
        "10": ("one more layer (~10%)", starter(model(n_layer=9))),
        "5": ("wider expert FFN (~5%)", starter(model(n_ff=768, n_expert_used=3))),
    }
    tmp = Path(tempfile.mkdtemp(prefix="llmperf-bench-"))
    if "build" in args.cases:
        import llama_cpp

        copy = tmp / "lib"
        shutil.copytree(Path(llama_cpp.__file__).parent / "lib", copy)
        candidates["build"] = ("A vs A on a copied library", starter(a_path, str(copy)))
    if args.real_build:
        candidates["real"] = (f"A vs build {args.real_build}", starter(a_path, args.real_build))
        args.cases += ",real"

    # the stored baseline: A accepted once, at the start
    runner = starter(a_path)()
    try:
        baseline = {w.name: Reference.of(runner.measure(w, 3, 1)) for w in WORKLOADS}
    finally:
        runner.close()

    rules = default_rules()
    head = ("case", "paired fails", "median B/A", "s/verdict", "stored fails")
    print(f"{head[0]:<28} {head[1]:>12} {head[2]:>10} {head[3]:>9} {head[4]:>12}")
    for key in args.cases.split(","):
        if key not in candidates:
            continue
        label, start_b = candidates[key]
        fails = stored = 0
        ratios: list[float] = []
        seconds: list[float] = []
        for _ in range(args.runs):
            t0 = time.monotonic()
            regressed = False
            for w in WORKLOADS:
                result = paired.run(starter(a_path), start_b, w, rules)
                regressed |= any(c.verdict == "regressed" for c in result.comparisons)
                if w.name == "tg64":
                    tg = paired.as_mapping(result.comparisons).get("tg_tps")
                    if tg is not None and tg.ratio is not None:
                        ratios.append(tg.ratio)
            seconds.append(time.monotonic() - t0)
            fails += regressed
            stored += stored_gate_fails(baseline, start_b)
        med = statistics.median(ratios) if ratios else float("nan")
        print(
            f"{label:<28} {fails:>9}/{args.runs:<2} {med:>10.3f} "
            f"{statistics.median(seconds):>9.1f} {stored:>9}/{args.runs:<2}",
            flush=True,
        )
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
