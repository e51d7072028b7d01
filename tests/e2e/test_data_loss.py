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

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_llmperf import baseline as bl
from pytest_llmperf.sweep.records import append_result
from tests.unit.test_data_loss import temp_files

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


def project(pytester: pytest.Pytester, model: Path, tests: str) -> Path:
    """A project using ``model`` as "m"; returns the machine's folder of test files."""
    pytester.makefile(".yaml", llmperf=f"models:\n  m: {{path: {json.dumps(str(model))}}}\n")
    pytester.makepyfile(test_perf=tests)
    return pytester.path / "baselines" / MACHINE


def stored_file(pytester: pytest.Pytester, name: str) -> Path:
    return pytester.path / "baselines" / MACHINE / bl.entry_relpath(f"test_perf.py::{name}")


@pytest.fixture(scope="module")
def baseline_json() -> bytes:
    """A real per-test baseline file of this repository: the file a user most likely
    points an output option at by mistake."""
    root = Path(__file__).resolve().parents[2] / "baselines"
    return sorted(root.rglob("*/**/*.json"))[0].read_bytes()


# -- 1. output files that are not ours ------------------------------------------------------

#: a pytest-benchmark run saved by pytest-benchmark itself (not ours to overwrite)
OTHER_BENCHMARK = json.dumps(
    {
        "machine_info": {"node": "ci"},
        "commit_info": {"id": "abc"},
        "benchmarks": [{"name": "test_sort", "stats": {"mean": 0.1}, "extra_info": {}}],
        "datetime": "2025-01-01T00:00:00",
        "version": "5.1.0",
    }
).encode()
README = b"# My project\n\nNotes that must survive.\n"


@pytest.mark.parametrize(
    ("option", "name", "content", "appears"),
    [
        (
            "--perf-sweep-results",
            "baseline.json",
            None,
            "appears to be a pytest-llmperf baseline file (of test perf_tests/",
        ),
        ("--perf-sweep-results", "notes.md", README, "appears to be a Markdown or text file"),
        (
            "--perf-benchmark-json",
            "bench.json",
            OTHER_BENCHMARK,
            "appears to be pytest-benchmark JSON not written by pytest-llmperf",
        ),
        ("--perf-benchmark-json", "baseline.json", None, "a pytest-llmperf baseline file"),
        ("--perf-bmf", "baseline.json", None, "a pytest-llmperf baseline file"),
        (
            "--perf-bmf",
            "results.json",
            b'{"schema_version": 1, "generated_at": "x", "tests": []}\n',
            "appears to be a pytest-llmperf results.json",
        ),
        ("--perf-ranking", "rank.json", None, "a pytest-llmperf baseline file"),
        (
            "--perf-ranking",
            "sweeps.yaml",
            b"sweeps:\n  kv: {models: [m], workloads: [tg8]}\n",
            "appears to be a sweep definition (YAML)",
        ),
    ],
)
def test_an_output_file_not_ours_is_refused_before_anything_runs(
    pytester: pytest.Pytester,
    model: Path,
    baseline_json: bytes,
    option: str,
    name: str,
    content: bytes | None,
    appears: str,
) -> None:
    project(pytester, model, suite("test_a"))
    target = pytester.path / name
    target.write_bytes(baseline_json if content is None else content)
    before = target.read_bytes()
    res = pytester.runpytest(*FAST, f"{option}={target}")
    assert res.ret == pytest.ExitCode.USAGE_ERROR, res.stdout.str() + res.stderr.str()
    [line] = [ln for ln in res.stderr.lines if str(target) in ln]
    assert option in line and appears in line, line
    assert "nothing was written to it: choose another path or remove it" in line
    assert target.read_bytes() == before
    assert not (pytester.path / "baselines").exists()  # nothing measured, nothing recorded


