"""Baseline files of schema 1 (pytest-llmperf 0.1): one JSON file per machine holding
every test's single accepted session. Read here into :class:`Entry` histories of one
session; the store writes them back in the current layout on its first write, so an
upgrade never orphans a committed baseline.

Schema-1 entries recorded no CPU family, model or ISA level (strict fields since schema
2). :func:`adopt_machine` gives them the current machine's when everything they did
record agrees with it (model name, cores, architecture, and the ISA flags in llama.cpp's
system info); otherwise they stay as they were and show as a fingerprint mismatch.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pytest_llmperf.baseline.history import Entry, Invalid, SessionRecord, check_values
from pytest_llmperf.baseline.keys import baseline_key, get
from pytest_llmperf.errors import BaselineError

#: the defaults of schema 1 that were written into every entry's params
_LEGACY_DEFAULTS: dict[str, Any] = {"n_ubatch": 512}
#: machine fields schema 1 did not record
NEW_MACHINE_FIELDS = ("cpu_family", "cpu_model", "isa")

_FIX = "fix it, restore it from version control, or move it away to record new baselines"


def fail(path: Path | str, problem: str, fix: str = _FIX) -> BaselineError:
    return BaselineError(f"baseline file {path}: {problem}; {fix} (the file was not modified)")


def _params(raw: Any, where: str, path: Path) -> dict[str, Any]:
    from pytest_llmperf.model.params import LoadParams

    if not isinstance(raw, dict):
        return {}
    values = {k: v for k, v in raw.items() if _LEGACY_DEFAULTS.get(k, object()) != v}
    try:
        return LoadParams.from_dict(values).non_default()
    except Exception as exc:
        raise fail(path, f"{where}: params are not load parameters ({exc})") from None


def entries(doc: dict[str, Any], path: Path) -> list[Entry]:
    """The entries of a schema-1 document (already checked to be one)."""
    out: list[Entry] = []
    raw_entries = doc.get("entries", {})
    if not isinstance(raw_entries, dict):
        raise fail(
            path,
            f"'entries' is a {type(raw_entries).__name__}, expected an object "
            "nodeid -> {key -> entry}",
        )
    for nodeid, by_key in raw_entries.items():
        if not isinstance(by_key, dict):
            raise fail(
                path,
                f"entries[{nodeid!r}] is a {type(by_key).__name__}, expected an "
                "object fingerprint key -> entry",
            )
        for key, raw in by_key.items():
            out.append(_entry(str(nodeid), str(key), raw, path))
    return out


def _entry(nodeid: str, key: str, raw: Any, path: Path) -> Entry:
    where = f"entries[{nodeid!r}][{key!r}]"
    if not isinstance(raw, dict):
        raise fail(path, f"{where} is a {type(raw).__name__}, expected an object")
    for name, kind in (("accepted_at", str), ("fingerprint", dict), ("measurements", dict)):
        if name not in raw:
            raise fail(path, f"{where} has no {name!r}")
        if not isinstance(raw[name], kind):
            raise fail(
                path,
                f"{where}.{name} is a {type(raw[name]).__name__}, expected "
                f"{'a string' if kind is str else 'an object'}",
            )
    commit = raw.get("git_commit")
    if commit is not None and not isinstance(commit, str):
        raise fail(path, f"{where}.git_commit is {commit!r}, expected a string or null")
    fp = dict(raw["fingerprint"])
    fp["params"] = _params(fp.get("params", {}), where, path)
    values: dict[str, dict[str, list[float]]] = {}
    absent: dict[str, dict[str, str]] = {}
    reps = warmup = 0
    problem = ""
    for wl, m in raw["measurements"].items():
        if not isinstance(m, dict):
            raise fail(
                path,
                f"{where}.measurements[{wl!r}] is a {type(m).__name__}, expected an object",
            )
        if not isinstance(m.get("metrics", {}), dict):
            raise fail(path, f"{where}.measurements[{wl!r}] is not a measurement")
        metrics = m.get("metrics", {})
        try:
            values[str(wl)] = {
                str(name): check_values(str(name), (spec or {}).get("values"))
                for name, spec in metrics.items()
                if isinstance(spec, dict)
            }
        except Invalid as exc:
            problem = f"measurements[{wl!r}]: {exc}"
        if isinstance(m.get("absent"), dict):
            absent[str(wl)] = {str(k): str(v) for k, v in m["absent"].items()}
        reps = max(reps, int(m.get("repetitions", 0) or 0))
        warmup = max(warmup, int(m.get("warmup", 0) or 0))
    if not problem and not any(values.values()):
        problem = "no metric values: the entry measured nothing"
    session = SessionRecord(
        accepted_at=raw["accepted_at"],
        git_commit=commit,
        repetitions=reps,
        warmup=warmup,
        values=values,
        absent=absent,
    )
    if problem:
        session.raw = {"accepted_at": raw["accepted_at"], "schema_1_entry": raw}
        session.problem = problem
    model = raw.get("model") or get(fp, "model.id")
    entry = Entry(
        nodeid=nodeid,
        key=key,
        model="" if not isinstance(model, str) else model,
        fingerprint=fp,
        sessions=[session],
    )
    entry.key = rekey(entry)
    return entry


def rekey(entry: Entry) -> str:
    fp = entry.fingerprint
    return baseline_key(fp, fp.get("params", {}), get(fp, "workloads") or [])


_ISA_FLAG = re.compile(r"\bAVX512\s*=\s*1\b")


def adopt_machine(entry: Entry, machine: dict[str, Any]) -> bool:
    """Give a schema-1 entry the CPU family, model and ISA level of ``machine`` when all it
    recorded agrees with it. Returns whether it was adopted (its key then changes)."""
    mach = entry.fingerprint.get("machine")
    if not isinstance(mach, dict) or all(f in mach for f in NEW_MACHINE_FIELDS):
        return False
    for name in ("cpu", "cores", "arch", "gpu"):
        if mach.get(name) != machine.get(name):
            return False
    info = str(get(entry.fingerprint, "software.llama_system_info") or "")
    isa = str(machine.get("isa") or "")
    if info and bool(_ISA_FLAG.search(info)) != ("v4" in isa):
        return False
    for name in NEW_MACHINE_FIELDS:
        if name in machine:
            mach[name] = machine[name]
    entry.key = rekey(entry)
    return True
