"""results.json: every TestResult of a session, plus llama-bench-compatible fields per
measurement; and reading it back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_llmperf.errors import UsageError
from pytest_llmperf.fileio import loads_json
from pytest_llmperf.model.results import TestResult
from pytest_llmperf.outputs.llama_bench import llama_bench_fields

SCHEMA_VERSION = 1


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def results_dict(
    reports: Sequence[TestResult], *, generated_at: str | None = None
) -> dict[str, Any]:
    """``{"schema_version": 1, "generated_at", "tests": [...]}``; each measurement carries
    a ``"llama_bench"`` object with llama-bench's JSON field names."""
    tests: list[dict[str, Any]] = []
    for r in reports:
        data = r.to_dict()
        for m, md in zip(r.measurements, data["measurements"], strict=True):
            md["llama_bench"] = llama_bench_fields(m)
        tests.append(data)
    return {
        "schema_version": SCHEMA_VERSION,
        "generated_at": generated_at or now_iso(),
        "tests": tests,
    }


def load_results(path: str | Path) -> list[TestResult]:
    """The TestReports of a results.json written by :func:`write_report`.

    Raises :class:`UsageError` naming the file when it is missing, not JSON, of another
    schema version, or malformed.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{p}: results file not found") from None
    except OSError as exc:
        raise UsageError(f"{p}: cannot read results file: {exc.strerror or exc}") from None
    try:
        data = loads_json(text, str(p))
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{p}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "expected a results.json written by pytest-llmperf"
        ) from None
    if not isinstance(data, dict) or "tests" not in data:
        raise UsageError(
            f"{p}: not a pytest-llmperf results file (expected an object with "
            "'schema_version' and 'tests')"
        )
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise UsageError(
            f"{p}: schema_version {version!r} is not supported (this pytest-llmperf reads "
            f"version {SCHEMA_VERSION}); regenerate the file with this version"
        )
    tests = data["tests"]
    if not isinstance(tests, list):
        raise UsageError(f"{p}: 'tests' must be a list, got {type(tests).__name__}")
    reports: list[TestResult] = []
    for i, entry in enumerate(tests):
        nodeid = entry.get("nodeid", "?") if isinstance(entry, dict) else "?"
        try:
            if not isinstance(entry, dict):
                raise TypeError(f"expected an object, got {type(entry).__name__}")
            reports.append(TestResult.from_dict(entry))
        except UsageError as exc:
            raise UsageError(f"{p}: test #{i} ({nodeid}): {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise UsageError(f"{p}: test #{i} ({nodeid}) is malformed: {what}") from None
    return reports
