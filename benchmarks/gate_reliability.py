"""How often the gate fails a test when nothing changed, and when the model got slower.

    .venv/bin/python benchmarks/gate_reliability.py [--runs 20] [--layers 8]

In a temporary project, one test measures ``tg64`` and ``pp128`` on a tiny MoE model
(registry id ``m``, default thresholds, default repetitions, isolated backend). The
baseline is accepted once; then the suite runs ``--runs`` times unchanged, ``--runs``
times with the same model id built with 25% more layers (about 20% slower), and
``--runs`` times with 12.5% more layers (about 10% slower). Prints how many runs failed
in each case (targets: 0, all, and as many as possible) and the median tg_tps change.

With a history (baselines that know their machine):

    .venv/bin/python benchmarks/gate_reliability.py --history DIR --record   # at 5 times
    .venv/bin/python benchmarks/gate_reliability.py --history DIR [--runs 20]

``--record`` accepts one more session into the baselines in DIR (run it at different
times: the history measures the drift between them); without it, the cases run against
that history and the script also prints how many runs were inconclusive, the drift the
history measured and the smallest change each gated metric can detect.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TEST = """
import pytest

@pytest.mark.llmperf(model="m", n_threads=2, n_ctx=512)
def test_decode(llm_perf):
    llm_perf.measure("tg64")
    llm_perf.measure("pp128")
"""


def run(project: Path, layers: int, *extra: str) -> tuple[int, float | None, list[str]]:
    (project / "llmperf.yaml").write_text(
        f"models:\n  m: {{tiny: {{moe: true, n_layer: {layers}, quant: q8_0}}}}\n"
    )
    report = project / "rep"
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--perf-machine=m",
            f"--perf-report={report}",
            *extra,
        ],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    change = None
    regressed: list[str] = []
    try:
        data = json.loads((report / "results.json").read_text())
        for workload, comps in data["tests"][0]["comparisons"].items():
            for comp in comps:
                if workload == "tg64" and comp["metric"] == "tg_tps":
                    change = comp["change_pct"]
                if comp["verdict"] == "regressed":
                    regressed.append(f"{workload}:{comp['metric']} {comp['change_pct']:+.1f}%")
    except (OSError, KeyError, IndexError, ValueError, TypeError):
        pass
    return proc.returncode, change, regressed


def history_summary(project: Path) -> list[str]:
    """Drift and smallest detectable change per gated metric of the last run."""
    data = json.loads((project / "rep" / "results.json").read_text())
    out = []
    for workload, comps in data["tests"][0]["comparisons"].items():
        for c in comps:
            if c.get("detectable_pct") is not None and c.get("threshold"):
                drift = c.get("drift_pct")
                out.append(
                    f"  {workload}:{c['metric']:<11} drift ±{drift:5.1f}%  detects >= "
                    f"{c['detectable_pct']:5.1f}%  (threshold {c['threshold']}, "
                    f"{c['sessions']} sessions)"
                    if drift is not None
                    else f"  {workload}:{c['metric']} {c['sessions']} sessions: drift unknown"
                )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--cases", type=int, default=3, help="1: only the unchanged case")
    ap.add_argument("--history", default="", help="a folder keeping the baselines' history")
    ap.add_argument("--record", action="store_true", help="accept one more session and stop")
    args = ap.parse_args()
    base = args.layers
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "test_perf.py").write_text(TEST)
        (project / "pytest.ini").write_text("[pytest]\n")
        extra: list[str] = []
        if args.history:
            extra = [f"--perf-baseline-dir={Path(args.history).absolute()}"]
            if args.record:
                rc, _, _ = run(project, base, "--perf-accept", *extra)
                print("recorded one session" if rc == 0 else "accepting failed")
                return
        else:
            rc, _, _ = run(project, base, "--perf-accept")
            assert rc == 0, "accepting the baseline failed"
        cases = (
            ("unchanged", base),
            ("~20% slower", base + base // 4),
            ("~10% slower", base + base // 8),
        )
        for label, layers in cases[: args.cases]:
            fails = inconclusive = 0
            changes: list[float] = []
            why: dict[str, int] = {}
            for _ in range(args.runs):
                rc, change, regressed = run(project, layers, *extra)
                fails += rc != 0
                inconclusive += _verdict(project) == "inconclusive"
                if change is not None:
                    changes.append(change)
                for r in regressed:
                    name = r.split(" ")[0]
                    why[name] = why.get(name, 0) + 1
            med = f"{statistics.median(changes):+.1f}%" if changes else "-"
            print(
                f"{label:<12} n_layer={layers:<3} failed {fails:>2}/{args.runs}  "
                f"inconclusive {inconclusive:>2}/{args.runs}  "
                f"median tg_tps change {med}  regressed metrics: "
                + (", ".join(f"{k} x{v}" for k, v in sorted(why.items())) or "none"),
                flush=True,
            )
            if args.history and label == "unchanged":
                print("\n".join(history_summary(project)), flush=True)


def _verdict(project: Path) -> str:
    try:
        data = json.loads((project / "rep" / "results.json").read_text())
        return str(data["tests"][0]["verdict"])
    except (OSError, KeyError, IndexError, ValueError):
        return "?"


if __name__ == "__main__":
    main()
