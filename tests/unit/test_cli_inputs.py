"""The ``llmperf`` commands given the wrong input (issue 26, round three), through the real
command on real files:

- a file of another of our kinds (a baseline given to merge, sweep results given to
  compare, a baseline given to report) says what it is and what was expected, exit 2,
  nothing written (pytest_llmperf.model.ownership.expect);
- a command that compared or merged nothing is never a pass (exit 3);
- a selection that matches nothing (a missing --file, an unknown --machine, a test id)
  says where it looked and what is there.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_llmperf.baseline import BaselineStore, Pending, SessionRecord, entry_relpath
from pytest_llmperf.cli.main import main


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``llmperf ARGS`` in this process: exit status, stdout, stderr."""
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def stored(
    root: Path, nodeids: tuple[str, ...] = ("t.py::a", "t.py::b"), rate: float = 100.0
) -> Path:
    """A machine "box"'s baselines under ``root`` holding ``nodeids``; its manifest."""
    store = BaselineStore(root, "box")
    store.load()
    values = {"tg_tps": [rate * s for s in (0.97, 1.0, 1.03, 0.99, 1.01)]}
    for nodeid in nodeids:
        session = SessionRecord(
            accepted_at="2026-11-01T00:00:00+00:00",
            git_commit="abc",
            repetitions=5,
            warmup=1,
            values={"tg32": dict(values)},
        )
        store.queue(
            nodeid, "k1", Pending("m", {"params": {"n_threads": 2}, "workloads": ["tg32"]}, session)
        )
    store.flush()
    return store.path


def files(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- 8. a file of another of our kinds -------------------------------------------------------


def test_merge_given_a_baseline_file_says_what_it_is_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = stored(tmp_path / "baselines")
    per_test = manifest.parent / "box" / entry_relpath("t.py::a")
    out = tmp_path / "all.jsonl"
    for given in (per_test, manifest):
        rc, stdout, err = cli(capsys, "merge", str(given), "-o", str(out))
        assert rc == 2, stdout + err
        [line] = err.strip().splitlines()
        assert f"merge: {given} appears to be a pytest-llmperf baseline file" in line
        assert "expected pytest-llmperf sweep results" in line and "warning" not in err
        assert not out.exists()


def test_compare_and_report_given_files_of_another_kind_say_what_they_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    manifest = stored(tmp_path / "baselines")
    records = tmp_path / "shard.jsonl"
    records.write_text('{"id": "p1", "sweep": "s", "values": {}}\n')
    ranking = tmp_path / "rank.yaml"
    ranking.write_text("ranking: [p1, p2]\n")
    for given, appears in ((records, "pytest-llmperf sweep results"), (ranking, "ranking")):
        rc, _out, err = cli(capsys, "compare", str(given), str(manifest))
        assert rc == 2
        assert f"compare: {given} appears to be" in err and appears in err
        assert "expected a pytest-llmperf results.json or a pytest-llmperf baseline" in err
    report = tmp_path / "report"
    rc, _out, err = cli(capsys, "report", str(manifest), "-o", str(report))
    assert rc == 2 and f"report: {manifest} appears to be a pytest-llmperf baseline file" in err
    assert "expected a pytest-llmperf results.json" in err and not report.exists()
    rc, _out, err = cli(capsys, "history", "--file", str(records))
    assert rc == 2 and f"--file: {records} appears to be pytest-llmperf sweep results" in err


# -- 9. nothing compared is never a pass -----------------------------------------------------


def test_compare_of_files_without_a_test_in_common_is_not_a_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    a = stored(tmp_path / "a", ("t.py::a",))
    b = stored(tmp_path / "b", ("t.py::b",))
    rc, out, err = cli(capsys, "compare", str(a), str(b))
    assert rc == 3, out + err
    assert "pass" not in out and "nothing compared" in err
    assert "t.py::b: new" in out and "t.py::a: only in" in out


def test_merge_of_files_without_a_record_is_not_a_success(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "shard1.jsonl"
    empty.write_text("")
    out = tmp_path / "all.jsonl"
    rc, _stdout, err = cli(capsys, "merge", str(empty), "-o", str(out))
    assert rc == 3 and "nothing to merge" in err and f"{out} NOT written" in err
    assert not out.exists()


# -- 20. a selection that matches nothing ----------------------------------------------------


def test_history_of_a_missing_file_or_an_unknown_machine_says_what_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    manifest = stored(tmp_path / "baselines")
    rc, _out, err = cli(capsys, "history", "--file", "gone.json")
    assert rc == 2 and "--file gone.json: no such file or folder" in err and "''" not in err
    rc, _out, err = cli(capsys, "history", "--machine", "nobody")
    assert rc == 2
    assert "no baselines of machine 'nobody' there; machines with baselines there: box" in err
    rc, _out, err = cli(capsys, "history", "zzz", "--machine", "box")
    assert rc == 2 and "no stored test of machine 'box'" in err and "matches 'zzz'" in err
    assert "stored: t.py::a, t.py::b" in err
    rc, _out, err = cli(capsys, "baseline", "show", "t.py::zzz", "--file", str(manifest))
    assert rc == 2 and "has no entry for 't.py::zzz'; stored: t.py::a, t.py::b" in err


def test_history_of_one_tests_file_shows_that_test(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    manifest = stored(tmp_path / "baselines")
    per_test = manifest.parent / "box" / entry_relpath("t.py::b")
    assert json.loads(per_test.read_text())["nodeid"] == "t.py::b"
    rc, out, err = cli(capsys, "history", "--file", str(per_test))
    assert rc == 0, err
    assert "t.py::b [tg32]" in out and "t.py::a" not in out
    before = files(tmp_path)
    rc, out, err = cli(capsys, "baseline", "list", "--file", str(per_test))
    assert rc == 0 and "1 entries" in out and files(tmp_path) == before
