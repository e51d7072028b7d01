"""The end of the session as the user sees it: the report files, and the llmperf section
of the terminal summary."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_llmperf.errors import LLMPerfError
from pytest_llmperf.outputs.formats import FORMATS, FormatInputs
from pytest_llmperf.plugin.state import (
    session_key,
)
from pytest_llmperf.session.perf_session import (
    PerfSession,
)


def write_outputs(perf: PerfSession) -> None:
    """Every report format the session names (:data:`~pytest_llmperf.outputs.formats.FORMATS`),
    each in turn: one refused or failing leaves the others to be written."""
    if not perf.reports:
        return
    inputs = FormatInputs(history=perf.history_entries)
    for spec in FORMATS.values():
        out = perf.settings.outputs.get(spec.name)
        if out is None:
            continue
        try:
            written = spec.write(perf.reports, out, inputs, spec.option)
            perf.notice(spec.notice(out, written))
        except (OSError, LLMPerfError) as exc:
            perf.notice(f"report NOT written: {exc}")


def write_section(terminalreporter: Any, config: pytest.Config) -> None:
    perf = config.stash.get(session_key, None)
    if perf is None or (not perf.reports and not perf.notices):
        return
    from pytest_llmperf import outputs as report

    tr = terminalreporter
    tr.section("llmperf")
    width = getattr(tr, "_tw", None)
    fullwidth = int(getattr(width, "fullwidth", 80) or 80)
    for text, markup in report.terminal_lines(
        perf.reports, verbose=config.option.verbose, width=fullwidth
    ):
        tr.write_line(text, **markup)
    for line in report.blind_spot_lines(perf.reports):
        tr.write_line(line)
    flushed = perf.flush_report
    if flushed is not None:
        for line in _flush_lines(flushed, str(perf.store.entries_dir)):
            tr.write_line(line)
    if perf.left_alone:
        tr.write_line(f"left alone (not accepted): {len(perf.left_alone)}")
        for nodeid, why in perf.left_alone[:20]:
            tr.write_line(f"  {nodeid}: {why}")
    unused = perf.unused_entries() if perf.settings.policy.accept is None else []
    if (
        unused
        and config.option.verbose >= 0
        and not config.option.keyword
        and not config.option.markexpr
    ):
        tr.write_line(
            f"{len(unused)} stored baseline entries were not used by any test "
            "(llmperf baseline prune removes them):"
        )
        for nodeid, key in unused[:10]:
            tr.write_line(f"  {nodeid} [{key}]")
    for notice in perf.notices:
        tr.write_line(notice)


def _flush_lines(flushed: Any, path: str) -> list[str]:
    lines: list[str] = []
    if getattr(flushed, "migrated", 0):
        lines.append(
            f"baseline {path}: {flushed.migrated} entries of an older baseline file moved to "
            "one file per test (commit the new files and the changed machine file)"
        )
    for label in ("created", "updated", "unchanged"):
        names = list(getattr(flushed, label, []) or [])
        if names:
            lines.append(f"baseline {path}: {label} {len(names)}")
            lines.extend(f"  {label}: {n}" for n in names[:20])
            if len(names) > 20:
                lines.append(f"  ... and {len(names) - 20} more")
    refused = list(getattr(flushed, "refused", []) or [])
    if refused:
        lines.append(f"baseline {path}: NOT written {len(refused)} (their files were left alone)")
        lines.extend(f"  NOT written: {line}" for line in refused)
    return lines
