"""How often the gate fails a test when nothing changed, and when the model got slower.

    .venv/bin/python benchmarks/gate_reliability.py [--runs 20] [--layers 8]

In a temporary project, one test measures ``tg64`` and ``pp128`` on a tiny MoE model
(registry id ``m``, default thresholds, default repetitions, isolated backend). The
baseline is accepted once; then the suite runs ``--runs`` times unchanged, ``--runs``
times with the same model id built with 25% more layers (about 20% slower), and
``--runs`` times with 12.5% more layers (about 10% slower). Prints how many runs failed
in each case (targets: 0, all, and as many as possible) and the median tg_tps change.
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


def run(project: Path, layers: int, *extra: str) -> tuple[int, float | None]:
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
    try:
        data = json.loads((report / "results.json").read_text())
        for comp in data["tests"][0]["comparisons"].get("tg64", []):
            if comp["metric"] == "tg_tps":
                change = comp["change_pct"]
    except (OSError, KeyError, IndexError, ValueError):
        pass
    return proc.returncode, change


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--layers", type=int, default=8)
    args = ap.parse_args()
    base = args.layers
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "test_perf.py").write_text(TEST)
        (project / "pytest.ini").write_text("[pytest]\n")
        rc, _ = run(project, base, "--perf-accept")
        assert rc == 0, "accepting the baseline failed"
        for label, layers in (
            ("unchanged", base),
            ("~20% slower", base + base // 4),
            ("~10% slower", base + base // 8),
        ):
            fails = 0
            changes: list[float] = []
            for _ in range(args.runs):
                rc, change = run(project, layers)
                fails += rc != 0
                if change is not None:
                    changes.append(change)
            med = f"{statistics.median(changes):+.1f}%" if changes else "-"
            print(
                f"{label:<12} n_layer={layers:<3} failed {fails:>2}/{args.runs}  "
                f"median tg_tps change {med}",
                flush=True,
            )


if __name__ == "__main__":
    main()
