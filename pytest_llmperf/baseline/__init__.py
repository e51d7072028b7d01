"""Baselines: what was accepted for each test on each machine, with its history.

- :mod:`~pytest_llmperf.baseline.keys`: strict and warn-only fingerprint fields, the key
- :mod:`~pytest_llmperf.baseline.history`: an entry and its accepted sessions
- :mod:`~pytest_llmperf.baseline.store`: the files on disk (one per test), locked writes
- :mod:`~pytest_llmperf.baseline.legacy`: reading schema-1 files (pytest-llmperf 0.1)
- :mod:`~pytest_llmperf.baseline.jsonfmt`: the files' JSON layout

Pure: no pytest, no llama.cpp.
"""

from pytest_llmperf.baseline.documents import SCHEMA_VERSION, parse_document
from pytest_llmperf.baseline.history import DERIVED, SIGNIFICANT_DIGITS, Entry, SessionRecord
from pytest_llmperf.baseline.keys import (
    STRICT_FIELDS,
    WARN_FIELDS,
    baseline_key,
    fingerprint_diff,
    strict_view,
)
from pytest_llmperf.baseline.store import (
    DEFAULT_HISTORY,
    MAX_HISTORY,
    BaselineStore,
    EntryInfo,
    FlushReport,
    Pending,
    entry_relpath,
)

__all__ = [
    "DEFAULT_HISTORY",
    "DERIVED",
    "MAX_HISTORY",
    "SCHEMA_VERSION",
    "SIGNIFICANT_DIGITS",
    "STRICT_FIELDS",
    "WARN_FIELDS",
    "BaselineStore",
    "Entry",
    "EntryInfo",
    "FlushReport",
    "Pending",
    "SessionRecord",
    "baseline_key",
    "entry_relpath",
    "fingerprint_diff",
    "parse_document",
    "strict_view",
]
