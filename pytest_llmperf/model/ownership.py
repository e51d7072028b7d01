"""Files the package writes where the user points it, and how each is recognized before it
is appended to or replaced.

Every output path a user names (``--perf-sweep-results``, ``--perf-ranking``,
``--perf-report``'s files, ``--perf-benchmark-json``, ``--perf-bmf``, ``llmperf merge -o``,
``llmperf report -o``, ``llmperf history -o``) may exist already: then it must be a file of
the kind that option writes, as this package writes it (the GitHub job summary,
``--perf-github-summary``, is only ever appended to: Markdown of anyone's). Anything else
(a baseline file given as the sweep results, a pytest-benchmark run of another tool, a
README) is refused by :func:`check` with one line naming the file, what it appears to be,
and the fix, before anything is written to it. A missing or empty file is fine. The
baseline store recognizes its own files itself (:mod:`pytest_llmperf.baseline.store`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeGuard

from pytest_llmperf.errors import UsageError
from pytest_llmperf.model.metrics import METRICS

Kind = Literal[
    "sweep-results",
    "ranking",
    "results-json",
    "summary-md",
    "report-html",
    "history-md",
    "history-html",
    "plot-png",
    "benchmark-json",
    "bmf",
    "github-summary",
    "bisect-state",
    "machine-limits",
]

#: what each kind is called in messages
KIND_NAMES: dict[Kind, str] = {
    "sweep-results": "pytest-llmperf sweep results (JSONL, one record a line)",
    "ranking": "a pytest-llmperf ranking file (a list of point ids)",
    "results-json": "a pytest-llmperf results.json",
    "summary-md": "a pytest-llmperf summary.md",
    "report-html": "a pytest-llmperf report.html",
    "history-md": "a pytest-llmperf history.md",
    "history-html": "a pytest-llmperf history.html",
    "plot-png": "a pytest-llmperf plot (PNG)",
    "benchmark-json": "pytest-benchmark JSON written by pytest-llmperf",
    "bmf": "Bencher Metric Format JSON written by pytest-llmperf",
    "github-summary": "a Markdown job summary (GitHub Actions' GITHUB_STEP_SUMMARY)",
    "bisect-state": "an llmperf bisect state (JSON)",
    "machine-limits": "pytest-llmperf's cache of measured machine limits (llmperf machine)",
}

#: the tEXt "Software" value of every PNG plot the package writes
PNG_SOFTWARE = "pytest-llmperf"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: JSON files larger than this are judged by their first bytes only
_JSON_LIMIT = 256 << 20
#: the first bytes of a JSONL file that are checked line by line
_JSONL_HEAD = 1 << 20

SUMMARY_MD_HEAD = "# llmperf report\n"
HISTORY_MD_HEAD = "# Baseline history\n"
REPORT_HTML_TITLE = "<title>llmperf report"
HISTORY_HTML_TITLE = "<title>llmperf: baseline history</title>"
#: the "kind" of the machine limits cache (:mod:`pytest_llmperf.machine.limits`)
MACHINE_LIMITS_TAG = "pytest-llmperf machine limits"


class _Unreadable(Exception):
    pass


def _read(path: Path, limit: int | None = None) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read() if limit is None else fh.read(limit)
    except OSError as exc:
        raise _Unreadable(exc.strerror or str(exc)) from None


def _json(path: Path) -> Any:
    """The JSON value of the file, or a ValueError."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise _Unreadable(exc.strerror or str(exc)) from None
    if size > _JSON_LIMIT:
        raise ValueError("too large to inspect")
    return json.loads(_read(path).decode("utf-8"))


def _json_object(path: Path) -> dict[str, Any] | None:
    """The file's JSON object; None when it holds no JSON or another JSON value."""
    try:
        data = _json(path)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


# -- recognizers: True when the (existing, non-empty) file is of the kind ------------------


def _is_record(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("id"), str)


