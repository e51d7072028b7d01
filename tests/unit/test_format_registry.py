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

from pathlib import Path

import pytest

from pytest_llmperf.errors import UsageError
from pytest_llmperf.model import ownership
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.results import Measurement, MetricComparison, TestResult
from pytest_llmperf.model.workloads import Workload
from pytest_llmperf.outputs import write_report
from pytest_llmperf.outputs.formats import FORMATS, FormatSpec
from pytest_llmperf.outputs.github import HEADING, append_summary, summary_block

#: another step's text in GitHub's summary file (no blank line at its end)
OTHER_STEP = "### Build\n\nThe wheel was built in 3 min (cached: no).\n- [log](https://x.test/1)\n"


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
