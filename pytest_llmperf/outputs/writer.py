"""write_report: results.json, summary.md, PNG plots and a self-contained report.html."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_llmperf.baseline import Entry
from pytest_llmperf.model.results import TestResult
from pytest_llmperf.outputs.doc import render_html, render_markdown
from pytest_llmperf.outputs.files import check_folder, write_json, write_text
from pytest_llmperf.outputs.markdown import build_document
from pytest_llmperf.outputs.results_json import now_iso, results_dict
from pytest_llmperf.outputs.rows import counts_text


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
