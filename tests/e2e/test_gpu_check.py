"""scripts/gpu_checks.py, the Python part of scripts/gpu-check.sh: its CPU form end to end
on the built-in tiny models (its judges are the package's: tests/unit/test_gpu_verdicts.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_checks.py"


@pytest.mark.slow
def test_cpu_form_writes_the_summary(tmp_path: Path) -> None:
    """The whole flow on a CPU build: CPU figures, GPU checks skipped (not failed)."""
    args = ["--out", str(tmp_path), "--mode", "cpu", "--quick", "--skip-pytest"]
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "gpu-summary.json").read_text())
    rows = {r["name"]: r for r in summary["rows"]}
    assert summary["ok"] and summary["counts"]["fail"] == 0
    for name in ("environment", "models", "moe_ngl0", "dense_ngl0"):
        assert rows[name]["status"] == "pass", rows[name]
    cpu = rows["moe_ngl0"]["figures"]
    assert cpu["load_ms"] > 0 and cpu["pp_tps"] > 0 and cpu["tg_tps"] > 0
    assert cpu["vram_mb"] is None
    for name in ("cuda_backend", "moe_ngl8", "offload_scaling", "vram_vs_nvidia_smi"):
        assert rows[name]["status"] == "skipped" and "no GPU" in rows[name]["notes"], rows[name]
    # the cpu-moe path ran: every expert tensor kept on the CPU, half of them for n_cpu_moe
    saving = rows["cpu_moe_saving"]["figures"]
    assert saving["cpu_moe_tensors"] == saving["expected_cpu_tensors"] > 0
    half = rows["n_cpu_moe_saving"]["figures"]
    assert half["cpu_moe_tensors"] == saving["expected_cpu_tensors"] // 2
    md = (tmp_path / "gpu-summary.md").read_text()
    assert "| check | status | load ms | pp t/s | tg t/s | VRAM MB | details |" in md
    assert "| moe_ngl0 | pass |" in md and "no GPU" in md
