"""Reading baseline documents: a file's JSON object, its schema version and its entries,
each a BaselineError naming the file and the fix when it cannot be used."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_llmperf.baseline import legacy
from pytest_llmperf.baseline.history import Entry, SessionRecord, apply_diff
from pytest_llmperf.baseline.keys import STRICT_FIELDS, params_identity
from pytest_llmperf.errors import BaselineError
from pytest_llmperf.fileio import DuplicateKeyError, loads_json

#: the schema of the files this version writes
SCHEMA_VERSION = 2


def parse_json(raw: bytes | str, path: Path | str) -> dict[str, Any]:
    """A baseline file's JSON object. Raises BaselineError naming the file and the fix."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    if not text.strip():
        raise legacy.fail(
            path,
            "is empty (an interrupted write or a bad merge?)",
            "restore it from version control (git checkout -- FILE) or delete it to start afresh",
        )
    try:
        data = loads_json(text, str(path))
    except DuplicateKeyError as exc:
        raise legacy.fail(path, str(exc).removeprefix(f"{path}: ")) from None
    except json.JSONDecodeError as exc:
        hint = " (it contains merge conflict markers)" if "<<<<<<<" in text else ""
        raise legacy.fail(
            path, f"is not valid JSON{hint}: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(data, dict):
        raise legacy.fail(
            path,
            f"the top level is a {type(data).__name__}, expected an object with "
            "schema_version and entries",
        )
    return data


def check_version(doc: Mapping[str, Any], path: Path | str) -> int:
    version = doc.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise legacy.fail(path, f"schema_version is {version!r}, expected an integer")
    if version > SCHEMA_VERSION:
        raise BaselineError(
            f"baseline file {path} was written by a newer pytest-llmperf (schema {version} > "
            f"{SCHEMA_VERSION}): upgrade, or move the file away (the file was not modified)"
        )
    if version < 1:
        raise legacy.fail(path, f"schema_version {version} is not a version this plugin wrote")
    machine = doc.get("machine", {})
    if not isinstance(machine, dict):
        raise legacy.fail(path, f"'machine' is a {type(machine).__name__}, expected an object")
    return version


def parse_entry(nodeid: str, key: str, raw: Any, path: Path) -> Entry:
    where = f"entries[{key!r}]"
    if not isinstance(raw, dict):
        raise legacy.fail(path, f"{where} is a {type(raw).__name__}, expected an object")
    fp = raw.get("fingerprint")
    if not isinstance(fp, dict):
        raise legacy.fail(path, f"{where}.fingerprint is {type(fp).__name__}, expected an object")
    sessions = raw.get("sessions")
    if not isinstance(sessions, list) or not sessions:
        raise legacy.fail(path, f"{where}.sessions must be a non-empty list of sessions")
    model = raw.get("model", "")
    entry = Entry(
        nodeid=nodeid,
        key=key,
        model=model if isinstance(model, str) else "",
        fingerprint=fp,
        sessions=[SessionRecord.from_json(s) for s in sessions],
        extra={k: v for k, v in raw.items() if k not in ("model", "fingerprint", "sessions")},
    )
    try:  # keys as this version makes them (a new load parameter keys nothing anew)
        entry.key = legacy.rekey(entry)
    except Exception:  # a fingerprint this version cannot read: keep the stored key
        pass
    own = _params_of(fp)
    for session in entry.sessions:
        diff = session.fingerprint_diff
        other = sorted(k for k in diff if k in STRICT_FIELDS)
        params = sorted(k for k in diff if k.startswith("params."))
        if params and (own is None or _params_of(apply_diff(fp, diff)) != own):
            other += params
        if session.usable and other:
            session.raw = session.to_json()
            session.problem = (
                "recorded on another machine or configuration ("
                + ", ".join(f"{k}: {session.fingerprint_diff[k]!r}" for k in other)
                + "): not comparable with this entry"
            )
    return entry


def _params_of(fingerprint: Mapping[str, Any]) -> dict[str, Any] | None:
    """The effective load params of a fingerprint (as keys see them), or None where this
    version cannot read them. Sessions are compared by these: an earlier version that wrote
    the same configuration another way (a value at its then default left out, where this
    version writes it) ran the same params."""
    try:
        return params_identity(fingerprint.get("params") or {})
    except Exception:
        return None


def parse_document(raw: bytes | str, path: Path | str = "<baselines>") -> dict[str, Any]:
    """Parse and validate a baseline file (a test file, a manifest or a schema-1 file).
    Returns the document; raises BaselineError naming the file and the fix."""
    doc = parse_json(raw, path)
    version = check_version(doc, path)
    if version == 1:
        legacy.entries(doc, Path(path))
    elif "nodeid" in doc:
        entries = doc.get("entries", {})
        if not isinstance(entries, dict):
            raise legacy.fail(path, "'entries' is not an object")
        for k, e in entries.items():
            parse_entry(str(doc["nodeid"]), str(k), e, Path(path))
    return doc