def _sweep_results(path: Path) -> bool:
    """JSONL: every line a JSON object with a string "id", or a record cut short by a
    crash (a line that starts like one, ``{"``, and does not parse: ``append_result``
    ends it and :func:`~pytest_llmperf.sweep.records.read_results` skips it)."""
    raw = _read(path, _JSONL_HEAD + 1)
    lines = raw.split(b"\n")
    if len(raw) > _JSONL_HEAD:
        lines = lines[:-1]  # the cut is ours, not the file's
    seen = 0
    for line in lines:
        text = line.strip()
        if not text:
            continue
        seen += 1
        try:
            value = json.loads(text.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            if not text.startswith(b'{"'):
                return False
            continue
        if not _is_record(value):
            return False
    return seen > 0


def _ids(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(x, str | int) and not isinstance(x, bool) for x in value
    )


def _ranking(path: Path) -> bool:
    import yaml

    try:
        data = yaml.safe_load(_read(path).decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError):
        return False
    if isinstance(data, dict):
        return set(data) == {"ranking"} and _ids(data["ranking"])
    return _ids(data)


def _results_json(path: Path) -> bool:
    data = _json_object(path)
    return (
        data is not None
        and isinstance(data.get("schema_version"), int)
        and isinstance(data.get("tests"), list)
    )


def _text_head(path: Path, size: int = 4096) -> str:
    return _read(path, size).decode("utf-8", errors="replace").lstrip("\ufeff")


def _summary_md(path: Path) -> bool:
    return _text_head(path).startswith(SUMMARY_MD_HEAD)


def _history_md(path: Path) -> bool:
    return _text_head(path).startswith(HISTORY_MD_HEAD)


def _report_html(path: Path) -> bool:
    head = _text_head(path)
    return head.startswith("<!DOCTYPE html>") and REPORT_HTML_TITLE in head


def _history_html(path: Path) -> bool:
    head = _text_head(path)
    return head.startswith("<!DOCTYPE html>") and HISTORY_HTML_TITLE in head


def png_software(path: Path) -> str | None:
    """The tEXt "Software" value of a PNG (None when it has none or is no PNG)."""
    raw = _read(path, 1 << 16)
    if not raw.startswith(_PNG_MAGIC):
        return None
    pos = len(_PNG_MAGIC)
    while pos + 8 <= len(raw):
        length = int.from_bytes(raw[pos : pos + 4], "big")
        ctype = raw[pos + 4 : pos + 8]
        data = raw[pos + 8 : pos + 8 + length]
        if ctype == b"tEXt":
            key, _, value = data.partition(b"\0")
            if key == b"Software":
                return value.decode("latin-1")
        if ctype in (b"IDAT", b"IEND"):
            break
        pos += 12 + length
    return None


def _plot_png(path: Path) -> bool:
    """A PNG tagged as ours; or an older plot of ours (no tag, or matplotlib's) beside a
    report or history page of ours in the same folder."""
    if not _read(path, len(_PNG_MAGIC)).startswith(_PNG_MAGIC):
        return False
    software = png_software(path)
    if software == PNG_SOFTWARE:
        return True
    if software is not None and not software.startswith("Matplotlib"):
        return False
    folder = path.parent
    pages: tuple[tuple[str, Kind], ...] = (
        ("summary.md", "summary-md"),
        ("results.json", "results-json"),
        ("history.md", "history-md"),
    )
    return any(
        (folder / name).is_file() and not _empty(folder / name) and is_ours(folder / name, kind)
        for name, kind in pages
    )


def _benchmark_format(data: Any) -> TypeGuard[dict[str, Any]]:
    return (
        isinstance(data, dict)
        and isinstance(data.get("benchmarks"), list)
        and isinstance(data.get("machine_info"), dict)
    )


def _benchmark_json(path: Path) -> bool:
    data = _json_object(path)
    if not _benchmark_format(data):
        return False
    if "llmperf" in data["machine_info"]:
        return True
    benches = data["benchmarks"]
    return bool(benches) and all(
        isinstance(b, dict)
        and isinstance(b.get("extra_info"), dict)
        and {"workload", "timed"} <= set(b["extra_info"])
        for b in benches
    )


def _measure_slugs() -> set[str]:
    return {m.replace("_", "-").lower() for m in METRICS}


def _bmf_format(data: Any) -> TypeGuard[dict[str, Any]]:
    return isinstance(data, dict) and all(
        isinstance(measures, dict)
        and all(isinstance(v, dict) and "value" in v for v in measures.values())
        for measures in data.values()
    )


def _bmf(path: Path) -> bool:
    data = _json_object(path)
    if not _bmf_format(data):
        return False
    ours = _measure_slugs()
    return all(set(measures) <= ours for measures in data.values())


#: existing files under these names are data an appended Markdown block would break
_STRUCTURED_SUFFIXES = frozenset(
    {".json", ".jsonl", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".py", ".csv", ".html", ".htm"}
)
#: the top-level keys of an llmperf.yaml registry or a sweep definition (each a table)
_REGISTRY_KEYS = frozenset({"sweeps", "models", "builds", "launchers", "profiles"})


def _github_summary(path: Path) -> bool:
    """Markdown that a job's steps append to (GitHub's summary file is shared by a job's
    steps; a block is only ever appended to it): text that is none of this package's
    other files and no data an appended block would break (JSON, an HTML page, an
    llmperf.yaml or sweep definition, a file named as structured data)."""
    if path.suffix.lower() in _STRUCTURED_SUFFIXES:
        return False
    raw = _read(path, _JSONL_HEAD)
    if raw.startswith((_PNG_MAGIC, b"GGUF")) or b"\0" in raw:
        return False
    text = raw.decode("utf-8", errors="replace").lstrip("\ufeff")
    head = text.lstrip()
    if _summary_md(path) or _history_md(path):
        return False
    if head.startswith("{") or re.match(r"<(!DOCTYPE html|html)", head, re.IGNORECASE):
        return False
    if head.startswith("["):
        try:
            json.loads(text)
        except ValueError:
            pass  # Markdown that opens with a link
        else:
            return False
    try:
        import yaml

        loaded = yaml.safe_load(text)
    except Exception:  # Markdown is rarely YAML: any failure means it is not a registry
        loaded = None
    if not isinstance(loaded, Mapping):
        return True
    return not any(isinstance(loaded.get(k), Mapping | list) for k in _REGISTRY_KEYS)


def _bisect_state(path: Path) -> bool:
    """The state document of ``llmperf bisect`` (pytest_llmperf.verdict.bisect_state):
    a JSON object with an integer ``llmperf_bisect`` and a list of ``steps``."""
    data = _json_object(path)
    return (
        data is not None
        and isinstance(data.get("llmperf_bisect"), int)
        and isinstance(data.get("steps"), list)
    )


def _machine_limits(path: Path) -> bool:
    data = _json_object(path)
    return (
        data is not None
        and data.get("kind") == MACHINE_LIMITS_TAG
        and isinstance(data.get("limits"), dict)
    )


_RECOGNIZERS: dict[Kind, Callable[[Path], bool]] = {
    "sweep-results": _sweep_results,
    "ranking": _ranking,
    "results-json": _results_json,
    "summary-md": _summary_md,
    "report-html": _report_html,
    "history-md": _history_md,
    "history-html": _history_html,
    "plot-png": _plot_png,
    "benchmark-json": _benchmark_json,
    "bmf": _bmf,
    "github-summary": _github_summary,
    "bisect-state": _bisect_state,
    "machine-limits": _machine_limits,
}


def _empty(path: Path) -> bool:
    """Zero bytes, or a little white space only."""
    try:
        size = path.stat().st_size
        return size == 0 or (size <= 4096 and not _read(path, 4096).strip())
    except (OSError, _Unreadable):
        return False


def is_ours(path: str | os.PathLike[str], kind: Kind) -> bool:
    """Whether ``path`` may be written as ``kind``: it does not exist (a dangling link
    included), is empty, or is a file of that kind. An unreadable file is not. (A
    directory is left to the writer, whose error says to name a file.)"""
    p = Path(path)
    if not p.exists() or p.is_dir():
        return True
    if _empty(p):
        return True
    try:
        return _RECOGNIZERS[kind](p)
    except _Unreadable:
        return False


# -- what a file appears to be -------------------------------------------------------------


def _describe_json(data: Any, raw: bytes) -> str:
    if data == {}:
        return "an empty JSON object"
    if isinstance(data, dict):
        version = data.get("schema_version")
        if isinstance(version, int) and isinstance(data.get("nodeid"), str):
            return f"a pytest-llmperf baseline file (of test {data['nodeid']})"
        if isinstance(version, int) and isinstance(data.get("tests"), list):
            return KIND_NAMES["results-json"]
        if isinstance(version, int) and {"machine", "entries", "moved_to"} & set(data):
            return "a pytest-llmperf baseline file (a machine's manifest)"
        if _benchmark_format(data):
            if "llmperf" in data["machine_info"]:
                return KIND_NAMES["benchmark-json"]
            return "pytest-benchmark JSON not written by pytest-llmperf"
        if _is_record(data) and raw.count(b"\n") <= 1:
            return KIND_NAMES["sweep-results"]
        if data and _bmf_format(data):
            if all(set(m) <= _measure_slugs() for m in data.values()):
                return KIND_NAMES["bmf"]
            return "Bencher Metric Format JSON not written by pytest-llmperf"
        if isinstance(data.get("llmperf_bisect"), int):
            return KIND_NAMES["bisect-state"]
        if data.get("kind") == MACHINE_LIMITS_TAG:
            return KIND_NAMES["machine-limits"]
        if {"key", "cmake_args"} <= set(data):
            return "a pytest-llmperf build description (build.json)"
        return "a JSON object of another kind"
    if _ids(data):
        return KIND_NAMES["ranking"]
    return f"JSON ({type(data).__name__})"


def appears_to_be(path: str | os.PathLike[str]) -> str:
    """What ``path`` looks like, for a message: one of this package's files by name, or
    the file's format."""
    p = Path(path)
    if p.is_dir():
        return "a directory"
    if not p.exists():
        return "missing"
    try:
        head = _read(p, 1 << 16)
    except _Unreadable as exc:
        return f"unreadable ({exc})"
    if not head.strip():
        return "empty"
    if head.startswith(_PNG_MAGIC):
        return KIND_NAMES["plot-png"] if _plot_png(p) else "a PNG image of another program"
    if head.startswith(b"GGUF"):
        return "a GGUF model file"
    if b"\0" in head:
        return "binary data"
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    for kind in ("summary-md", "history-md", "report-html", "history-html"):
        if _RECOGNIZERS[kind](p):
            return KIND_NAMES[kind]
    if re.match(r"\s*<(!DOCTYPE html|html)", text, re.IGNORECASE):
        return "an HTML page"
    try:
        data = _json(p)
    except (ValueError, _Unreadable):
        data = None
    else:
        return _describe_json(data, head)
    if _sweep_results(p):
        return KIND_NAMES["sweep-results"]
    if re.match(r"\s*(\{|\[\s*[\"{\[\]\d-])", text):
        return "a file that starts like JSON but is not valid JSON"
    try:
        import yaml

        loaded = yaml.safe_load(_read(p).decode("utf-8"))
    except Exception:  # not UTF-8, not YAML, unreadable: described as text below
        loaded = None
    if isinstance(loaded, Mapping):
        if "sweeps" in loaded:
            return "a sweep definition (YAML)"
        if {"models", "builds", "launchers", "profiles"} & set(loaded):
            return "an llmperf.yaml registry"
        if set(loaded) == {"ranking"} and _ids(loaded["ranking"]):
            return KIND_NAMES["ranking"]
        return "a YAML document"
    if _ids(loaded) and loaded:
        return KIND_NAMES["ranking"]
    if text.startswith("#"):
        return "a Markdown or text file"
    return "a text file"


def refusal(path: str | os.PathLike[str], kind: Kind, what: str) -> str | None:
    """The one-line refusal for writing ``path`` as ``kind`` (``what``: the option or
    command that names it), or None when it may be written."""
    if is_ours(path, kind):
        return None
    return (
        f"{what}: {path} exists and appears to be {appears_to_be(path)}, not "
        f"{KIND_NAMES[kind]}; nothing was written to it: choose another path or remove it"
    )


#: kinds of the files the package reads: those it writes, and baselines
InputKind = Kind | Literal["baseline"]
BASELINE_NAME = (
    "a pytest-llmperf baseline file (baselines/<machine>.json, or a test's file under "
    "baselines/<machine>/)"
)


def _baseline(path: Path) -> bool:
    data = _json_object(path)
    if data is None or not isinstance(data.get("schema_version"), int):
        return False
    return isinstance(data.get("nodeid"), str) or bool(
        {"machine", "entries", "moved_to"} & set(data)
    )


def input_name(kind: InputKind) -> str:
    return BASELINE_NAME if kind == "baseline" else KIND_NAMES[kind]


def expect(path: str | os.PathLike[str], kinds: Sequence[InputKind], what: str) -> None:
    """Raise a UsageError unless the existing, non-empty file ``path`` is one of ``kinds``
    (a file the command reads): one line naming the file, what it appears to be and what
    the command expected. A missing, empty or unreadable file is left to the reader."""
    p = Path(path)
    if not p.is_file() or _empty(p):
        return
    try:
        if any(_baseline(p) if k == "baseline" else _RECOGNIZERS[k](p) for k in kinds):
            return
    except _Unreadable:
        return
    raise UsageError(
        f"{what}: {path} appears to be {appears_to_be(path)}; expected "
        f"{' or '.join(input_name(k) for k in kinds)}; nothing was read or written"
    )


def check(path: str | os.PathLike[str], kind: Kind, what: str) -> None:
    """Raise a UsageError (see :func:`refusal`) unless ``path`` may be written as
    ``kind``."""
    message = refusal(path, kind, what)
    if message is not None:
        raise UsageError(message)


__all__ = [
    "BASELINE_NAME",
    "KIND_NAMES",
    "PNG_SOFTWARE",
    "InputKind",
    "Kind",
    "appears_to_be",
    "check",
    "expect",
    "input_name",
    "is_ours",
    "png_software",
    "refusal",
]
