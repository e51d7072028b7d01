"""scripts/gpu_checks.py, the Python part of scripts/gpu-check.sh: its judgements with
made-up GPU figures, and its CPU form end to end on the built-in tiny models."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_checks.py"


@pytest.fixture(scope="module")
def gc() -> Iterator[ModuleType]:
    name = "_gpu_checks_under_test"
    spec = importlib.util.spec_from_file_location(name, SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


def test_vram_against_nvidia_smi(gc: ModuleType) -> None:
    close = {"a": {"vram_mb": 1000.0, "smi_mb": 1010.0}, "b": {"vram_mb": 0.0, "smi_mb": None}}
    assert gc.judge_smi(close)[0] == "pass"
    # the same offset everywhere: what the worker held before the load (a CUDA context)
    offset = {
        "a": {"vram_mb": 1000.0, "smi_mb": 1500.0},
        "b": {"vram_mb": 2000.0, "smi_mb": 2500.0},
    }
    status, figs, note = gc.judge_smi(offset)
    assert status == "pass" and figs["constant_offset_mb"] == -500.0 and "CUDA context" in note
    apart = {
        "a": {"vram_mb": 1000.0, "smi_mb": 1500.0},
        "b": {"vram_mb": 2000.0, "smi_mb": 2100.0},
    }
    assert gc.judge_smi(apart)[0] == "fail"
    assert gc.judge_smi({"a": {"vram_mb": None, "smi_mb": 1.0}})[0] == "fail"


def test_saving_scaling_release(gc: ModuleType) -> None:
    assert gc.judge_saving(1500.0, 1100.0, 408.0)[0] == "pass"
    assert gc.judge_saving(1500.0, 1400.0, 408.0)[0] == "fail"
    assert gc.judge_saving(None, 1400.0, 408.0)[0] == "fail"
    # short by one layer's experts (copied to the GPU for large batches): explained
    status, figs, note = gc.judge_saving(1500.0, 1145.0, 408.0, 51.0)
    assert status == "pass" and figs["op_offload_allowance_mb"] == 51.0 and "op offload" in note
    assert gc.judge_saving(1500.0, 1200.0, 408.0, 51.0)[0] == "fail"
    expected = {2: 120.0, 4: 240.0, 8: 480.0}
    assert gc.judge_scaling({0: 500.0, 2: 620.0, 4: 745.0, 8: 990.0}, expected)[0] == "pass"
    assert gc.judge_scaling({0: 500.0, 2: 620.0, 4: 600.0, 8: 990.0}, expected)[0] == "fail"
    assert gc.judge_scaling({0: None, 2: 620.0}, expected)[0] == "fail"
    assert gc.judge_release([("a", 500.0, 500.0), ("b", 502.0, 501.0)])[0] == "pass"
    assert gc.judge_release([("a", 500.0, 500.0), ("b", 500.0, 900.0)])[0] == "fail"


def test_parsers(gc: ModuleType) -> None:
    assert gc.parse_smi_apps("1234, 812\n99, 10\nNo running processes found\n") == {
        1234: 812.0,
        99: 10.0,
    }
    out = "....\n=== 4 passed, 2 skipped, 3 deselected in 12.31s ===\n"
    assert gc.parse_pytest_counts(out) == {"passed": 4, "skipped": 2, "deselected": 3}


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