@pytest.mark.parametrize(
    ("name", "content", "appears"),
    [
        ("results.json", None, "a pytest-llmperf baseline file"),
        ("summary.md", README, "a Markdown or text file"),
        ("report.html", b"<!DOCTYPE html>\n<html><title>home</title></html>\n", "an HTML page"),
        ("metric_tg_tps.png", b"\x89PNG\r\n\x1a\nnot ours", "a PNG image of another program"),
    ],
)
def test_a_report_folder_holding_files_not_ours_is_refused(
    pytester: pytest.Pytester,
    model: Path,
    baseline_json: bytes,
    name: str,
    content: bytes | None,
    appears: str,
) -> None:
    project(pytester, model, suite("test_a"))
    folder = pytester.path / "site"
    folder.mkdir()
    (folder / name).write_bytes(baseline_json if content is None else content)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    res = pytester.runpytest(*FAST, f"--perf-report={folder}")
    assert res.ret == pytest.ExitCode.USAGE_ERROR, res.stdout.str()
    err = res.stderr.str()
    assert f"--perf-report: {folder / name} exists and appears to be {appears}" in err, err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_outputs_of_our_own_are_written_again(pytester: pytest.Pytester, model: Path) -> None:
    """No false refusal: a second session rewrites the report folder and the exports a
    first one wrote."""
    from pytest_llmperf.model import ownership

    project(pytester, model, suite("test_a"))
    out = pytester.path / "out"
    args = [
        *FAST,
        f"--perf-report={out / 'report'}",
        f"--perf-benchmark-json={out / 'bench.json'}",
        f"--perf-bmf={out / 'bmf.json'}",
    ]
    out.mkdir()
    (out / "bmf.json").write_text("")  # an empty file is anyone's
    first = pytester.runpytest(*args)
    first.assert_outcomes(passed=1)
    report = out / "report"
    pngs = sorted(p.name for p in report.glob("*.png"))
    assert "results.json" in os.listdir(report) and pngs
    assert all(ownership.png_software(report / p) == ownership.PNG_SOFTWARE for p in pngs)
    second = pytester.runpytest(*args)
    second.assert_outcomes(passed=1)
    assert "NOT written" not in second.stdout.str()
    assert json.loads((out / "bmf.json").read_text())
    assert json.loads((out / "bench.json").read_text())["benchmarks"]


def llmperf(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_llmperf.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_llmperf_commands_refuse_outputs_not_theirs(tmp_path: Path, baseline_json: bytes) -> None:
    shard = tmp_path / "shard.jsonl"
    append_result(shard, {"id": "p1", "sweep": "s", "phase": "explore", "metrics": {}})
    foreign = tmp_path / "baseline.json"
    foreign.write_bytes(baseline_json)
    notes = tmp_path / "notes.yaml"
    notes.write_text("sweeps:\n  s: {models: [m]}\n")
    site = tmp_path / "site"
    site.mkdir()
    (site / "summary.md").write_bytes(README)
    (tmp_path / "results.json").write_text(
        '{"schema_version": 1, "generated_at": "x", "tests": []}\n'
    )
    cases = [
        (["merge", str(shard), "-o", str(foreign)], foreign, "merge -o"),
        (
            ["merge", str(shard), "-o", str(tmp_path / "all.jsonl"), "--ranking", str(notes)],
            notes,
            "merge --ranking",
        ),
        (["report", str(tmp_path / "results.json"), "-o", str(site)], site / "summary.md", ""),
    ]
    for args, target, what in cases:
        before = target.read_bytes()
        res = llmperf(*args, cwd=tmp_path)
        assert res.returncode == 2, res.stdout + res.stderr
        [line] = res.stderr.strip().splitlines()
        assert f"{what}: {target} exists and appears to be" in line, line
        assert line.endswith("choose another path or remove it")
        assert target.read_bytes() == before
    assert not (tmp_path / "all.jsonl").exists()
    assert os.listdir(site) == ["summary.md"]


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


# -- 4. a baseline file holding another test's entries ---------------------------------------


@pytest.mark.parametrize("accept", [[], ["--perf-accept"]], ids=["record", "accept"])
def test_a_renamed_test_never_overwrites_the_moved_history(
    pytester: pytest.Pytester, model: Path, accept: list[str]
) -> None:
    """test_a renamed test_c and its file moved (git mv): its content still names
    test_a. The run names the file, the nodeid inside and the fix, and leaves it alone;
    test_c is not silently "new"."""
    project(pytester, model, suite("test_a", "test_b"))
    pytester.runpytest(*FAST).assert_outcomes(passed=2)  # no baseline yet: recorded
    old, new = stored_file(pytester, "test_a"), stored_file(pytester, "test_c")
    os.rename(old, new)
    before = new.read_bytes()
    other = stored_file(pytester, "test_b")
    pytester.makepyfile(test_perf=suite("test_c", "test_b"))
    res = pytester.runpytest(*FAST, *accept)
    res.assert_outcomes(passed=1, failed=1)
    text = res.stdout.str()
    assert (
        f"baseline file {new} holds the entries of test 'test_perf.py::test_a' (its "
        '"nodeid" field), not of test_perf.py::test_c' in text
    ), text
    assert "Edit its \"nodeid\" field to 'test_perf.py::test_c', or move the file back" in text
    assert "no baseline yet" not in text.split("short test summary")[0].split("test_c")[-1]
    assert new.read_bytes() == before
    assert not old.exists()
    assert other.exists()
