"""The ``llmperf`` command: compare, report, baseline list/show/prune, tiny-model --list."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llmperf.baseline import BaselineStore, Pending, SessionRecord
from pytest_llmperf.cli.main import main
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.results import Measurement
from pytest_llmperf.model.workloads import Workload


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
    m = measurement(rate)
    for nodeid in ("t.py::a", "t.py::b"):
        session = SessionRecord(
            accepted_at="2026-11-01T00:00:00+00:00",
            git_commit="abc",
            repetitions=5,
            warmup=1,
            values={"tg32": dict(m.values)},
        )
        store.queue(
            nodeid, "k1", Pending("m", {"params": {"n_threads": 2}, "workloads": ["tg32"]}, session)
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
    from pytest_llmperf.model.results import TestResult
    from pytest_llmperf.outputs import write_report

    monkeypatch.chdir(tmp_path)
    reports = [TestResult(nodeid="t.py::a", measurements=[measurement(100.0)])]
    write_report(reports, tmp_path / "r1", plots=False)
    slow = [TestResult(nodeid="t.py::a", measurements=[measurement(50.0)])]
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
    assert "2 entries" in out and "t.py::a  [" in out and "1 session(s)" in out
    assert main(["baseline", "show", *args, "t.py::b"]) == 0
    shown = capsys.readouterr().out
    assert "tg_tps" in shown and "1 accepted session(s)" in shown and "drift unknown" in shown
    assert main(["baseline", "show", *args, "t.py::zzz"]) == 2  # a usage error, named
    assert "no entry for 't.py::zzz'" in capsys.readouterr().err
    assert main(["baseline", "prune", *args]) == 2  # says what it needs
    files = sorted(p.read_bytes() for p in (path.parent / "box").rglob("*.json"))
    # a dry run by default: shows what would go, removes nothing
    assert main(["baseline", "prune", *args, "--nodeid", "t.py::a"]) == 0
    out = capsys.readouterr().out
    assert "would remove 1 entries" in out and "--yes" in out
    assert sorted(p.read_bytes() for p in (path.parent / "box").rglob("*.json")) == files
    assert main(["baseline", "prune", *args, "--nodeid", "t.py::a", "--yes"]) == 0
    assert [e.nodeid for e in BaselineStore(path.parent, "box").load().list_entries()] == [
        "t.py::b"
    ]


def test_prune_refuses_an_empty_keep_list_and_removing_everything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed `pytest --collect-only -q > ids.txt` leaves no ids: pruning against it
    must not delete every baseline."""
    path = store_with(tmp_path, "bl", 100.0)
    args = ["--file", str(path)]
    ids = tmp_path / "ids.txt"
    ids.write_text("ERROR: file or directory not found: wrong/path\n\nno tests ran in 0.01s\n")
    assert main(["baseline", "prune", *args, "--keep-from", str(ids), "--yes"]) == 2
    assert "holds no test node ids" in capsys.readouterr().err
    ids.write_text("t.py::zzz\n")
    assert main(["baseline", "prune", *args, "--keep-from", str(ids), "--yes"]) == 2
    assert "would remove every entry (2)" in capsys.readouterr().err
    assert len(BaselineStore(path.parent, "box").load().list_entries()) == 2
    assert main(["baseline", "prune", *args, "--keep-from", str(ids), "--yes", "--all"]) == 0
    assert BaselineStore(path.parent, "box").load().list_entries() == []
    assert main(["baseline", "prune", *args, "--keep-from", str(tmp_path / "missing")]) == 2
    assert "cannot read it" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["baseline", "prune", "--older-than", "nan"], "not a finite number"),
        (["compare", "--alpha", "2", "a", "b"], "between 0 and 1"),
    ],
)
def test_bad_numbers_on_the_command_line_are_usage_errors(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and fragment in capsys.readouterr().err


def test_report_output_paths_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_llmperf.model.results import TestResult
    from pytest_llmperf.outputs import write_report

    write_report(
        [TestResult(nodeid="t.py::a", measurements=[measurement(100.0)])],
        tmp_path / "r",
        plots=False,
    )
    results = str(tmp_path / "r" / "results.json")
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["report", results, "-o", str(afile)]) == 2
    assert f"report -o {afile}: is a file" in capsys.readouterr().err
    assert main(["report", results, "-o", str(afile / "sub")]) == 2
    err = capsys.readouterr().err
    assert "cannot write there" in err and "Traceback" not in err
    assert main(["compare", str(tmp_path / "nope.json"), results]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_tiny_model_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tiny-model", "--list"]) == 0
    assert "tiny-moe-mxfp4" in capsys.readouterr().out.split()


def test_tiny_model_prune_removes_only_stale_builtin_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_llmperf.machine import tiny

    current = tiny.model_path(tiny.MOE, "q8_0", tmp_path, "tiny-moe")
    stale = tmp_path / "tiny-moe-q8_0-0123456789abcdef.gguf"
    custom = tmp_path / "my-model-q8_0-0123456789abcdef.gguf"
    mine = tmp_path / "tiny-moe-mine.gguf"  # a user's model that happens to share the prefix
    for p in (current, stale, custom, mine):
        p.write_bytes(b"GGUF")
    assert main(["tiny-model", "--prune", "--cache-dir", str(tmp_path)]) == 0
    assert current.exists() and custom.exists() and mine.exists() and not stale.exists()
    assert str(stale) in capsys.readouterr().out


def test_history_prints_medians_and_steps_and_writes_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = BaselineStore(tmp_path / "bl", "box", history=10)
    store.load()
    for day, rate in enumerate([100.0, 101.0, 99.0, 100.0, 80.0, 81.0, 79.0, 80.0], start=1):
        m = measurement(rate)
        session = SessionRecord(
            accepted_at=f"2026-11-{day:02d}T00:00:00+00:00",
            git_commit=None,
            repetitions=5,
            warmup=1,
            values={"tg32": dict(m.values)},
        )
        store.queue("t.py::a", "k1", Pending("m", {"params": {}, "workloads": ["tg32"]}, session))
        store.flush()
    args = ["--file", str(store.path)]
    assert main(["history", *args, "t.py::a", "-o", str(tmp_path / "h")]) == 0
    out = capsys.readouterr().out
    assert "t.py::a [tg32]  8 session(s)" in out
    tg = next(line for line in out.splitlines() if line.strip().startswith("tg_tps"))
    assert tg.index("step ->") > tg.index("100")  # the step before the 80s
    assert (tmp_path / "h" / "history.md").is_file()
    assert main(["history", *args, "t.py::zzz"]) == 2
