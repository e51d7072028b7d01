"""A new user's bad inputs, round two: each is a clear error before anything is measured,
or a verdict that says what it could not compare; nothing stored is lost.

Split by tier: pure parts in tests/unit/test_bad_input.py and pytest sessions and child
processes in tests/e2e/test_bad_input.py."""

from __future__ import annotations

import json
import os
import stat

import pytest

from pytest_llmperf import baseline as bl

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

RUN = ["-p", "no:cacheprovider", "--perf-repetitions=1", "--perf-warmup=0"]
ONE_TEST = """
import pytest

@pytest.mark.llmperf(model="tiny-moe-q8_0", n_threads=2, n_ctx=256)
def test_decode(llm_perf):
    llm_perf.measure("tg8")
"""


def usage_error(result: pytest.RunResult) -> str:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    return result.stderr.str()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--perf-alpha=2"], "between 0 and 1"),
        (["--perf-alpha=0"], "between 0 and 1"),
        (["--perf-alpha=nan"], "not a finite number"),
        (["--perf-timeout=nan"], "not a finite number"),
        (["--perf-timeout=0"], "a number of seconds > 0"),
        (["--perf-timeout=-5"], "a number of seconds > 0"),
        (["--perf-timeout=30", "--perf-in-process"], "--perf-timeout cannot apply with"),
        (["--perf-machine=bat\n"], "machine id 'bat\\n'"),
        (["--perf-repetitions=x"], "'x' is not an integer"),
    ],
)
def test_bad_options_stop_before_anything_is_measured(
    pytester: pytest.Pytester, args: list[str], fragment: str
) -> None:
    pytester.makepyfile(test_perf=ONE_TEST)
    err = usage_error(pytester.runpytest(*RUN, *args))
    assert fragment in err, err
    assert not (pytester.path / "baselines").exists()


def test_a_machine_id_from_the_environment_with_a_newline(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_perf=ONE_TEST)
    monkeypatch.setenv("LLMPERF_MACHINE", "bat\n")
    err = usage_error(pytester.runpytest(*RUN))
    assert "LLMPERF_MACHINE: machine id 'bat\\n'" in err
    assert not (pytester.path / "baselines").exists()


@pytest.mark.parametrize("workload", ["tg0", "pp0", "pg0,0", "pp0+tg0"])
def test_a_workload_that_measures_nothing_names_the_test(
    pytester: pytest.Pytester, workload: str
) -> None:
    pytester.makepyfile(test_perf=ONE_TEST.replace('"tg8"', f'"{workload}"'))
    res = pytester.runpytest(*RUN, "--perf-machine=m", "--perf-accept")
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert f"test_perf.py::test_decode: workload {workload!r} measures nothing" in out
    assert not (pytester.path / "baselines" / "m").exists()  # nothing stored as "load"


def test_a_hand_emptied_entry_is_refused_naming_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_perf=ONE_TEST)
    pytester.runpytest(*RUN, "--perf-machine=m", "--perf-accept").assert_outcomes(passed=1)
    [path] = (pytester.path / "baselines" / "m").rglob("*.json")
    data = json.loads(path.read_text())
    for entry in data["entries"].values():
        entry["sessions"][0]["values"] = {}
    path.write_text(json.dumps(data))
    before = path.read_bytes()
    res = pytester.runpytest(*RUN, "--perf-machine=m")
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert "test_perf.py::test_decode" in out and "measured nothing" in out and str(path) in out
    assert path.read_bytes() == before


def test_report_files_are_readable_by_others_and_no_lock_is_left(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_perf=ONE_TEST)
    old = os.umask(0o022)
    try:
        res = pytester.runpytest(*RUN, "--perf-machine=m", "--perf-accept", "--perf-report=rep")
    finally:
        os.umask(old)
    res.assert_outcomes(passed=1)
    for name in ("report.html", "results.json", "summary.md"):
        mode = stat.S_IMODE((pytester.path / "rep" / name).stat().st_mode)
        assert mode == 0o644, (name, oct(mode))
    files = [p.name for p in (pytester.path / "baselines").rglob("*")]
    assert files and not [f for f in files if f.endswith((".lock", ".tmp"))], files


def test_accept_keeps_a_bad_entry_of_another_test_and_writes_its_own(
    pytester: pytest.Pytester,
) -> None:
    """A NaN in one test's baseline must not block accepting another test."""
    pytester.makepyfile(test_a=ONE_TEST, test_b=ONE_TEST)
    pytester.runpytest(*RUN, "--perf-machine=m", "--perf-accept").assert_outcomes(passed=2)
    store = bl.BaselineStore(pytester.path / "baselines", "m").load()
    files = {p.parent.name: p for p in (pytester.path / "baselines" / "m").rglob("*.json")}
    bad = files["test_a"]
    data = json.loads(bad.read_text())
    for entry in data["entries"].values():
        entry["sessions"][0]["values"]["tg8"]["tg_tps"] = [float("nan")]
    bad.write_text(json.dumps(data, allow_nan=True))
    before = bad.read_bytes()
    res = pytester.runpytest(*RUN, "--perf-machine=m", "--perf-accept")
    res.assert_outcomes(failed=1, passed=1)
    out = res.stdout.str()
    assert "is not a finite number" in out and "--perf-accept=reset" in out
    assert "updated 1" in out or "created 1" in out or "unchanged 1" in out
    assert bad.read_bytes() == before
    assert len(store.list_entries()) == 2
