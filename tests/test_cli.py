"""The ``llmperf`` command: compare, report, baseline list/show/prune, tiny-model --list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_llmperf.baseline import BaselineStore
from pytest_llmperf.cli import main
from pytest_llmperf.params import LoadParams, Workload
from pytest_llmperf.results import Measurement


def measurement(rate: float, workload: str = "tg32") -> Measurement:
    spread = [0.97, 1.0, 1.03, 0.99, 1.01]
    return Measurement(
        model="m",
        model_path="/m.gguf",
        params=LoadParams(n_threads=2),
        workload=Workload.parse(workload),
        samples=[],
        values={"tg_tps": [rate * s for s in spread], "ttft_ms": [1000 / rate * s for s in spread]},
        repetitions=5,
    )


def store_with(tmp_path: Path, name: str, rate: float) -> Path:
    store = BaselineStore(tmp_path / name, "box")
    store.load()
    for nodeid in ("t.py::a", "t.py::b"):
        store.queue(
            nodeid,
            "k1",
            {
                "accepted_at": "2026-11-01T00:00:00+00:00",
                "git_commit": "abc",
                "model": "m",
                "fingerprint": {},
                "measurements": {"tg32": measurement(rate).to_dict()},
            },
        )
    store.flush()
    return store.path


def test_compare_passes_then_fails_on_a_regression(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    base = store_with(tmp_path, "a", 100.0)
    same = store_with(tmp_path, "b", 101.0)
    slow = store_with(tmp_path, "c", 70.0)
    assert main(["compare", str(base), str(same)]) == 0
    assert "2 compared: pass" in capsys.readouterr().out
    assert main(["compare", str(base), str(slow)]) == 1
    out = capsys.readouterr().out
    assert "t.py::a: regressed" in out and "tg_tps" in out and "-30.0%" in out
    assert "re-run with --perf-accept" in out


def test_compare_reads_results_json_and_report_rerenders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_llmperf.report import write_report
    from pytest_llmperf.results import TestReport

    monkeypatch.chdir(tmp_path)
    reports = [TestReport(nodeid="t.py::a", measurements=[measurement(100.0)])]
    write_report(reports, tmp_path / "r1", plots=False)
    slow = [TestReport(nodeid="t.py::a", measurements=[measurement(50.0)])]
    write_report(slow, tmp_path / "r2", plots=False)
    assert (
        main(["compare", str(tmp_path / "r1/results.json"), str(tmp_path / "r2/results.json")]) == 1
    )
    capsys.readouterr()
    assert main(["report", str(tmp_path / "r2/results.json"), "-o", str(tmp_path / "r3")]) == 0
    assert (tmp_path / "r3" / "summary.md").is_file()


def test_baseline_list_show_prune(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = store_with(tmp_path, "bl", 100.0)
    args = ["--file", str(path)]
    assert main(["baseline", "list", *args]) == 0
    out = capsys.readouterr().out
    assert "2 entries" in out and "t.py::a  [k1]" in out
    assert main(["baseline", "show", *args, "t.py::b"]) == 0
    assert "tg_tps" in capsys.readouterr().out
    assert main(["baseline", "show", *args, "t.py::zzz"]) == 2  # a usage error, named
    assert "no entry for 't.py::zzz'" in capsys.readouterr().err
    assert main(["baseline", "prune", *args]) == 2  # says what it needs
    before = path.read_bytes()
    assert main(["baseline", "prune", *args, "--nodeid", "t.py::a", "--dry-run"]) == 0
    assert path.read_bytes() == before
    assert main(["baseline", "prune", *args, "--nodeid", "t.py::a"]) == 0
    assert list(json.loads(path.read_text())["entries"]) == ["t.py::b"]


def test_tiny_model_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tiny-model", "--list"]) == 0
    assert "tiny-moe-mxfp4" in capsys.readouterr().out.split()


def test_tiny_model_prune_removes_only_stale_builtin_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_llmperf import tiny

    current = tiny.model_path(tiny.MOE, "q8_0", tmp_path, "tiny-moe")
    stale = tmp_path / "tiny-moe-q8_0-0123456789abcdef.gguf"
    custom = tmp_path / "my-model-q8_0-0123456789abcdef.gguf"
    for p in (current, stale, custom):
        p.write_bytes(b"GGUF")
    assert main(["tiny-model", "--prune", "--cache-dir", str(tmp_path)]) == 0
    assert current.exists() and custom.exists() and not stale.exists()
    assert str(stale) in capsys.readouterr().out
