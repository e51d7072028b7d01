"""Sweep results files: crash-safe JSONL files of sweep results, resume, shards and merge.

:func:`append_result` appends one fsynced JSON line per finished point;
:func:`read_results` reads them back, skipping (with a :class:`SweepWarning`) a line cut
by a crash; :func:`completed_ids` is what a resumed run skips; :func:`shard` splits the
points of a sweep across machines and :func:`merge` joins the shards' files.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from pytest_llmperf.errors import UsageError
from pytest_llmperf.fileio import loads_json
from pytest_llmperf.model import ownership
from pytest_llmperf.sweep.context import PathLike
from pytest_llmperf.sweep.files import read_error
from pytest_llmperf.sweep.points import SweepPoint

#: the field of a result record that holds its fingerprint key (see :func:`completed_ids`)
RESULT_KEY_FIELD = "fingerprint_key"


class SweepWarning(UserWarning):
    """Something in a results or ranking file was skipped (e.g. a line cut by a crash)."""


def append_result(path: PathLike, record: Mapping[str, Any]) -> None:
    """Append one result as a JSON line, flushed and fsynced before returning, so a crash
    or Ctrl-C keeps every run completed so far. Adds ``finished_at`` (UTC ISO 8601) when
    absent. A line cut by an earlier crash is closed first so it cannot swallow this one.
    Use one writer per file (each shard writes its own). An existing file that is not a
    results file (a baseline, a report's JSON) is a UsageError naming it, and is left
    alone (:mod:`pytest_llmperf.model.ownership`)."""
    if not isinstance(record.get("id"), str):
        raise UsageError("a result record needs an 'id' (the point id)")
    ownership.check(path, "sweep-results", "sweep results")
    row = dict(record)
    row.setdefault("finished_at", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    data = (json.dumps(row, separators=(",", ":")) + "\n").encode("utf-8")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0), 0o644)
    try:
        size = os.fstat(fd).st_size
        if size:
            os.lseek(fd, size - 1, os.SEEK_SET)
            if os.read(fd, 1) != b"\n":
                data = b"\n" + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_results(path: PathLike) -> list[dict[str, Any]]:
    """Every result of a JSONL file, in order. A missing file gives ``[]``; an unreadable
    line (a crash mid-write) is skipped with a :class:`SweepWarning`, never fatal; an
    unreadable file (a directory, no permission) or a record giving a key twice is a
    UsageError naming it."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise read_error(p, exc, "a results file (JSONL)") from None
    out: list[dict[str, Any]] = []
    lines = raw.split(b"\n")
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = loads_json(line.decode("utf-8"), f"{p}:{lineno}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            cut = " (cut short by a crash?)" if lineno == len(lines) else ""
            warnings.warn(
                f"{p}:{lineno}: unreadable result line ignored{cut}", SweepWarning, stacklevel=2
            )
            continue
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            warnings.warn(
                f"{p}:{lineno}: not a result record (an object with an 'id'); ignored",
                SweepWarning,
                stacklevel=2,
            )
            continue
        out.append(row)
    return out


def read_quietly(path: PathLike) -> tuple[list[dict[str, Any]], list[str]]:
    """:func:`read_results`, with the warnings returned as lines instead of shown."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SweepWarning)
        rows = read_results(path)
    return rows, [str(w.message) for w in caught]


def completed_ids(
    results: PathLike | Iterable[Mapping[str, Any]],
    keys: Mapping[str, str],
    *,
    sweep: str | None = None,
) -> set[str]:
    """Ids of points already measured with the same fingerprint key (skip them on resume).

    ``keys`` maps point id -> its current fingerprint key; a record counts when its
    ``fingerprint_key`` equals it and it has no truthy ``error``. With ``sweep``, records
    of other sweeps do not count (two sweeps may share point ids)."""
    rows = read_results(results) if isinstance(results, str | os.PathLike) else results
    done: set[str] = set()
    for row in rows:
        pid = row.get("id")
        if (
            isinstance(pid, str)
            and pid in keys
            and not row.get("error")
            and row.get(RESULT_KEY_FIELD) == keys[pid]
            and (sweep is None or row.get("sweep") in (None, sweep))
        ):
            done.add(pid)
    return done


# -- sharding --------------------------------------------------------------------------------

P = TypeVar("P", SweepPoint, str)


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` (1-based, as in ``--perf-shard=2/4``) -> (i, N)."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m:
        raise UsageError(f"shard {text!r}: write i/N, e.g. 2/4 (the 2nd of 4 shards)")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= i <= n:
        raise UsageError(f"shard {text!r}: i must be between 1 and N (N >= 1), e.g. 1/{max(n, 2)}")
    return i, n


def shard(points: Sequence[P], i: int, n: int) -> list[P]:
    """The points of shard ``i`` of ``n`` (1-based), in their given order.

    Round-robin over the sorted unique ids: the k-th id in sorted order goes to shard
    (k mod n) + 1. Every machine computes the same split whatever the definition order,
    shard sizes differ by at most one, the union of all shards is every point and shards
    are disjoint. (Changing the sweep may move points between shards; resume by
    fingerprint key handles that.)
    """
    if n < 1 or not 1 <= i <= n:
        raise UsageError(f"shard {i}/{n}: i must be between 1 and N (N >= 1)")

    def pid(p: P) -> str:
        return p.id if isinstance(p, SweepPoint) else p

    order = {x: k for k, x in enumerate(sorted({pid(p) for p in points}))}
    return [p for p in points if order[pid(p)] % n == i - 1]


# -- merge -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MergeResult:
    records: list[dict[str, Any]]
    #: records dropped as duplicates (same sweep, id and fingerprint key; the latest kept)
    duplicates: int
    #: one line per point (sweep and id) measured under different fingerprint keys (all kept)
    conflicts: tuple[str, ...]
    #: one line per id that points of several sweeps share (their records kept apart)
    shared: tuple[str, ...] = ()


def _point(pid: str, sweep: str) -> str:
    return f"{pid} (sweep {sweep})" if sweep else pid


def merge_records(sources: Sequence[tuple[str, Iterable[Mapping[str, Any]]]]) -> MergeResult:
    """Join the records of several sources (a name, such as the file, and its records);
    see :func:`merge`."""
    #: (id, sweep, fingerprint key) -> ((finished_at, order), record, source)
    latest: dict[tuple[str, str, str], tuple[tuple[str, int], dict[str, Any], str]] = {}
    dropped = 0
    seq = 0
    for src, rows in sources:
        for row in rows:
            seq += 1
            fkey = json.dumps(row.get(RESULT_KEY_FIELD), sort_keys=True)
            key = (row["id"], str(row.get("sweep") or ""), fkey)
            rank_key = (str(row.get("finished_at") or ""), seq)
            if key in latest:
                dropped += 1
                if rank_key < latest[key][0]:
                    continue
            latest[key] = (rank_key, dict(row), src)
    sources_of: dict[tuple[str, str], list[str]] = {}
    sweeps_of: dict[str, set[str]] = {}
    for (pid, sweep, _fkey), (_, _, src) in latest.items():
        sources_of.setdefault((pid, sweep), []).append(src)
        sweeps_of.setdefault(pid, set()).add(sweep)
    conflicts = tuple(
        f"{_point(pid, sweep)}: measured under {len(srcs)} fingerprint keys "
        f"({', '.join(sorted(set(srcs)))}); all kept, compare with care"
        for (pid, sweep), srcs in sorted(sources_of.items())
        if len(srcs) > 1
    )
    shared = tuple(
        f"{pid}: a point of sweeps {' and '.join(sorted(s or '(none)' for s in sweeps))} "
        "(their records are kept apart)"
        for pid, sweeps in sorted(sweeps_of.items())
        if len(sweeps) > 1
    )
    records = [row for _, (_, row, _) in sorted(latest.items(), key=lambda kv: kv[0])]
    return MergeResult(records=records, duplicates=dropped, conflicts=conflicts, shared=shared)


def merge_report(paths: Sequence[PathLike]) -> MergeResult:
    """Join the JSONL results of several shards; see :func:`merge`."""
    return merge_records([(str(p), read_results(p)) for p in paths])


def merge(paths: Sequence[PathLike]) -> list[dict[str, Any]]:
    """The results of several shard files, sorted by id (then sweep): duplicates (same
    sweep, id and fingerprint key) keep the latest (``finished_at``, then file and line
    order); records of different sweeps are different records, even under one id; a
    point measured under different fingerprint keys keeps every key and is reported with
    a :class:`SweepWarning` (use :func:`merge_report` for the counts and lines)."""
    result = merge_report(paths)
    for line in result.conflicts:
        warnings.warn(f"merge: {line}", SweepWarning, stacklevel=2)
    return result.records
