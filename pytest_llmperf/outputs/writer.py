"""write_report: results.json, summary.md, PNG plots and a self-contained report.html."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_llmperf.baseline import Entry
from pytest_llmperf.errors import UsageError
from pytest_llmperf.fileio import write_atomic
from pytest_llmperf.model import ownership
from pytest_llmperf.model.ownership import Kind
from pytest_llmperf.model.results import TestResult
from pytest_llmperf.outputs.common import counts_text
from pytest_llmperf.outputs.doc import render_html, render_markdown
from pytest_llmperf.outputs.markdown import build_document
from pytest_llmperf.outputs.results_json import now_iso, results_dict

#: the files of a report folder other than plots, and their kinds
REPORT_FILES: dict[str, Kind] = {
    "results.json": "results-json",
    "summary.md": "summary-md",
    "report.html": "report-html",
    "history.md": "history-md",
    "history.html": "history-html",
}
#: the files of a history folder (``llmperf history -o``) other than plots
HISTORY_FILES: dict[str, Kind] = {"history.md": "history-md", "history.html": "history-html"}
#: the names of the plots a report writes (plots.py, history.py)
PLOT_NAME = re.compile(r"(metric_.+|itl(_\d+)?|depth|sweep_.+|history-\d{3})\.png")
HISTORY_PLOT_NAME = re.compile(r"history-\d{3}\.png")


def check_folder(
    outdir: str | Path,
    what: str,
    files: Mapping[str, Kind] = REPORT_FILES,
    plots: re.Pattern[str] = PLOT_NAME,
) -> None:
    """Refuse (a UsageError naming the file, what it appears to be and the fix) a folder
    that holds, under a name the report writes, a file that is not that file of ours
    (:mod:`pytest_llmperf.model.ownership`). A missing folder is fine; a file where the folder
    should be is refused too."""
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{what}: {out} is a file, not a folder; name a folder for the report")
    if not out.is_dir():
        return
    for name, kind in files.items():
        ownership.check(out / name, kind, what)
    for path in sorted(out.iterdir()):
        if plots.fullmatch(path.name):
            ownership.check(path, "plot-png", what)


def write_text(path: Path, text: str, kind: Kind | None = None, what: str = "report") -> Path:
    """Write ``text`` to ``path`` atomically (:func:`pytest_llmperf.fileio.write_atomic`);
    with ``kind``, only where the file is absent, empty or that kind of ours."""
    if kind is not None:
        ownership.check(path, kind, what)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, text, durable=False)


def write_json(path: Path, data: Any, kind: Kind | None = None, what: str = "report") -> Path:
    text = json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False) + "\n"
    return write_text(path, text, kind, what)


def write_report(
    reports: Sequence[TestResult],
    outdir: str | Path,
    *,
    baseline_reports: Sequence[TestResult] | None = None,
    generated_at: str | None = None,
    plots: bool = True,
    history: Sequence[Entry] = (),
    what: str = "report",
) -> list[Path]:
    """Write results.json, summary.md, the PNG plots and report.html into ``outdir``.

    ``baseline_reports`` (the accepted run's reports, with their raw samples) add the
    baseline's spread to the plots; without them plots show the baseline median only.
    Without matplotlib the plots are skipped and summary.md/report.html say how to get
    them. ``history`` (the stored entries of these tests) adds history.md and
    history.html (:mod:`pytest_llmperf.outputs.history`), linked from the report. Returns
    the files written. A file of the folder that is not ours (see :func:`check_folder`)
    is a UsageError naming it (``what``: the option or command), before anything is
    written.
    """
    out = Path(outdir)
    check_folder(out, what)
    out.mkdir(parents=True, exist_ok=True)
    stamp = generated_at or now_iso()
    data = results_dict(reports, generated_at=stamp)
    written = [write_json(out / "results.json", data, "results-json", what)]

    images: dict[str, list[Any]] = {}
    notes: list[str] = []
    if plots and reports:
        from pytest_llmperf.outputs.plots import make_plots

        images, notes = make_plots(reports, out, baseline_reports=baseline_reports)
    if history:
        from pytest_llmperf.outputs import history as history_mod

        written += history_mod.write(history, out, what=what)
    blocks = build_document(
        reports, generated_at=stamp, plots=images, plot_notes=notes, history=bool(history)
    )
    summary = render_markdown(blocks, image_base=out)
    written.append(write_text(out / "summary.md", summary, "summary-md", what))
    written += [img.path for kind in images.values() for img in kind]
    title = f"llmperf report: {counts_text(reports)}"
    page = render_html(blocks, title=title)
    written.append(write_text(out / "report.html", page, "report-html", what))
    return written
