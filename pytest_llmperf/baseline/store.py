"""The baseline store of one machine: one small JSON file per test, merged by git alone.

Layout, under the baseline directory (``baselines/``)::

    <machine-id>.json                     the machine's manifest: schema and machine info
    <machine-id>/<module>/<test>.json     one file per test: its entries and their history

e.g. ``baselines/amd-epyc-f25m17-2c/perf_tests/test_quant/test_quant[tiny-moe-mxfp4-t2].json``.
Two branches that accept different tests touch different files, so they merge without a
conflict; a review shows which tests moved. Each test file::

    {"schema_version": 2, "nodeid": "...", "entries": {"<key>": {
        "model": "...", "fingerprint": {...}, "sessions": [{...}, ...]}}}

(see :mod:`pytest_llmperf.baseline.history` for an entry and its sessions). The manifest
exists so that an older pytest-llmperf, which reads ``<machine-id>.json``, refuses the
layout with its clear "written by a newer pytest-llmperf" message instead of starting an
empty file beside it.

**Upgrades.** A schema-1 file (one file per machine, pytest-llmperf 0.1) is read as
entries with a history of one session, also under the machine id of 0.1 (``aliases``);
the first write moves every entry into the layout above and leaves a schema-2 manifest in
its place: nothing is lost. **Writes** are queued during the session and made once by
:meth:`BaselineStore.flush`, under a lock kept outside the repository (the cache folder):
each file is re-read from disk, the queued sessions merged in (other tests, other
fingerprints and other processes' entries are kept), and written atomically
(:func:`pytest_llmperf.fileio.write_atomic`). A file that cannot be read raises
:class:`BaselineError` naming the file and the fix, for the tests it holds, and is never
modified.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmperf import paths, signals
from pytest_llmperf.baseline import jsonfmt, legacy
from pytest_llmperf.baseline.documents import (
    SCHEMA_VERSION,
    check_version,
    parse_entry,
    parse_json,
)
from pytest_llmperf.baseline.history import Entry, SessionRecord, diff_from
from pytest_llmperf.baseline.keys import baseline_key
from pytest_llmperf.errors import BaselineError, UsageError
from pytest_llmperf.fileio import real_target, sync_tree, write_atomic
from pytest_llmperf.options import check_machine_id

#: accepted sessions kept per entry unless told otherwise (``llmperf_history``)
DEFAULT_HISTORY = 5
MAX_HISTORY = 100
#: seconds to wait for another process's lock before giving up
LOCK_TIMEOUT_S = 120.0

_SAFE = re.compile(r"[^A-Za-z0-9._+\-\[\]=,@]")


def _component(text: str) -> str:
    """One path component for a piece of a node id: safe on every file system; a piece
    that had to change, or is long, gets a short hash of the original (no collisions)."""
    safe = _SAFE.sub("_", text)
    if safe in ("", ".", "..") or safe != text or len(safe) > 100:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        safe = f"{safe[:80].strip('.') or 'x'}-{digest}"
    return safe


def entry_relpath(nodeid: str) -> Path:
    """Where a test's file lives under the machine's folder: the module path without
    ``.py``, then the test name (classes joined with ``.``)."""
    module, sep, rest = nodeid.partition("::")
    parts = [p for p in module.split("/") if p]
    if not sep:
        return Path(
            *[_component(p) for p in parts[:-1]],
            _component(parts[-1] if parts else nodeid) + ".json",
        )
    if parts and parts[-1].endswith(".py"):
        parts[-1] = parts[-1][:-3]
    name = _component(rest.replace("::", "."))
    return Path(*[_component(p) for p in parts], name + ".json")


@dataclass(frozen=True)
class Pending:
    """A session queued for one entry: measured with ``fingerprint``; ``reset`` replaces
    the entry's history instead of adding to it."""

    model: str
    fingerprint: Mapping[str, Any]
    session: SessionRecord
    reset: bool = False


@dataclass
class FlushReport:
    """What :meth:`BaselineStore.flush` did, as nodeids (``nodeid [key]`` when a test has
    several keys queued)."""

    path: Path | None = None
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    #: schema-1 entries moved into the current layout
    migrated: int = 0
    #: queued sessions not written, one line each (nodeid: why; the file was left alone)
    refused: list[str] = field(default_factory=list)

    @property
    def written(self) -> bool:
        return bool(self.created or self.updated or self.migrated)


