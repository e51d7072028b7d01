"""The baseline store: one JSON file per machine, keys, fingerprints, atomic merging writes.

Pure (no pytest, no llama.cpp). Layout: ``<directory>/<machine-id>.json``::

    {"schema_version": 1,
     "machine": {...},
     "entries": {"<nodeid>": {"<fingerprint key>": {
         "accepted_at": "2025-08-24T10:00:00+00:00",
         "git_commit": "abc123..." | null,
         "fingerprint": {"machine": {...}, "software": {...}, "model": {...},
                         "params": {...}, "workloads": ["tg128", ...]},
         "measurements": {"<workload name>": Measurement.to_dict(), ...}}}}}

written with ``json.dumps(sort_keys=True, indent=2)`` and a trailing newline, so diffs
of a committed baseline stay small and readable.

**Which fingerprint fields matter.** :data:`STRICT_FIELDS` must be equal for two
measurements to be compared at all: they make up the entry's key
(:func:`baseline_key`), so a change of model id or quantization, load params,
workloads, CPU model, core count, architecture or GPU finds no entry under the new key;
the caller reports a ``mismatch`` when entries exist for the test under another key.
:data:`WARN_FIELDS` are compared and reported as warnings but never block the
comparison: the driver, llama.cpp build, Python, OS, installed RAM/VRAM, this plugin's
version, and the model *file* (sha256, size, GGUF name). A new file for the same model id
and quantization (re-converted, re-quantized, a new release) is exactly what the gate
should judge: it is compared against the baseline, with a warning that the file changed.

**Writes.** Accepted entries are queued during the session and written once by
:meth:`BaselineStore.flush`: under a file lock (``<file>.lock`` next to the JSON), the
file is re-read from disk, the queued entries merged into it (entries of other tests,
other fingerprints and other processes are kept: a ``-k`` selection never deletes
anything), written to a temporary file in the same directory, fsynced, moved over the
old file with ``os.replace`` and the directory fsynced. A crash at any point leaves
either the old or the new file, never a mix. A file that cannot be read (empty,
truncated, not an object, wrong types, a newer schema) raises :class:`BaselineError`
naming the file and the fix, and is never modified.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmperf.errors import BaselineError, UsageError
from pytest_llmperf.options import check_machine_id
from pytest_llmperf.params import LoadParams, Workload

SCHEMA_VERSION = 1

#: fields that must match for a baseline to be compared (they form the entry key)
STRICT_FIELDS: tuple[str, ...] = (
    "model.id",
    "model.quant",
    "params",
    "workloads",
    "machine.cpu",
    "machine.cores",
    "machine.arch",
    "machine.gpu",
)

#: fields whose difference is reported as a warning only
WARN_FIELDS: tuple[str, ...] = (
    "model.sha256",
    "model.file_size",
    "model.name",
    "machine.gpu_driver",
    "machine.ram_gb",
    "machine.vram_total_mb",
    "machine.os",
    "software.python",
    "software.llama_cpp",
    "software.llama_system_info",
    "software.pytest_llmperf",
)

#: seconds to wait for another process's lock before giving up
LOCK_TIMEOUT_S = 120.0

_ABSENT = object()


# -- fingerprints -----------------------------------------------------------------------


def _get(doc: Mapping[str, Any], path: str) -> Any:
    """``doc["machine"]["cpu"]`` for ``"machine.cpu"``; workloads from either key."""
    if path == "workloads":
        if "workloads" in doc:
            return doc["workloads"]
        if "workload" in doc:
            return [doc["workload"]]
        return _ABSENT
    cur: Any = doc
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return _ABSENT
        cur = cur[part]
    return cur


def _params_identity(params: LoadParams | Mapping[str, Any] | None) -> dict[str, Any]:
    """The params part of a key: non-default effective values (LoadParams.identity), so a
    parameter added later at its default, or a stored dict of every field, keys alike."""
    if params is None:
        return {}
    if not isinstance(params, LoadParams):
        params = LoadParams.from_dict(params)
    return params.identity()


def _workload_names(workloads: Iterable[Workload | str] | Workload | str | None) -> list[str]:
    if workloads is None:
        return []
    if isinstance(workloads, (Workload, str)):
        workloads = [workloads]
    return sorted(
        {w.name if isinstance(w, Workload) else Workload.parse(w).name for w in workloads}
    )


def strict_view(
    fingerprint: Mapping[str, Any],
    params: LoadParams | Mapping[str, Any] | None,
    workloads: Iterable[Workload | str] | Workload | str | None,
) -> dict[str, Any]:
    """The strict fields of a fingerprint as a flat dict (absent fields are None)."""
    view: dict[str, Any] = {}
    for path in STRICT_FIELDS:
        if path == "params":
            view[path] = _params_identity(params)
        elif path == "workloads":
            view[path] = _workload_names(workloads)
        else:
            value = _get(fingerprint, path)
            view[path] = None if value is _ABSENT else value
    return view


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def baseline_key(
    fingerprint: Mapping[str, Any],
    params: LoadParams | Mapping[str, Any] | None,
    workloads: Iterable[Workload | str] | Workload | str | None,
) -> str:
    """The one baseline key: 16 hex digits of the sha256 of the strict fields.

    ``fingerprint`` is ``{"machine": ..., "software": ..., "model": ...}``; ``params`` the
    load params; ``workloads`` the workloads of the test (their order does not matter).
    Warn-only fields do not change the key; nor does a load parameter at its default.
    """
    digest = hashlib.sha256(
        canonical_json(strict_view(fingerprint, params, workloads)).encode()
    ).hexdigest()
    return digest[:16]


def _show(value: Any) -> str:
    return "<absent>" if value is _ABSENT else repr(value)


def _diff_field(path: str, a: Any, b: Any) -> list[str]:
    if a == b:
        return []
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out: list[str] = []
        for key in sorted(set(a) | set(b), key=str):
            out.extend(_diff_field(f"{path}.{key}", a.get(key, _ABSENT), b.get(key, _ABSENT)))
        return out
    return [f"{path}: {_show(a)} (baseline) vs {_show(b)} (now)"]


def fingerprint_diff(
    baseline: Mapping[str, Any], current: Mapping[str, Any]
) -> tuple[list[str], list[str]]:
    """``(strict_mismatches, warnings)`` between a stored and a current fingerprint doc.

    Docs are ``{"machine", "software", "model", "params", "workloads"}`` (missing parts
    are allowed). Lines read ``machine.cpu: 'X' (baseline) vs 'Y' (now)``; a params
    difference is listed per parameter (``params.n_threads: 4 (baseline) vs 8 (now)``).
    """
    strict: list[str] = []
    for path in STRICT_FIELDS:
        a, b = _get(baseline, path), _get(current, path)
        if path == "workloads":
            a = _ABSENT if a is _ABSENT else sorted(map(str, a))
            b = _ABSENT if b is _ABSENT else sorted(map(str, b))
        strict.extend(_diff_field(path, a, b))
    warnings: list[str] = []
    for path in WARN_FIELDS:
        warnings.extend(_diff_field(path, _get(baseline, path), _get(current, path)))
    return strict, warnings


# -- the store --------------------------------------------------------------------------


@dataclass
class FlushReport:
    """What :meth:`BaselineStore.flush` did, as nodeids (``nodeid [key]`` when a test has
    several keys queued)."""

    path: Path | None = None
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def written(self) -> bool:
        return bool(self.created or self.updated)


@dataclass(frozen=True)
class EntryInfo:
    """One stored entry, for ``llmperf baseline list``."""

    nodeid: str
    key: str
    accepted_at: str
    git_commit: str | None
    workloads: tuple[str, ...]
    model: str


def _parse_time(text: str) -> _dt.datetime | None:
    try:
        t = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)


class BaselineStore:
    """The baselines of one machine: ``<directory>/<machine_id>.json``."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        machine_id: str,
        machine: Mapping[str, Any] | None = None,
        *,
        lock_timeout: float = LOCK_TIMEOUT_S,
    ) -> None:
        try:
            check_machine_id(machine_id)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        self.directory = Path(directory)
        self.machine_id = machine_id
        self.machine = dict(machine) if machine else None
        self.path = self.directory / f"{machine_id}.json"
        self.lock_path = self.directory / f"{machine_id}.json.lock"
        self.lock_timeout = lock_timeout
        self._data: dict[str, Any] = _empty_doc()
        self._loaded = False
        self._queue: dict[tuple[str, str], dict[str, Any]] = {}

    # -- reading ------------------------------------------------------------------------
    def load(self) -> BaselineStore:
        """Read the file (a missing file is an empty store). Raises BaselineError."""
        self._data = self._read_disk()
        self._loaded = True
        return self

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.load()

    def _read_disk(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return _empty_doc()
        except IsADirectoryError:
            raise BaselineError(
                f"{self.path}: is a directory, not a baseline file; move it away"
            ) from None
        except NotADirectoryError:
            raise BaselineError(
                f"{self.path}: the baseline directory {self.directory} is a file (or lies "
                "under one); point --perf-baseline-dir (or llmperf_baseline_dir) at a directory"
            ) from None
        except OSError as exc:
            raise BaselineError(
                f"{self.path}: cannot read ({exc}); check its permissions"
            ) from None
        return parse_document(raw, self.path)

    def lookup(self, nodeid: str, key: str) -> dict[str, Any] | None:
        """The stored entry of ``nodeid`` under fingerprint ``key`` (as loaded), or None."""
        self._ensure_loaded()
        entry = self._data["entries"].get(nodeid, {}).get(key)
        return entry if isinstance(entry, dict) else None

    def entries_for(self, nodeid: str) -> dict[str, dict[str, Any]]:
        """Every stored entry of ``nodeid``, by key (to tell "new" from "mismatch")."""
        self._ensure_loaded()
        return dict(self._data["entries"].get(nodeid, {}))

    def list_entries(self) -> list[EntryInfo]:
        """Every stored entry, sorted by nodeid and key."""
        self._ensure_loaded()
        out: list[EntryInfo] = []
        for nodeid, by_key in sorted(self._data["entries"].items()):
            for key, entry in sorted(by_key.items()):
                fp = entry.get("fingerprint") or {}
                model = entry.get("model") or _get(fp, "model.name")
                out.append(
                    EntryInfo(
                        nodeid=nodeid,
                        key=key,
                        accepted_at=str(entry.get("accepted_at", "")),
                        git_commit=entry.get("git_commit"),
                        workloads=tuple(sorted(entry.get("measurements", {}))),
                        model="" if model is _ABSENT or model is None else str(model),
                    )
                )
        return out

    def unused_entries(self, used: set[tuple[str, str]]) -> list[tuple[str, str]]:
        """Stored (nodeid, key) pairs that no test of this session used, sorted."""
        self._ensure_loaded()
        return sorted(
            (nodeid, key)
            for nodeid, by_key in self._data["entries"].items()
            for key in by_key
            if (nodeid, key) not in used
        )

    @property
    def machine_info(self) -> dict[str, Any]:
        self._ensure_loaded()
        return dict(self._data.get("machine") or {})

    # -- writing ------------------------------------------------------------------------
    def queue(self, nodeid: str, key: str, entry: Mapping[str, Any]) -> None:
        """Queue ``entry`` for ``nodeid``/``key``; written by :meth:`flush`.

        The entry is copied through JSON now, so an unserializable value fails here (not
        at the end of the session) and later changes to the caller's objects are not seen.
        """
        if not nodeid or not key:
            raise UsageError("baseline entries need a nodeid and a key")
        try:
            copy = json.loads(json.dumps(entry, sort_keys=True, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise BaselineError(
                f"{nodeid}: baseline entry is not JSON-serializable ({exc})"
            ) from None
        _check_entry(copy, f"queued entry {nodeid!r} [{key}]", self.path)
        self._queue[(nodeid, key)] = copy

    @property
    def pending(self) -> list[tuple[str, str]]:
        return sorted(self._queue)

    def flush(self) -> FlushReport:
        """Write the queued entries once, merged into the file as it is on disk now.

        Nothing queued: the file is not touched. Returns what was created, updated or
        left unchanged (an entry equal to the stored one except for ``accepted_at`` and
        ``git_commit`` keeps the stored one).
        """
        report = FlushReport(path=self.path)
        if not self._queue:
            return report
        multi = {n for n, _k in self._queue if sum(1 for m, _ in self._queue if m == n) > 1}
        with self._lock():
            data = self._read_disk()
            for (nodeid, key), entry in sorted(self._queue.items()):
                label = f"{nodeid} [{key}]" if nodeid in multi else nodeid
                by_key = data["entries"].setdefault(nodeid, {})
                old = by_key.get(key)
                if old is None:
                    report.created.append(label)
                elif _same_entry(old, entry):
                    report.unchanged.append(label)
                    continue
                else:
                    report.updated.append(label)
                by_key[key] = entry
            if report.written:
                self._set_machine(data)
                self._write(data)
        self._data = data
        self._loaded = True
        self._queue.clear()
        return report

    def prune(
        self,
        keep_nodeids: Iterable[str] | None = None,
        older_than: _dt.datetime | _dt.timedelta | None = None,
        *,
        entries: Iterable[tuple[str, str]] | None = None,
        dry_run: bool = False,
    ) -> list[tuple[str, str]]:
        """Remove entries; returns the removed (nodeid, key) pairs, sorted.

        An entry is removed when its nodeid is not in ``keep_nodeids`` (if given), or it
        was accepted before ``older_than`` (a datetime, or an age as a timedelta), or it is
        listed in ``entries``. With no criterion nothing is removed. Under the lock, on
        the file as it is on disk.
        """
        keep = None if keep_nodeids is None else set(keep_nodeids)
        listed = None if entries is None else set(entries)
        cutoff: _dt.datetime | None = None
        if isinstance(older_than, _dt.timedelta):
            cutoff = _dt.datetime.now(_dt.timezone.utc) - older_than
        elif isinstance(older_than, _dt.datetime):
            cutoff = (
                older_than if older_than.tzinfo else older_than.replace(tzinfo=_dt.timezone.utc)
            )
        if keep is None and cutoff is None and listed is None:
            return []

        def doomed(nodeid: str, key: str, entry: Mapping[str, Any]) -> bool:
            if keep is not None and nodeid not in keep:
                return True
            if listed is not None and (nodeid, key) in listed:
                return True
            if cutoff is not None:
                t = _parse_time(str(entry.get("accepted_at", "")))
                return t is None or t < cutoff
            return False

        if not self.path.exists():
            return []
        with self._lock():
            data = self._read_disk()
            removed = sorted(
                (n, k)
                for n, by_key in data["entries"].items()
                for k, e in by_key.items()
                if doomed(n, k, e)
            )
            if removed and not dry_run:
                for n, k in removed:
                    del data["entries"][n][k]
                    if not data["entries"][n]:
                        del data["entries"][n]
                self._write(data)
                self._data = data
                self._loaded = True
        return removed

    # -- internals ----------------------------------------------------------------------
    def _set_machine(self, data: dict[str, Any]) -> None:
        if self.machine:
            data["machine"] = {**self.machine, "id": self.machine_id}
            return
        if data.get("machine"):
            return
        for by_key in data["entries"].values():
            for entry in by_key.values():
                mach = (entry.get("fingerprint") or {}).get("machine")
                if isinstance(mach, Mapping):
                    data["machine"] = {**mach, "id": self.machine_id}
                    return
        data["machine"] = {"id": self.machine_id}

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        from filelock import FileLock, Timeout

        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BaselineError(
                f"{self.directory}: cannot create the baseline directory ({exc})"
            ) from None
        lock = FileLock(str(self.lock_path), timeout=self.lock_timeout)
        try:
            lock.acquire()
        except Timeout:
            raise BaselineError(
                f"{self.path}: could not lock {self.lock_path} within {self.lock_timeout:g} s: "
                "another pytest-llmperf process is writing; wait for it, or delete the lock "
                "file if none runs"
            ) from None
        try:
            yield
        finally:
            lock.release()

    def _write(self, data: dict[str, Any]) -> None:
        data["schema_version"] = SCHEMA_VERSION
        text = dump_document(data)
        try:
            mode = self.path.stat().st_mode & 0o777
        except OSError:
            mode = 0o644
        fd, tmp_name = tempfile.mkstemp(
            dir=self.directory, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, self.path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            if isinstance(exc, OSError):
                raise BaselineError(
                    f"{self.path}: could not write the baselines ({exc}); the old file is unchanged"
                ) from exc
            raise
        _fsync_dir(self.directory)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _same_entry(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    volatile = {"accepted_at", "git_commit"}
    return {k: v for k, v in old.items() if k not in volatile} == {
        k: v for k, v in new.items() if k not in volatile
    }


# -- the document -----------------------------------------------------------------------


def _empty_doc() -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "machine": {}, "entries": {}}


def dump_document(data: Mapping[str, Any]) -> str:
    """The file text: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


_FIX = "fix it, restore it from version control, or move it away to record new baselines"


def _fail(path: Path | str, problem: str, fix: str = _FIX) -> BaselineError:
    return BaselineError(f"baseline file {path}: {problem}; {fix} (the file was not modified)")


def parse_document(raw: bytes | str, path: Path | str = "<baselines>") -> dict[str, Any]:
    """Parse and validate a baseline file's content. Raises BaselineError."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    if not text.strip():
        raise _fail(
            path,
            "is empty (an interrupted write or a bad merge?)",
            "restore it from version control (git checkout -- FILE) or delete it to start afresh",
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = " (it contains merge conflict markers)" if "<<<<<<<" in text else ""
        raise _fail(
            path, f"is not valid JSON{hint}: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(data, dict):
        raise _fail(
            path,
            f"the top level is a {type(data).__name__}, expected an object with "
            "schema_version, machine and entries",
        )
    version = data.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise _fail(path, f"schema_version is {version!r}, expected an integer")
    if version > SCHEMA_VERSION:
        raise BaselineError(
            f"baseline file {path} was written by a newer pytest-llmperf (schema {version} > "
            f"{SCHEMA_VERSION}): upgrade, or move the file away (the file was not modified)"
        )
    if version < 1:
        raise _fail(path, f"schema_version {version} is not a version this plugin wrote")
    machine = data.get("machine", {})
    if not isinstance(machine, dict):
        raise _fail(path, f"'machine' is a {type(machine).__name__}, expected an object")
    entries = data.get("entries", {})
    if not isinstance(entries, dict):
        raise _fail(
            path,
            f"'entries' is a {type(entries).__name__}, expected an object "
            "nodeid -> {key -> entry}",
        )
    for nodeid, by_key in entries.items():
        if not isinstance(by_key, dict):
            raise _fail(
                path,
                f"entries[{nodeid!r}] is a {type(by_key).__name__}, expected an "
                "object fingerprint key -> entry",
            )
        for key, entry in by_key.items():
            _check_entry(entry, f"entries[{nodeid!r}][{key!r}]", path)
        entries[nodeid] = _rekeyed(by_key)
    return {"schema_version": version, "machine": machine, "entries": entries}


def _rekeyed(by_key: dict[str, Any]) -> dict[str, Any]:
    """Entries under the keys this version computes from their stored fingerprints, so
    an upgrade that changes how keys are made (a new load parameter, effective values)
    finds every stored entry. Two entries that land on one key keep the newer."""
    out: dict[str, Any] = {}
    for key, entry in by_key.items():
        fp = entry["fingerprint"]
        try:
            new = baseline_key(fp, fp.get("params", {}), _get(fp, "workloads") or [])
        except (UsageError, TypeError, ValueError):
            new = key  # a fingerprint this version cannot read: leave it where it is
        old = out.get(new)
        if old is None or str(entry.get("accepted_at", "")) >= str(old.get("accepted_at", "")):
            out[new] = entry
    return out


def _check_entry(entry: Any, where: str, path: Path | str) -> None:
    from pytest_llmperf.results import Measurement

    if not isinstance(entry, dict):
        raise _fail(path, f"{where} is a {type(entry).__name__}, expected an object")
    for name, kind in (("accepted_at", str), ("fingerprint", dict), ("measurements", dict)):
        if name not in entry:
            raise _fail(path, f"{where} has no {name!r}")
        if not isinstance(entry[name], kind):
            raise _fail(
                path,
                f"{where}.{name} is a {type(entry[name]).__name__}, expected "
                f"{'a string' if kind is str else 'an object'}",
            )
    commit = entry.get("git_commit")
    if commit is not None and not isinstance(commit, str):
        raise _fail(path, f"{where}.git_commit is {commit!r}, expected a string or null")
    for wl, m in entry["measurements"].items():
        if not isinstance(m, dict):
            raise _fail(
                path, f"{where}.measurements[{wl!r}] is a {type(m).__name__}, expected an object"
            )
        try:
            Measurement.from_dict(m)
        except (KeyError, TypeError, ValueError, AttributeError, UsageError) as exc:
            raise _fail(
                path,
                f"{where}.measurements[{wl!r}] is not a measurement ({type(exc).__name__}: {exc})",
            ) from None


__all__ = [
    "SCHEMA_VERSION",
    "STRICT_FIELDS",
    "WARN_FIELDS",
    "BaselineStore",
    "EntryInfo",
    "FlushReport",
    "baseline_key",
    "dump_document",
    "fingerprint_diff",
    "parse_document",
    "strict_view",
]
