"""The report formats' registry (pytest_llmperf.outputs.formats.FORMATS) against every
consumer, through real pytest sessions (pytester) on the tiny model, real files and the real
``llmperf`` command: each registered format has its option, reaches Settings, is written by
a session that names it, is refused over a file not ours before anything is measured, and
is written by ``llmperf report --format``. The GitHub job summary appends its block to a
file another step wrote to, and leaves that step's text as it was.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_llmperf.errors import UsageError
from pytest_llmperf.machine import tiny
from pytest_llmperf.model import ownership
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.results import Measurement, MetricComparison, TestResult
from pytest_llmperf.model.workloads import Workload
from pytest_llmperf.outputs import load_results, write_report
from pytest_llmperf.outputs.formats import FORMATS, FormatSpec
from pytest_llmperf.outputs.github import HEADING, append_summary, summary_block
from pytest_llmperf.plugin.state import session_key

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
#: another step's text in GitHub's summary file (no blank line at its end)
OTHER_STEP = "### Build\n\nThe wheel was built in 3 min (cached: no).\n- [log](https://x.test/1)\n"
README = b"# My project\n\nNotes that must survive.\n"


@pytest.fixture(scope="module")
def model() -> Path:
    """The tiny model, built before any pytester run (pytester moves HOME)."""
    return tiny.ensure_variant("moe-q8_0")


@pytest.fixture(scope="module")
def foreign() -> bytes:
    """A real per-test baseline file of this repository: what a user most likely points
    an output at by mistake, and what an appended block or a rewrite would destroy."""
    root = Path(__file__).resolve().parent.parent / "baselines"
    return sorted(root.rglob("*/**/*.json"))[0].read_bytes()


def project(pytester: pytest.Pytester, model: Path) -> None:
    pytester.makefile(".yaml", llmperf=f"models:\n  m: {{path: {json.dumps(str(model))}}}\n")
    pytester.makepyfile(test_perf=TESTS)


def target(spec: FormatSpec, out: Path) -> Path:
    """Where ``llmperf report -o out`` writes the format (the tests name the same path
    to the plugin's option)."""
    return out / spec.file_name if spec.file_name else out


def written_as_ours(spec: FormatSpec, path: Path) -> bool:
    if spec.writes == "folder":
        names = {p.name for p in path.iterdir()}
        return {"results.json", "summary.md", "report.html"} <= names and all(
            ownership.is_ours(path / name, kind)
            for name, kind in (("results.json", "results-json"), ("summary.md", "summary-md"))
        )
    return path.stat().st_size > 0 and all(ownership.is_ours(path, k) for k in spec.kinds)


def results_file(tmp_path: Path) -> Path:
    """A results.json of one test that measured tg32 five times."""
    spread = [0.97, 1.0, 1.03, 0.99, 1.01]
    m = Measurement(
        model="m",
        model_path="/m.gguf",
        params=LoadParams(n_threads=2),
        workload=Workload.parse("tg32"),
        samples=[],
        values={"tg_tps": [100 * s for s in spread], "ttft_ms": [10 * s for s in spread]},
        repetitions=5,
    )
    write_report([TestResult(nodeid="t.py::a", measurements=[m])], tmp_path / "r", plots=False)
    return tmp_path / "r" / "results.json"


def test_each_format_is_one_entry() -> None:
    for name, spec in FORMATS.items():
        assert spec.name == name and spec.option == f"--perf-{name}"
        assert spec.kinds and set(spec.kinds) <= set(ownership.KIND_NAMES), name
        assert (spec.writes == "folder") == (spec.metavar == "DIR") == (not spec.file_name)
    assert FORMATS["github-summary"].env == "GITHUB_STEP_SUMMARY"


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


def test_llmperf_report_writes_every_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_llmperf.cli.main import main

    results = results_file(tmp_path)
    out = tmp_path / "out"
    args = [arg for name in FORMATS for arg in ("--format", name)]
    assert main(["report", str(results), "-o", str(out), *args]) == 0
    printed = capsys.readouterr().out.splitlines()
    for spec in FORMATS.values():
        path = target(spec, out)
        assert written_as_ours(spec, path), spec.name
        shown = path / "results.json" if spec.writes == "folder" else path
        assert str(shown) in printed, spec.name
    # without --format: the report folder alone
    assert main(["report", str(results), "-o", str(tmp_path / "only")]) == 0
    assert (tmp_path / "only" / "summary.md").is_file()
    others = [s.file_name for s in FORMATS.values() if s.file_name]
    assert not any((tmp_path / "only" / name).exists() for name in others)


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


def rows_of(block: str) -> dict[str, list[str]]:
    """A block's table: test -> its other cells."""
    cells = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in block.splitlines()
        if line.startswith("| ")
    ]
    return {row[0]: row[1:] for row in cells[2:]}  # the header and its rule left out


def _comparison(metric: str, verdict: str, change: float, **extra: object) -> MetricComparison:
    return MetricComparison.from_dict(
        {"metric": metric, "verdict": verdict, "change_pct": change, "threshold": "-5%", **extra}
    )


def test_the_github_block_says_per_test_what_was_decided(tmp_path: Path) -> None:
    paired = TestResult(
        nodeid="t.py::test_paired",
        verdict="regressed",
        reference="build:main",
        comparisons={
            "tg64": [
                _comparison(
                    "tg_tps", "regressed", -10.0, ratio=0.9, ratio_low=0.88, ratio_high=0.92
                ),
                _comparison("ttft_ms", "pass", 1.0, ratio=1.01, ratio_low=0.97, ratio_high=1.05),
            ]
        },
    )
    blind = TestResult(
        nodeid="t.py::test_blind",
        verdict="inconclusive",
        comparisons={
            "tg64": [
                _comparison("tg_tps", "inconclusive", -8.0, detectable_pct=23.0),
                _comparison("ttft_ms", "pass", 2.0, detectable_pct=40.0),
            ],
            "pp64": [_comparison("pp_tps", "inconclusive", -3.0, detectable_pct=12.5)],
        },
    )
    clear = TestResult(
        nodeid="t.py::test_clear",
        verdict="pass",
        comparisons={"tg64": [_comparison("tg_tps", "pass", 1.5)]},
    )
    new = TestResult(nodeid="t.py::test_new", verdict="new")
    block = summary_block([paired, blind, clear, new])
    counts = "4 tests: 1 pass, 1 new, 1 inconclusive, 1 regressed"
    assert block.splitlines()[0] == f"{HEADING}: {counts}"
    assert rows_of(block) == {
        "`t.py::test_paired`": ["**regressed**", "yes", "-", "tg_tps ratio 0.900 [0.880, 0.920]"],
        "`t.py::test_blind`": ["inconclusive", "no", "23.0%", "tg_tps -8.0%"],
        "`t.py::test_clear`": ["pass", "yes", "-", "tg_tps +1.5%"],
        "`t.py::test_new`": ["new", "-", "-", "-"],
    }
    # appended, never rewritten: another step's text stays; data a block would break is
    # refused and left as it was
    shared = tmp_path / "summary.md"
    shared.write_text(OTHER_STEP)
    append_summary([clear], shared, "--perf-github-summary")
    assert shared.read_text() == OTHER_STEP + "\n" + summary_block([clear])
    for name, content in (("data.json", b'{"a": 1}\n'), ("summary", b"# llmperf report\n\nx\n")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(UsageError, match="not a Markdown job summary"):
            append_summary([clear], path, "--perf-github-summary")
        assert path.read_bytes() == content