@dataclass(frozen=True)
class EntryInfo:
    """One stored entry, for ``llmperf baseline list``."""

    nodeid: str
    key: str
    accepted_at: str
    git_commit: str | None
    workloads: tuple[str, ...]
    model: str
    sessions: int = 1


@dataclass
class _Disk:
    """Everything read from disk in one pass."""

    entries: dict[str, dict[str, Entry]] = field(default_factory=dict)
    #: test file -> its parsed document (for the keys we do not own)
    docs: dict[Path, dict[str, Any]] = field(default_factory=dict)
    #: nodeid -> its file
    files: dict[str, Path] = field(default_factory=dict)
    #: test file that cannot be read -> the error
    broken: dict[Path, BaselineError] = field(default_factory=dict)
    #: test file whose "nodeid" names another test than the one stored at its path (a
    #: renamed test, a moved file) -> that nodeid; also in ``broken``
    misplaced: dict[Path, str] = field(default_factory=dict)
    #: schema-1 files read (own id or an alias): path -> document
    legacy: dict[Path, dict[str, Any]] = field(default_factory=dict)
    #: nodeids whose entries came (only) from a schema-1 file
    legacy_nodeids: set[str] = field(default_factory=set)
    manifest: dict[str, Any] = field(default_factory=dict)


class BaselineStore:
    """The baselines of one machine (see the module docstring for the layout)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        machine_id: str,
        machine: Mapping[str, Any] | None = None,
        *,
        history: int = DEFAULT_HISTORY,
        aliases: Iterable[str] = (),
        lock_timeout: float = LOCK_TIMEOUT_S,
    ) -> None:
        try:
            check_machine_id(machine_id)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if not 1 <= history <= MAX_HISTORY:
            raise UsageError(
                f"history={history}: keep between 1 and {MAX_HISTORY} accepted sessions "
                "per test (llmperf_history)"
            )
        self.directory = Path(directory)
        self.machine_id = machine_id
        self.machine = dict(machine) if machine else None
        self.history = history
        self.aliases = [a for a in aliases if a != machine_id]
        self.path = self.directory / f"{machine_id}.json"
        self.entries_dir = self.directory / machine_id
        self.lock_timeout = lock_timeout
        self.notices: list[str] = []
        self._disk = _Disk()
        self._loaded = False
        self._queue: dict[tuple[str, str], Pending] = {}

    # -- reading ------------------------------------------------------------------------
    def load(self) -> BaselineStore:
        """Read the machine's files (none is an empty store). Raises BaselineError for a
        manifest or schema-1 file that cannot be read."""
        self._disk = self._read()
        for nodeid, by_key in self._disk.entries.items():
            for entry in by_key.values():
                self.notices.extend(entry.problems(self._where(self._disk, nodeid, entry.key)))
        self._loaded = True
        return self

    def _ensure(self) -> _Disk:
        if not self._loaded:
            self.load()
        return self._disk

    def _read_json(self, path: Path) -> Any:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise BaselineError(
                f"{path}: is a directory, not a baseline file; move it away"
            ) from None
        except NotADirectoryError:
            blocker = next((q for q in path.parents if q.is_file()), self.directory)
            if blocker in (self.directory, *self.directory.parents):
                raise BaselineError(
                    f"{path}: the baseline directory {self.directory} is a file (or lies "
                    "under one); point --perf-baseline-dir (or llmperf_baseline_dir) at a "
                    "directory"
                ) from None
            raise BaselineError(
                f"{path}: {blocker} is a file where a folder of baselines must be; move it "
                "away (the baselines were not modified)"
            ) from None
        except OSError as exc:
            raise BaselineError(f"{path}: cannot read ({exc}); check its permissions") from None
        return parse_json(raw, path)

    def _read(self, only: set[str] | None = None) -> _Disk:
        """Everything on disk; with ``only``, just those tests' files (unless a schema-1
        file is there: moving it needs every entry)."""
        disk = _Disk()
        manifests = [self.path] + [self.directory / f"{a}.json" for a in self.aliases]
        for i, path in enumerate(manifests):
            doc = self._read_json(path)
            if doc is None:
                continue
            version = check_version(doc, path)
            if i == 0 and version == SCHEMA_VERSION:
                disk.manifest = doc
            if version == 1:
                disk.legacy[path] = doc
                for entry in legacy.entries(doc, path):
                    if self.machine is not None:
                        legacy.adopt_machine(entry, self.machine)
                    by_key = disk.entries.setdefault(entry.nodeid, {})
                    old = by_key.get(entry.key)
                    if old is None or entry.accepted_at >= old.accepted_at:
                        by_key[entry.key] = entry
                    disk.legacy_nodeids.add(entry.nodeid)
            if i == 0 and doc is not None:
                break  # the machine's own manifest exists: aliases are not read
        if self.entries_dir.is_dir():
            if only is not None and not disk.legacy:
                files = [self.entries_dir / entry_relpath(n) for n in sorted(only)]
            else:
                files = sorted(self.entries_dir.rglob("*.json"))
            for path in files:
                self._read_test_file(path, disk)
        elif self.entries_dir.exists():
            raise BaselineError(
                f"{self.entries_dir}: is a file, not the folder of this machine's baselines; "
                "move it away"
            )
        return disk

    def _read_test_file(self, path: Path, disk: _Disk) -> None:
        try:
            doc = self._read_json(path)
            if doc is None:
                return
            if check_version(doc, path) != SCHEMA_VERSION:
                raise legacy.fail(path, "a test file of schema 1 (only the machine file was)")
            nodeid = doc.get("nodeid")
            if not isinstance(nodeid, str) or not nodeid:
                raise legacy.fail(path, f"'nodeid' is {nodeid!r}, expected the test's node id")
            home = self.entries_dir / entry_relpath(nodeid)
            if not _same_file(path, home):
                disk.misplaced[path] = nodeid
                raise BaselineError(
                    f"baseline file {path} holds the entries of test {nodeid!r} (its "
                    f'"nodeid" field), whose file is {home}: a renamed test or a moved '
                    'file? Edit its "nodeid" field to the test\'s new id, or move the file '
                    "back (the file was not modified)"
                )
            raw = doc.get("entries", {})
            if not isinstance(raw, dict):
                raise legacy.fail(path, f"'entries' is a {type(raw).__name__}, expected an object")
            entries: dict[str, Entry] = {}
            for k, e in raw.items():
                entry = parse_entry(nodeid, str(k), e, path)
                old = entries.get(entry.key)
                if old is None or entry.accepted_at >= old.accepted_at:
                    entries[entry.key] = entry
        except BaselineError as exc:
            disk.broken[path] = exc
            return
        disk.docs[path] = doc
        disk.files[nodeid] = path
        by_key = disk.entries.setdefault(nodeid, {})
        by_key.update(entries)  # the per-test file is newer than any schema-1 entry
        disk.legacy_nodeids.discard(nodeid)

    def _where(self, disk: _Disk, nodeid: str, key: str) -> str:
        path = disk.files.get(nodeid) or next(iter(disk.legacy), self.path)
        return f"baseline file {path}: entry {nodeid} [{key}]"

    def _problem(self, disk: _Disk, nodeid: str) -> BaselineError | None:
        """Why the file of ``nodeid`` cannot be used nor written, or None."""
        path = self.entries_dir / entry_relpath(nodeid)
        inside = disk.misplaced.get(path)
        if inside is not None:
            home = self.entries_dir / entry_relpath(inside)
            return BaselineError(
                f'baseline file {path} holds the entries of test {inside!r} (its "nodeid" '
                f'field), not of {nodeid}: a renamed test? Edit its "nodeid" field to '
                f"{nodeid!r}, or move the file back to {home}; the file was left as it is "
                "and this test was not recorded as new"
            )
        return disk.broken.get(path)

    def _check_nodeid(self, disk: _Disk, nodeid: str) -> None:
        problem = self._problem(disk, nodeid)
        if problem is not None:
            raise problem

    def lookup(self, nodeid: str, key: str) -> Entry | None:
        """The entry of ``nodeid`` under ``key``, or None. Raises BaselineError when its
        file cannot be read, or it holds no usable session (naming the file, the entry and
        the fix)."""
        disk = self._ensure()
        self._check_nodeid(disk, nodeid)
        entry = disk.entries.get(nodeid, {}).get(key)
        if entry is not None and not entry.usable:
            problems = "; ".join(s.problem for s in entry.sessions)
            raise BaselineError(
                f"{self._where(disk, nodeid, key)} cannot be used: {problems}. Fix the "
                "numbers in that file, restore it from version control, or re-record it "
                "with --perf-accept=reset"
            )
        return entry

    def entries_for(self, nodeid: str) -> dict[str, Entry]:
        """Every stored entry of ``nodeid``, by key (to tell "new" from "mismatch")."""
        disk = self._ensure()
        self._check_nodeid(disk, nodeid)
        return dict(disk.entries.get(nodeid, {}))

    def list_entries(self) -> list[EntryInfo]:
        """Every stored entry, sorted by nodeid and key."""
        disk = self._ensure()
        out: list[EntryInfo] = []
        for nodeid, by_key in sorted(disk.entries.items()):
            for key, e in sorted(by_key.items()):
                latest = e.latest
                out.append(
                    EntryInfo(
                        nodeid=nodeid,
                        key=key,
                        accepted_at=e.accepted_at,
                        git_commit=latest.git_commit if latest else None,
                        workloads=tuple(e.workloads()),
                        model=e.model,
                        sessions=len(e.sessions),
                    )
                )
        return out

    def unused_entries(self, used: set[tuple[str, str]]) -> list[tuple[str, str]]:
        """Stored (nodeid, key) pairs that no test of this session used, sorted."""
        disk = self._ensure()
        return sorted(
            (nodeid, key)
            for nodeid, by_key in disk.entries.items()
            for key in by_key
            if (nodeid, key) not in used
        )

    @property
    def broken_files(self) -> dict[Path, BaselineError]:
        return dict(self._ensure().broken)

    @property
    def machine_info(self) -> dict[str, Any]:
        disk = self._ensure()
        info = disk.manifest.get("machine")
        if isinstance(info, dict):
            return dict(info)
        for doc in disk.legacy.values():
            if isinstance(doc.get("machine"), dict):
                return dict(doc["machine"])
        return {}

    # -- writing ------------------------------------------------------------------------
    def queue(self, nodeid: str, key: str, pending: Pending) -> None:
        """Queue a session for ``nodeid``/``key``; written by :meth:`flush`. Its numbers
        are checked now, so a bad value fails here, not at the end of the session."""
        if not nodeid or not key:
            raise UsageError("baseline entries need a nodeid and a key")
        try:
            json.dumps(pending.session.to_json(), allow_nan=False)
            json.dumps(dict(pending.fingerprint), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise BaselineError(
                f"{nodeid}: baseline entry is not JSON-serializable ({exc})"
            ) from None
        check = SessionRecord.from_json(json.loads(json.dumps(pending.session.to_json())))
        if not check.usable:
            raise BaselineError(f"{nodeid}: not recorded: {check.problem}")
        fp = pending.fingerprint
        try:  # the key the entry will have when read back (keys follow fingerprints)
            key = baseline_key(fp, fp.get("params", {}), fp.get("workloads") or [])
        except (UsageError, TypeError, ValueError):
            pass
        self._queue[(nodeid, key)] = pending

    @property
    def pending(self) -> list[tuple[str, str]]:
        return sorted(self._queue)

    def flush(self) -> FlushReport:
        """Write the queued sessions once, merged into the files as they are on disk now
        (and move schema-1 entries into the current layout). Nothing queued: nothing is
        touched. A test whose file cannot be read, or holds another test's entries, is
        not written (``refused``; the file is left byte for byte) and the others are.
        Raises BaselineError when the files cannot be written (the old ones are
        unchanged)."""
        report = FlushReport(path=self.path)
        if not self._queue:
            return report
        multi = {n for n, _k in self._queue if sum(1 for m, _ in self._queue if m == n) > 1}
        with self._lock():
            disk = self._read(only={n for n, _k in self._queue})
            touched: set[str] = set()
            labels: dict[str, str] = {}
            for (nodeid, key), pend in sorted(self._queue.items()):
                label = f"{nodeid} [{key}]" if nodeid in multi else nodeid
                labels[label] = nodeid
                problem = self._problem(disk, nodeid)
                if problem is not None:  # never written over; the other tests still are
                    report.refused.append(f"{label}: {problem}")
                    continue
                by_key = disk.entries.setdefault(nodeid, {})
                old = by_key.get(key)
                if old is None or pend.reset:
                    new = Entry(nodeid, key, pend.model, dict(pend.fingerprint), [])
                    new.add(pend.session, pend.fingerprint, self.history)
                    by_key[key] = new
                    (report.created if old is None else report.updated).append(label)
                elif _same_as_latest(old, pend):
                    report.unchanged.append(label)
                    continue
                else:
                    old.model = pend.model or old.model
                    old.add(pend.session, pend.fingerprint, self.history)
                    report.updated.append(label)
                touched.add(nodeid)
            report.migrated, refused = self._write(disk, touched)
            for nodeid in sorted(refused):
                why = self._problem(disk, nodeid) or (
                    f"{self.entries_dir / entry_relpath(nodeid)} appeared or changed while "
                    "this session ran and is not this test's file; it was left as it is"
                )
                report.refused.append(f"{nodeid}: {why}")
            for done in (report.created, report.updated):
                done[:] = [x for x in done if labels[x] not in refused]
        self._loaded = False  # the next look reads the disk again, other tests included
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

        An entry is removed when its nodeid is not in ``keep_nodeids`` (if given), or its
        latest session was accepted before ``older_than`` (a datetime, or an age as a
        timedelta), or it is listed in ``entries``. With no criterion nothing is removed.
        Under the lock, on the files as they are on disk.
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

        def doomed(nodeid: str, key: str, entry: Entry) -> bool:
            if keep is not None and nodeid not in keep:
                return True
            if listed is not None and (nodeid, key) in listed:
                return True
            if cutoff is not None:
                t = _parse_time(entry.accepted_at)
                return t is None or t < cutoff
            return False

        if (
            not self.path.exists()
            and not self.entries_dir.exists()
            and not any((self.directory / f"{a}.json").exists() for a in self.aliases)
        ):
            return []
        with self._lock():
            disk = self._read()
            removed = sorted(
                (n, k)
                for n, by_key in disk.entries.items()
                for k, e in by_key.items()
                if doomed(n, k, e)
            )
            if removed and not dry_run:
                for n, k in removed:
                    del disk.entries[n][k]
                _moved, refused = self._write(disk, {n for n, _k in removed})
                removed = [(n, k) for n, k in removed if n not in refused]
                self._disk = disk
                self._loaded = True
        return removed

    # -- internals ----------------------------------------------------------------------
    def _write(self, disk: _Disk, touched: set[str]) -> tuple[int, set[str]]:
        """Write the files of ``touched`` nodeids (and, when schema-1 files were read,
        every entry they held, then their schema-2 manifests). Returns the number of
        schema-1 entries moved and the nodeids whose files were refused (a file that is
        not theirs: left as it is). Stop signals wait until every file is written."""
        migrate = set(disk.legacy_nodeids) if disk.legacy else set()
        refused: set[str] = set()
        try:
            with signals.held():
                self.entries_dir.mkdir(parents=True, exist_ok=True)
                for nodeid in sorted(touched | migrate):
                    if not self._write_test(disk, nodeid):
                        refused.add(nodeid)
                sync_tree(
                    {
                        real_target(disk.files[n]).parent
                        for n in touched | migrate
                        if n in disk.files and n not in refused
                    }
                )
                if refused & migrate:  # the schema-1 file still holds what was not moved
                    return 0, refused
                for path, doc in disk.legacy.items():
                    self._write_manifest(path, doc)
                if not disk.legacy or self.path not in disk.legacy:
                    self._write_manifest(self.path, disk.manifest)
        except OSError as exc:
            raise BaselineError(
                f"{self.directory}: could not write the baselines ({exc}); the old files "
                "are unchanged. Check that the directory is writable"
            ) from None
        moved = sum(len(disk.entries.get(n, {})) for n in migrate)
        disk.legacy.clear()
        disk.legacy_nodeids.clear()
        return moved, refused

    def _write_test(self, disk: _Disk, nodeid: str) -> bool:
        """Write (or, without entries, remove) the file of ``nodeid``: only a file that
        is absent or was read as that test's own; returns False, touching nothing, for
        any other (unreadable, another test's, appeared since it was read)."""
        path = disk.files.get(nodeid) or self.entries_dir / entry_relpath(nodeid)
        own = disk.docs.get(path, {}).get("nodeid") == nodeid
        if self._problem(disk, nodeid) is not None or path in disk.broken:
            return False
        if not own and path.exists():  # (a dangling link is written through)
            return False
        entries = disk.entries.get(nodeid, {})
        if not entries:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return True
        doc = {k: v for k, v in disk.docs.get(path, {}).items() if k not in ("entries",)}
        doc.update(
            schema_version=SCHEMA_VERSION,
            nodeid=nodeid,
            entries={k: e.to_json() for k, e in sorted(entries.items())},
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        # atomic; made durable by one sync of the folders when all are written (_write)
        write_atomic(path, jsonfmt.dumps(doc), durable=False)
        disk.files[nodeid] = path
        disk.docs[path] = doc
        return True

    def _write_manifest(self, path: Path, old: Mapping[str, Any]) -> None:
        """A schema-2 manifest at ``path``: keys we do not own are kept."""
        own = path == self.path
        doc = {k: v for k, v in old.items() if k not in ("entries", "machine", "schema_version")}
        doc["schema_version"] = SCHEMA_VERSION
        if own:
            machine = self.machine or old.get("machine") or {}
            doc["machine"] = {**machine, "id": self.machine_id}
            doc["layout"] = f"one file per test under {self.machine_id}/"
        else:
            doc["moved_to"] = f"{self.machine_id}/ (one file per test)"
        text = jsonfmt.dumps(doc)
        try:
            if path.read_text(encoding="utf-8") == text:
                return
        except OSError:
            pass
        write_atomic(path, text)

    def _lock_path(self) -> Path:
        digest = hashlib.sha256(str(self.entries_dir.resolve()).encode()).hexdigest()[:16]
        for base in (paths.locks_dir(), Path(tempfile.gettempdir()) / "pytest-llmperf-locks"):
            try:
                base.mkdir(parents=True, exist_ok=True)
                return base / f"{self.machine_id}-{digest}.lock"
            except OSError:
                continue
        raise BaselineError(
            f"{self.directory}: no folder for the baseline lock ({paths.locks_dir()}); set "
            "XDG_CACHE_HOME to a writable folder"
        )

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        from filelock import FileLock, Timeout

        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BaselineError(
                f"{self.directory}: cannot create the baseline directory ({exc})"
            ) from None
        lock_path = self._lock_path()
        lock = FileLock(str(lock_path), timeout=self.lock_timeout)
        try:
            lock.acquire()
        except Timeout:
            raise BaselineError(
                f"{self.directory}: could not lock {lock_path} within {self.lock_timeout:g} s: "
                "another pytest-llmperf process is writing; wait for it, or delete the lock "
                "file if none runs"
            ) from None
        except OSError as exc:
            raise BaselineError(f"{lock_path}: cannot create the lock ({exc})") from None
        try:
            yield
        finally:
            lock.release()


def _same_file(path: Path, home: Path) -> bool:
    """Whether ``path`` is where ``home`` is (the same name, or the same file on a file
    system that ignores case)."""
    if path == home:
        return True
    try:
        return home.exists() and os.path.samefile(path, home)
    except OSError:
        return False


def _same_as_latest(entry: Entry, pend: Pending) -> bool:
    latest = entry.latest
    if latest is None:
        return False
    a, b = latest.to_json(), pend.session.to_json()
    volatile = ("accepted_at", "git_commit", "fingerprint")
    same = {k: v for k, v in a.items() if k not in volatile} == {
        k: v for k, v in b.items() if k not in volatile
    }
    return same and not diff_from(entry.fingerprint, dict(pend.fingerprint))


def _parse_time(text: str) -> _dt.datetime | None:
    try:
        t = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return None
    return t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)
