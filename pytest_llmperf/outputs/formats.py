"""The report formats: every output a session or ``llmperf report`` writes, in one
registry.

Each :class:`FormatSpec` says everything about its format: its name (the option is
``--perf-<name>``), the option's metavar and help, an ini key or environment variable that
names the path where one applies, whether it writes a file or a folder, the ownership
kinds of what it writes, and its writer over ``Sequence[TestResult]``. Its consumers read
it from :data:`FORMATS`: the plugin adds the options, Settings holds one path per named
format, the options are checked before anything is measured (a file not ours is
refused), the session's end writes each one (one refused or failing leaves the others
written), and ``llmperf report RESULTS -o DIR --format NAME`` writes any of them from a
results.json.

Add a format: one module in ``outputs/`` with its writer, and one FormatSpec below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from pytest_llmperf.baseline import Entry
from pytest_llmperf.errors import UsageError
from pytest_llmperf.model import ownership
from pytest_llmperf.model.ownership import Kind
from pytest_llmperf.model.results import TestResult
from pytest_llmperf.outputs.files import REPORT_FILES, check_folder


def _no_history() -> Sequence[Entry]:
    return ()


@dataclass(frozen=True)
class FormatInputs:
    """What a writer may read beside the session's TestResults."""

    #: the stored baseline entries of the session's tests, read only when a format asks
    history: Callable[[], Sequence[Entry]] = _no_history
    #: an accepted run's results (``llmperf report --baseline``): the plots' baseline spread
    baseline_results: Sequence[TestResult] | None = None


class Writer(Protocol):
    """Writes ``results`` to ``path``; returns the files written. ``what`` (the option or
    command) names the path in errors."""

    def __call__(
        self, results: Sequence[TestResult], path: Path, inputs: FormatInputs, what: str
    ) -> list[Path]: ...


@dataclass(frozen=True)
class FormatSpec:
    """One report format and every fact its consumers need."""

    #: the format's name: ``llmperf report --format NAME``; the option is ``--perf-NAME``
    name: str
    #: what the session's summary calls it ("report: DIR (12 files)")
    title: str
    metavar: Literal["FILE", "DIR"]
    #: the option's help (argparse: a literal ``%`` is ``%%``)
    help: str
    #: a file, or a folder of files
    writes: Literal["file", "folder"]
    #: the ownership kinds of the files it writes (:mod:`pytest_llmperf.model.ownership`)
    kinds: tuple[Kind, ...]
    write: Writer
    #: its name in ``llmperf report``'s output folder ("": the folder itself)
    file_name: str = ""
    #: an environment variable whose value names the path when the option is not given
    env: str | None = None
    #: an ini key that names the path when the option is not given
    ini: str | None = None

    @property
    def option(self) -> str:
        return f"--perf-{self.name}"

    @property
    def dest(self) -> str:
        """The option's attribute in pytest's ``config.option``."""
        return "perf_" + self.name.replace("-", "_")

    def check(self, path: Path, what: str) -> None:
        """Refuse (a UsageError naming it, what it appears to be and the fix) a path this
        format may not write: a file not ours, a file where a folder goes or a folder
        where a file goes."""
        if self.writes == "folder":
            check_folder(path, what)
            return
        if path.is_dir():
            raise UsageError(f"{what}: {path} is a directory; name a file in it")
        for kind in self.kinds:
            ownership.check(path, kind, what)

    def notice(self, path: Path, written: Sequence[Path]) -> str:
        """The summary's line for a written format."""
        if self.writes == "folder":
            return f"{self.title}: {path} ({len(written)} files)"
        return f"{self.title}: {path}"


# -- the writers: each hands off to its module ----------------------------------------------


def _report(
    results: Sequence[TestResult], path: Path, inputs: FormatInputs, what: str
) -> list[Path]:
    from pytest_llmperf.outputs.writer import write_report

    return write_report(
        results,
        path,
        baseline_reports=inputs.baseline_results,
        history=inputs.history(),
        what=what,
    )


def _benchmark_json(
    results: Sequence[TestResult], path: Path, inputs: FormatInputs, what: str
) -> list[Path]:
    from pytest_llmperf.outputs.interop import write_benchmark_json

    return [write_benchmark_json(results, path, what=what)]


def _bmf(results: Sequence[TestResult], path: Path, inputs: FormatInputs, what: str) -> list[Path]:
    from pytest_llmperf.outputs.interop import write_bmf

    return [write_bmf(results, path, what)]


def _github_summary(
    results: Sequence[TestResult], path: Path, inputs: FormatInputs, what: str
) -> list[Path]:
    from pytest_llmperf.outputs.github import append_summary

    return [append_summary(results, path, what)]


#: the report formats, by name, in the order they are written
FORMATS: dict[str, FormatSpec] = {
    spec.name: spec
    for spec in (
        FormatSpec(
            name="report",
            title="report",
            metavar="DIR",
            help="write results.json, summary.md, plots and report.html to DIR",
            writes="folder",
            kinds=(*REPORT_FILES.values(), "plot-png"),
            write=_report,
        ),
        FormatSpec(
            name="benchmark-json",
            title="pytest-benchmark JSON",
            metavar="FILE",
            help="write results in pytest-benchmark's JSON format",
            writes="file",
            kinds=("benchmark-json",),
            write=_benchmark_json,
            file_name="benchmark.json",
        ),
        FormatSpec(
            name="bmf",
            title="Bencher Metric Format",
            metavar="FILE",
            help="write results in Bencher Metric Format",
            writes="file",
            kinds=("bmf",),
            write=_bmf,
            file_name="bmf.json",
        ),
        FormatSpec(
            name="github-summary",
            title="GitHub job summary",
            metavar="FILE",
            help="append the session's verdict table to FILE in GitHub-flavoured Markdown "
            "(default: the job summary GitHub Actions names in GITHUB_STEP_SUMMARY)",
            writes="file",
            kinds=("github-summary",),
            write=_github_summary,
            file_name="github-summary.md",
            env="GITHUB_STEP_SUMMARY",
        ),
    )
}
