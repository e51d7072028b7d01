"""The files the outputs write: their names and kinds, the check that a folder's files
are ours before anything is written there, and the one way they are written (atomically,
through :func:`pytest_llmperf.fileio.write_atomic`)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_llmperf.errors import UsageError
from pytest_llmperf.fileio import write_atomic
from pytest_llmperf.model import ownership
from pytest_llmperf.model.ownership import Kind

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


def file_name_part(text: str, maxlen: int = 60) -> str:
    """``text`` as a part of an output file's name (a plot's metric or sweep): runs of
    characters other than letters, digits and ``. _ -`` become one ``-``."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return (out or "x")[:maxlen]


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
