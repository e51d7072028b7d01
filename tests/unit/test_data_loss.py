"""Data loss found by a hostile-input battery, each closed as a class, through real files,
real pytest sessions (pytester) and the real ``llmperf`` command on the tiny models:

- an output file that exists and is not the file of ours its option writes is refused
  before anything is measured, and left byte for byte (pytest_llmperf.model.ownership);
- every write goes through symbolic links to their target, atomically there
  (pytest_llmperf.fileio);
- a baseline file that holds another test's entries (a renamed test, a moved file) is
  named with the fix and never written over, with or without --perf-accept.

Split by tier: pure parts in tests/unit/test_data_loss.py, real model runs in
tests/integration/test_data_loss.py and pytest sessions and child processes in
tests/e2e/test_data_loss.py.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from pytest_llmperf.errors import UsageError
from pytest_llmperf.fileio import write_atomic
from pytest_llmperf.outputs import write_benchmark_json, write_bmf, write_report
from pytest_llmperf.sweep.ranking import write_ranking
from pytest_llmperf.sweep.records import append_result, read_results


def temp_files(*folders: Path) -> list[str]:
    return [p.name for f in folders for p in f.rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def baseline_json() -> bytes:
    """A real per-test baseline file of this repository: the file a user most likely
    points an output option at by mistake."""
    root = Path(__file__).resolve().parents[2] / "baselines"
    return sorted(root.rglob("*/**/*.json"))[0].read_bytes()


def test_writers_refuse_what_is_not_theirs_and_take_what_is(
    tmp_path: Path, baseline_json: bytes
) -> None:
    foreign = tmp_path / "baseline.json"
    foreign.write_bytes(baseline_json)
    with pytest.raises(UsageError, match="appears to be a pytest-llmperf baseline file"):
        append_result(foreign, {"id": "p1"})
    with pytest.raises(UsageError, match="a pytest-llmperf baseline file"):
        write_ranking(foreign, ["p1"])
    with pytest.raises(UsageError, match="a pytest-llmperf baseline file"):
        write_bmf([], foreign)
    with pytest.raises(UsageError, match="a pytest-llmperf baseline file"):
        write_benchmark_json([], foreign)
    assert foreign.read_bytes() == baseline_json
    # another kind of ours is refused too: Bencher's file is not pytest-benchmark's
    bmf = tmp_path / "bmf.json"
    bmf.write_text('{"test_a[tg16]": {"tg-tps": {"value": 700.0}}}\n')
    write_bmf([], bmf)  # ours: rewritten
    bmf.write_text('{"test_a[tg16]": {"tg-tps": {"value": 700.0}}}\n')
    with pytest.raises(UsageError, match="appears to be Bencher Metric Format JSON written"):
        write_benchmark_json([], bmf)
    # results: our own file (a line cut by a crash included) takes more lines
    results = tmp_path / "r.jsonl"
    append_result(results, {"id": "p1"})
    with open(results, "ab") as fh:
        fh.write(b'{"id": "p2", "metr')
    append_result(results, {"id": "p3"})
    with pytest.warns(UserWarning, match="unreadable result line"):
        assert [r["id"] for r in read_results(results)] == ["p1", "p3"]
    with pytest.raises(UsageError, match="pytest-llmperf sweep results"):
        write_ranking(results, ["p1"])
    # a ranking the user edited is still a ranking
    ranking = tmp_path / "rank.yaml"
    ranking.write_text("# mine\n- p3\n- p1\n")
    write_ranking(ranking, ["p1"])
    # an empty file is anyone's
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    append_result(empty, {"id": "p1"})


def test_a_report_is_refused_before_any_file_is_written(tmp_path: Path) -> None:
    out = tmp_path / "site"
    out.mkdir()
    (out / "history.html").write_bytes(b"<!DOCTYPE html>\n<title>Team wiki</title>\n")
    with pytest.raises(UsageError, match=r"history\.html exists and appears to be an HTML page"):
        write_report([], out)
    assert os.listdir(out) == ["history.html"]
    # plots of an older version (untagged) beside its own results.json are ours
    older = tmp_path / "older"
    write_report([], older, plots=False)
    (older / "depth.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16)
    write_report([], older, plots=False)


# -- 3. writes go through symbolic links ----------------------------------------------------


def test_a_write_through_a_link_keeps_the_link_and_the_targets_mode(tmp_path: Path) -> None:
    real = tmp_path / "store" / "real.json"
    real.parent.mkdir()
    real.write_text("old\n")
    real.chmod(0o640)
    links = tmp_path / "links"
    links.mkdir()
    link = links / "file.json"
    link.symlink_to(os.path.relpath(real, links))
    write_atomic(link, "new\n")
    assert link.is_symlink() and os.readlink(link) == os.path.relpath(real, links)
    assert real.read_text() == "new\n"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert temp_files(tmp_path) == []
    # a dangling link is written where it points: the file is created there
    gone = tmp_path / "store" / "gone.json"
    dangling = links / "dangling.json"
    dangling.symlink_to(gone)
    write_atomic(dangling, "created\n")
    assert dangling.is_symlink() and gone.read_text() == "created\n"
    # a loop of links names no file: an error, nothing written
    (links / "a").symlink_to(links / "b")
    (links / "b").symlink_to(links / "a")
    with pytest.raises(OSError) as exc:
        write_atomic(links / "a", "x")
    assert exc.value.errno == errno.ELOOP
    assert (links / "a").is_symlink() and (links / "b").is_symlink()
