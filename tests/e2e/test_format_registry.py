"""The report formats' registry (pytest_llmperf.outputs.formats.FORMATS) against every
consumer, through real pytest sessions (pytester) on the tiny model, real files and the real
``llmperf`` command: each registered format has its option, reaches Settings, is written by
a session that names it, is refused over a file not ours before anything is measured, and
is written by ``llmperf report --format``. The GitHub job summary appends its block to a
file another step wrote to, and leaves that step's text as it was.

Split by tier: pure parts in tests/unit/test_format_registry.py and pytest sessions and
child processes in tests/e2e/test_format_registry.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_llmperf.outputs import load_results
from pytest_llmperf.outputs.formats import FORMATS
from pytest_llmperf.outputs.github import HEADING, summary_block
from pytest_llmperf.plugin.state import session_key
from tests.unit.test_format_registry import OTHER_STEP, rows_of, target, written_as_ours

MACHINE = "fr"
FAST = [
    "-p",
    "no:cacheprovider",
    "--perf-repetitions=1",
    "--perf-warmup=0",
    f"--perf-machine={MACHINE}",
    "--perf-in-process",
]
TESTS = """
import pytest

@pytest.mark.llmperf(model="m", n_threads=2, n_ctx=256)
def test_a(llm_perf):
    llm_perf.measure("tg16")
"""
README = b"# My project\n\nNotes that must survive.\n"


@pytest.fixture(scope="module")
def foreign() -> bytes:
    """A real per-test baseline file of this repository: what a user most likely points
    an output at by mistake, and what an appended block or a rewrite would destroy."""
    root = Path(__file__).resolve().parents[2] / "baselines"
    return sorted(root.rglob("*/**/*.json"))[0].read_bytes()


def project(pytester: pytest.Pytester, model: Path) -> None:
    pytester.makefile(".yaml", llmperf=f"models:\n  m: {{path: {json.dumps(str(model))}}}\n")
    pytester.makepyfile(test_perf=TESTS)


def test_each_format_has_its_option_and_reaches_settings(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.runpytest("--help").stdout.fnmatch_lines_random(
        [f"*{spec.option}={spec.metavar}*" for spec in FORMATS.values()]
    )
    out = pytester.path / "out"
    config = pytester.parseconfigure(
        *[f"{spec.option}={target(spec, out)}" for spec in FORMATS.values()]
    )
    assert config.stash[session_key].settings.outputs == {
        name: target(spec, out) for name, spec in FORMATS.items()
    }
    # a format an environment variable turns on: named by it alone, the option over it
    for spec in FORMATS.values():
        if spec.env is None:
            continue
        monkeypatch.setenv(spec.env, "from-env.md")
        config = pytester.parseconfigure()
        assert config.stash[session_key].settings.outputs == {
            spec.name: pytester.path / "from-env.md"
        }
        config = pytester.parseconfigure(f"{spec.option}=given.md")
        assert config.stash[session_key].settings.outputs == {spec.name: pytester.path / "given.md"}
        monkeypatch.delenv(spec.env)


def test_a_session_that_names_every_format_writes_each(
    pytester: pytest.Pytester, model: Path
) -> None:
    project(pytester, model)
    out = pytester.path / "out"
    res = pytester.runpytest(
        *FAST, *[f"{spec.option}={target(spec, out)}" for spec in FORMATS.values()]
    )
    res.assert_outcomes(passed=1)
    text = res.stdout.str()
    assert "NOT written" not in text
    for spec in FORMATS.values():
        path = target(spec, out)
        assert written_as_ours(spec, path), spec.name
        assert f"{spec.title}: {path}" in text, spec.name


@pytest.mark.parametrize("name", list(FORMATS))
def test_a_file_not_ours_is_refused_before_anything_is_measured(
    pytester: pytest.Pytester,
    model: Path,
    foreign: bytes,
    name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pytest_llmperf.cli.main import main

    spec = FORMATS[name]
    project(pytester, model)
    out = pytester.path / "out"
    out.mkdir()
    # the folder format: a README where its summary.md goes; a file format: a baseline
    path = out / "summary.md" if spec.writes == "folder" else target(spec, out)
    path.write_bytes(README if spec.writes == "folder" else foreign)
    before = path.read_bytes()
    res = pytester.runpytest(*FAST, f"{spec.option}={target(spec, out)}")
    assert res.ret == pytest.ExitCode.USAGE_ERROR, res.stdout.str() + res.stderr.str()
    [line] = [ln for ln in res.stderr.lines if str(path) in ln]
    assert spec.option in line and "exists and appears to be" in line, line
    assert line.endswith("choose another path or remove it")
    assert not (pytester.path / "baselines").exists()  # nothing measured, nothing recorded
    # llmperf report refuses it too, before reading the results
    results = pytester.path / "results.json"
    results.write_text('{"schema_version": 1, "generated_at": "x", "tests": []}\n')
    capsys.readouterr()
    assert main(["report", str(results), "-o", str(out), "--format", name]) == 2
    assert "exists and appears to be" in capsys.readouterr().err
    assert path.read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == [path.name]


def test_the_github_summary_is_appended_below_another_steps_text(
    pytester: pytest.Pytester, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project(pytester, model)
    summary = pytester.path / "step_summary_0b1c"
    summary.write_text(OTHER_STEP.rstrip("\n"))  # a step that left no newline at its end
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    first = pytester.runpytest(*FAST)
    first.assert_outcomes(passed=1)
    assert f"GitHub job summary: {summary}" in first.stdout.str()
    text = summary.read_text(encoding="utf-8")
    assert text.startswith(OTHER_STEP.rstrip("\n") + "\n\n" + f"{HEADING}: 1 test: 1 new\n")
    assert rows_of(text.split(HEADING)[1]) == {"`test_perf.py::test_a`": ["new", "-", "-", "-"]}
    # a second session (gated against the first) adds its own block below; the first
    # block and the other step's text stay as they were
    second = pytester.runpytest(*FAST, "--perf-report=rep")
    second.assert_outcomes(passed=1)
    again = summary.read_text(encoding="utf-8")
    assert again.startswith(text + "\n")
    block = again[len(text) + 1 :]
    [result] = load_results(pytester.path / "rep" / "results.json")
    assert block == summary_block([result])
    assert block.startswith(f"{HEADING}: 1 test: 1 {result.verdict}\n")
    assert again.count(f"\n{HEADING}: ") == 2
