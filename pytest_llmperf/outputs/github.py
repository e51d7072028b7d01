"""The GitHub job summary: the session's verdict table in GitHub-flavoured Markdown,
appended to the file GitHub Actions names in ``GITHUB_STEP_SUMMARY`` (or the one
``--perf-github-summary`` names), where it shows on the run's summary page.

The file is shared: earlier commands of the step (and other sessions) write there too. A
session only ever appends one block, which opens with its own heading line (:data:`HEADING`);
what others wrote is never read back or rewritten.

Per test: its verdict; whether it was decided (no gated metric inconclusive); for a test
that was not, the smallest change it could see (the largest ``detectable_pct`` of its
undecided metrics); and its headline metric's change, or for a test judged side by side
against a reference, the ratio candidate/reference with its interval.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pytest_llmperf.model import ownership
from pytest_llmperf.model.results import MetricComparison, TestResult
from pytest_llmperf.outputs.doc import Table, table_markdown
from pytest_llmperf.outputs.rows import counts_text, decision, headline_change
from pytest_llmperf.outputs.text import fmt_pct

#: the first line of every block a session appends (the counts follow it)
HEADING = "## llmperf"

LEGEND = (
    "decided: no gated metric inconclusive. smallest visible change: for a test not "
    "decided, the smallest change its undecided metrics could detect on this machine (the "
    "largest of theirs). headline: the change of the metric to read first; for a test "
    "judged side by side, the ratio candidate/reference [its interval]."
)


def _headline(c: MetricComparison | None) -> str:
    if c is None:
        return "-"
    if c.ratio is None:
        return f"{c.metric} {fmt_pct(c.change_pct)}"
    if c.ratio_low is None or c.ratio_high is None:
        return f"{c.metric} ratio {c.ratio:.3f}"
    return f"{c.metric} ratio {c.ratio:.3f} [{c.ratio_low:.3f}, {c.ratio_high:.3f}]"


def _row(result: TestResult) -> list[str]:
    decided, seen = decision(result)
    failed = result.verdict in ("regressed", "error")
    return [
        f"`{result.nodeid}`",
        f"**{result.verdict}**" if failed else result.verdict,
        "-" if decided is None else "yes" if decided else "no",
        "-" if seen is None else f"{seen:.1f}%",
        _headline(headline_change(result.all_comparisons())),
    ]


def summary_block(results: Sequence[TestResult]) -> str:
    """The Markdown block of a session: its heading line with the verdicts counted, one
    table row per test, and what the columns mean."""
    lines = [f"{HEADING}: {counts_text(results)}", ""]
    if results:
        table = Table(
            ["test", "verdict", "decided", "smallest visible change", "headline"],
            [_row(r) for r in results],
            ["left", "left", "left", "right", "left"],
        )
        lines += [*table_markdown(table), "", LEGEND]
    return "\n".join(lines) + "\n"


def append_summary(results: Sequence[TestResult], path: str | Path, what: str) -> Path:
    """Append :func:`summary_block` to ``path`` (created when missing; a link is followed),
    after a blank line when the file's text does not end with one. A file an appended
    block would break (JSON, a page, a file of this package) is a UsageError naming it,
    and is left alone (:mod:`pytest_llmperf.model.ownership`). Returns the path."""
    p = Path(path)
    ownership.check(p, "github-summary", what)
    data = summary_block(results).encode("utf-8")
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size:
            os.lseek(fd, max(size - 2, 0), os.SEEK_SET)
            tail = os.read(fd, 2)
            newlines = len(tail) - len(tail.rstrip(b"\n"))
            data = b"\n" * (2 - newlines) + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    return p
