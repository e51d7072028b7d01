"""Data loss found by a hostile-input battery, each closed as a class, through real files,
real pytest sessions (pytester) and the real ``llmperf`` command on the tiny models:

- every write goes through symbolic links to their target, atomically there
  (pytest_llmperf.fileio).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from pytest_llmperf import baseline as bl
from pytest_llmperf import tiny
from pytest_llmperf.fileio import write_atomic

MACHINE = "dl"
FAST = [
    "-p",
    "no:cacheprovider",
    "--perf-repetitions=1",
    "--perf-warmup=0",
    f"--perf-machine={MACHINE}",
    "--perf-in-process",
]
MARK = '@pytest.mark.llmperf(model="m", n_threads=2, n_ctx=256)'


def suite(*names: str) -> str:
    return "import pytest\n" + "".join(
        f"""
{MARK}
def {name}(llm_perf):
    llm_perf.measure("tg16")
"""
        for name in names
    )


@pytest.fixture(scope="module")
def model() -> Path:
    """The tiny model, built before any pytester run (pytester moves HOME)."""
    return tiny.ensure_variant("moe-q8_0")


def project(pytester: pytest.Pytester, model: Path, tests: str) -> Path:
    """A project using ``model`` as "m"; returns the machine's folder of test files."""
    pytester.makefile(".yaml", llmperf=f"models:\n  m: {{path: {json.dumps(str(model))}}}\n")
    pytester.makepyfile(test_perf=tests)
    return pytester.path / "baselines" / MACHINE


def stored_file(pytester: pytest.Pytester, name: str) -> Path:
    return pytester.path / "baselines" / MACHINE / bl.entry_relpath(f"test_perf.py::{name}")


def temp_files(*folders: Path) -> list[str]:
    return [p.name for f in folders for p in f.rglob("*") if p.name.endswith(".tmp")]


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


def test_accept_writes_a_linked_baseline_file_through_its_link(
    pytester: pytest.Pytester, model: Path
) -> None:
    project(pytester, model, suite("test_a"))
    pytester.runpytest(*FAST, "--perf-accept").assert_outcomes(passed=1)
    path = stored_file(pytester, "test_a")
    shared = pytester.path / "shared" / "test_a.json"
    shared.parent.mkdir()
    shutil.move(path, shared)
    path.symlink_to(shared)
    res = pytester.runpytest(*FAST, "--perf-accept")
    res.assert_outcomes(passed=1)
    assert "updated: test_perf.py::test_a" in res.stdout.str()
    assert path.is_symlink() and path.resolve() == shared.resolve()
    [entry] = (
        bl.BaselineStore(pytester.path / "baselines", MACHINE)
        .load()
        .entries_for("test_perf.py::test_a")
        .values()
    )
    assert len(entry.sessions) == 2  # the target got the new session
    # the target gone, the link left: the next accept creates the file where it points
    shared.unlink()
    res = pytester.runpytest(*FAST, "--perf-accept")
    res.assert_outcomes(passed=1)
    assert "created: test_perf.py::test_a" in res.stdout.str()
    assert path.is_symlink() and shared.is_file()
    assert temp_files(pytester.path / "baselines", shared.parent) == []
