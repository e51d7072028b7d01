"""write_report: results.json, summary.md, PNG plots and a self-contained report.html."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_llmperf.baseline import Entry
from pytest_llmperf.fileio import write_atomic
from pytest_llmperf.model.results import TestResult
from pytest_llmperf.outputs.common import counts_text
from pytest_llmperf.outputs.doc import render_html, render_markdown
from pytest_llmperf.outputs.markdown import build_document
from pytest_llmperf.outputs.results_json import now_iso, results_dict


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`pytest_llmperf.fileio.write_atomic`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, text, durable=False)


def write_json(path: Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False) + "\n")


def write_report(
    reports: Sequence[TestResult],
    outdir: str | Path,
    *,
    baseline_reports: Sequence[TestResult] | None = None,
    generated_at: str | None = None,
    plots: bool = True,
    history: Sequence[Entry] = (),
) -> list[Path]:
    """Write results.json, summary.md, the PNG plots and report.html into ``outdir``.

    ``baseline_reports`` (the accepted run's reports, with their raw samples) add the
    baseline's spread to the plots; without them plots show the baseline median only.
    Without matplotlib the plots are skipped and summary.md/report.html say how to get
    them. ``history`` (the stored entries of these tests) adds history.md and
    history.html (:mod:`pytest_llmperf.outputs.history`), linked from the report. Returns
    the files written.
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = generated_at or now_iso()
    written = [write_json(out / "results.json", results_dict(reports, generated_at=stamp))]

    images: dict[str, list[Any]] = {}
    notes: list[str] = []
    if plots and reports:
        from pytest_llmperf.outputs.plots import make_plots

        images, notes = make_plots(reports, out, baseline_reports=baseline_reports)
    if history:
        from pytest_llmperf.outputs import history as history_mod

        written += history_mod.write(history, out)
    blocks = build_document(
        reports, generated_at=stamp, plots=images, plot_notes=notes, history=bool(history)
    )
    written.append(write_text(out / "summary.md", render_markdown(blocks, image_base=out)))
    written += [img.path for kind in images.values() for img in kind]
    title = f"llmperf report: {counts_text(reports)}"
    written.append(write_text(out / "report.html", render_html(blocks, title=title)))
    return written
