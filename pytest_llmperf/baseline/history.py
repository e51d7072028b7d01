"""A baseline entry and its history: the last K accepted sessions of one test.

An :class:`Entry` is one test on one fingerprint (its key): the fingerprint once, and its
:class:`SessionRecord` records, oldest first. A session holds what one ``--perf-accept``
measured: per workload, each metric's per-repetition values, plus the fingerprint fields
that differed from the entry's (a llama.cpp upgrade, a new model file), so the history
keeps what each session ran on without repeating it.

Stored values are rounded to :data:`SIGNIFICANT_DIGITS` significant digits, and metrics
that other metrics define exactly (:data:`DERIVED`: tpot_ms and itl_mean_ms are both
1000 / tg_tps) are not stored but rebuilt on reading. Reading validates every number:
finite, and positive for times, rates and sizes. A session that fails is skipped with a
notice naming the file, the entry, the session and the fix; an entry left without a
usable session is refused the same way. Nothing read is ever dropped: a skipped session
is written back as it was.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_llmperf.baseline.keys import get
from pytest_llmperf.model.metrics import METRICS
from pytest_llmperf.model.results import BaselineValues

#: significant digits of stored values. Run-to-run noise of a timing is 1% or more even on
#: a quiet machine, so a fifth digit records noise; four digits resolve 0.1%, ten times
#: finer than the smallest change any gate here can detect.
SIGNIFICANT_DIGITS = 4


def _inverse_ms(values: Sequence[float]) -> list[float]:
    return [1000.0 / v for v in values]


#: metric -> (the metric it is computed from, how): not stored, rebuilt on reading
DERIVED: dict[str, tuple[str, Callable[[Sequence[float]], list[float]]]] = {
    name: (spec.inverse_of, _inverse_ms) for name, spec in METRICS.items() if spec.inverse_of
}


def rounded(value: float) -> float:
    """``value`` to :data:`SIGNIFICANT_DIGITS` significant digits."""
    if value == 0 or not math.isfinite(value):
        return value
    digits = SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(abs(value)))
    out = round(value, digits)
    return float(int(out)) if digits <= 0 else out


#: units of quantities that cannot be 0 or below (times, rates, sizes, ratios); counts can
POSITIVE_UNITS = frozenset({"ms", "t/s", "MB", "x"})


class Invalid(Exception):
    """A stored value this version cannot use; the message says which and why."""


def check_values(metric: str, values: Any) -> list[float]:
    """The values of one metric as floats: a non-empty list of finite numbers, positive
    for the metrics of the registry (times, rates, sizes)."""
    if not isinstance(values, list) or not values:
        raise Invalid(f"{metric}: {values!r} is not a list of numbers")
    out: list[float] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise Invalid(f"{metric}: {v!r} is not a number")
        f = float(v)
        if not math.isfinite(f):
            raise Invalid(f"{metric}: {v!r} is not a finite number")
        if metric in METRICS and METRICS[metric].unit in POSITIVE_UNITS and f <= 0:
            raise Invalid(f"{metric}: {v!r} is not positive ({METRICS[metric].unit} > 0)")
        if f < 0:
            raise Invalid(f"{metric}: {v!r} is negative")
        out.append(f)
    return out


@dataclass
class SessionRecord:
    """One accepted session of one test."""

    accepted_at: str
    git_commit: str | None
    repetitions: int
    warmup: int
    #: workload name -> metric -> per-repetition values (derived metrics included)
    values: dict[str, dict[str, list[float]]]
    #: workload name -> metric -> why it is absent (no NVML, in-process RSS ...)
    absent: dict[str, dict[str, str]] = field(default_factory=dict)
    #: fingerprint fields ("software.llama_cpp") that differ from the entry's fingerprint
    fingerprint_diff: dict[str, Any] = field(default_factory=dict)
    #: the machine's speed probe when the session was measured (machine/speed.py's
    #: ``Speed.to_json``), read by the gate; None in sessions of older versions
    machine_speed: dict[str, Any] | None = None
    #: the session as read, when it could not be used: written back untouched
    raw: dict[str, Any] | None = None
    #: why it could not be used
    problem: str = ""

    @property
    def usable(self) -> bool:
        return not self.problem

    def to_json(self) -> dict[str, Any]:
        if self.raw is not None:
            return self.raw
        out: dict[str, Any] = {"accepted_at": self.accepted_at}
        if self.git_commit:
            out["git_commit"] = self.git_commit
        out["repetitions"] = self.repetitions
        out["warmup"] = self.warmup
        if self.fingerprint_diff:
            out["fingerprint"] = dict(sorted(self.fingerprint_diff.items()))
        out["values"] = {
            wl: {
                m: [rounded(v) for v in vals]
                for m, vals in sorted(metrics.items())
                if m not in DERIVED
            }
            for wl, metrics in sorted(self.values.items())
        }
        absent = {wl: dict(sorted(a.items())) for wl, a in sorted(self.absent.items()) if a}
        if absent:
            out["absent"] = absent
        if self.machine_speed:
            out["machine_speed"] = dict(self.machine_speed)
        return out

    @classmethod
    def from_json(cls, data: Any) -> SessionRecord:
        """A session as stored; an unusable one carries its problem (and its raw form)."""
        try:
            return cls._parse(data)
        except Invalid as exc:
            stamp = data.get("accepted_at", "?") if isinstance(data, dict) else "?"
            raw = data if isinstance(data, dict) else {"invalid": data}
            return cls(str(stamp), None, 0, 0, {}, raw=raw, problem=str(exc))

    @classmethod
    def _parse(cls, data: Any) -> SessionRecord:
        if not isinstance(data, dict):
            raise Invalid(f"a session is a {type(data).__name__}, expected an object")
        stamp = data.get("accepted_at")
        if not isinstance(stamp, str) or not stamp:
            raise Invalid(f"accepted_at is {stamp!r}, expected a date and time")
        commit = data.get("git_commit")
        if commit is not None and not isinstance(commit, str):
            raise Invalid(f"git_commit is {commit!r}, expected a string")
        counts = {}
        for name in ("repetitions", "warmup"):
            v = data.get(name, 0)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise Invalid(f"{name} is {v!r}, expected an integer >= 0")
            counts[name] = v
        raw_values = data.get("values")
        if not isinstance(raw_values, dict) or not raw_values:
            raise Invalid("'values' is missing or empty: the session measured nothing")
        values: dict[str, dict[str, list[float]]] = {}
        for wl, metrics in raw_values.items():
            if not isinstance(metrics, dict) or not metrics:
                raise Invalid(f"values[{wl!r}] holds no metric")
            values[str(wl)] = {str(m): check_values(str(m), v) for m, v in metrics.items()}
            for derived, (source, fn) in DERIVED.items():
                if source in values[str(wl)] and derived not in values[str(wl)]:
                    values[str(wl)][derived] = fn(values[str(wl)][source])
        absent_raw = data.get("absent", {})
        if not isinstance(absent_raw, dict):
            raise Invalid(f"'absent' is a {type(absent_raw).__name__}, expected an object")
        absent = {
            str(wl): {str(m): str(r) for m, r in (a or {}).items()}
            for wl, a in absent_raw.items()
            if isinstance(a, dict)
        }
        diff = data.get("fingerprint", {})
        if not isinstance(diff, dict):
            raise Invalid(f"'fingerprint' is a {type(diff).__name__}, expected an object")
        speed = data.get("machine_speed")
        if speed is not None and not isinstance(speed, dict):
            raise Invalid(
                f"'machine_speed' is a {type(speed).__name__}, expected an object (or delete "
                "the key: the gate then goes without the machine's speed)"
            )
        return cls(
            stamp,
            commit,
            counts["repetitions"],
            counts["warmup"],
            values,
            absent,
            dict(diff),
            speed,
        )

    def workload_values(self, workload: str) -> dict[str, list[float]]:
        return self.values.get(workload, {})


def flat(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"software": {"llama_cpp": "x"}}`` -> ``{"software.llama_cpp": "x"}``."""
    out: dict[str, Any] = {}
    for k, v in doc.items():
        path = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flat(v, path + "."))
        else:
            out[path] = v
    return out


def diff_from(entry_fp: Mapping[str, Any], session_fp: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``session_fp`` that differ from ``entry_fp`` (flat paths; a field the
    session lacks is recorded as None)."""
    a, b = flat(entry_fp), flat(session_fp)
    return {p: b.get(p) for p in sorted(set(a) | set(b)) if a.get(p) != b.get(p)}


@dataclass
class Entry:
    """One test on one fingerprint: the fingerprint (its latest session's) and the history."""

    nodeid: str
    key: str
    model: str
    fingerprint: dict[str, Any]
    sessions: list[SessionRecord] = field(default_factory=list)
    #: keys of the stored entry this version does not own (a hand-added comment): kept
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def usable(self) -> list[SessionRecord]:
        """The sessions the gate can use, oldest first."""
        return [s for s in self.sessions if s.usable]

    @property
    def latest(self) -> SessionRecord | None:
        use = self.usable
        return use[-1] if use else None

    @property
    def accepted_at(self) -> str:
        latest = self.latest
        return latest.accepted_at if latest else ""

    def problems(self, where: str) -> list[str]:
        """One notice per skipped session."""
        return [
            f"{where}: session accepted {s.accepted_at} skipped: {s.problem}; fix or delete "
            "that session (the others are used)"
            for s in self.sessions
            if not s.usable
        ]

    def workloads(self) -> list[str]:
        names = get(self.fingerprint, "workloads")
        if isinstance(names, list):
            return sorted(str(n) for n in names)
        latest = self.latest
        return sorted(latest.values) if latest else []

    def history(self, workload: str) -> list[dict[str, list[float]]]:
        """Per usable session (oldest first): metric -> values of ``workload``."""
        return [s.workload_values(workload) for s in self.usable if workload in s.values]

    def reference(self, workload: str) -> BaselineValues | None:
        """What the gate compares ``workload`` against: the usable sessions' values."""
        sessions = self.history(workload)
        if not sessions:
            return None
        latest = self.latest
        absent = latest.absent.get(workload, {}) if latest else {}
        return BaselineValues([dict(s) for s in sessions], dict(absent))

    def machine_speeds(self) -> list[dict[str, Any]]:
        """The speed probes of the usable sessions (those that have one), oldest first."""
        return [s.machine_speed for s in self.usable if s.machine_speed]

    def references(self) -> dict[str, BaselineValues]:
        out: dict[str, BaselineValues] = {}
        for wl in sorted({w for s in self.usable for w in s.values}):
            ref = self.reference(wl)
            if ref is not None:
                out[wl] = ref
        return out

    def add(self, session: SessionRecord, fingerprint: Mapping[str, Any], keep: int) -> None:
        """Append ``session`` measured on ``fingerprint`` (which becomes the entry's), and
        keep the last ``keep`` sessions. Older sessions keep what they ran on as diffs."""
        new_fp = dict(fingerprint)
        for s in self.sessions:
            if s.raw is None:
                full = apply_diff(self.fingerprint, s.fingerprint_diff)
                s.fingerprint_diff = diff_from(new_fp, full)
        self.fingerprint = new_fp
        self.sessions.append(session)
        if len(self.sessions) > keep:
            del self.sessions[: len(self.sessions) - keep]

    def to_json(self) -> dict[str, Any]:
        return {
            **self.extra,
            "model": self.model,
            "fingerprint": self.fingerprint,
            "sessions": [s.to_json() for s in self.sessions],
        }


def apply_diff(base: Mapping[str, Any], diff: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with the flat-path fields of ``diff`` set (the inverse of :func:`diff_from`)."""
    out: dict[str, Any] = _deep_copy(base)
    for path, value in diff.items():
        parts = path.split(".")
        cur = out
        for part in parts[:-1]:
            nxt = cur.get(part)
            if not isinstance(nxt, dict):
                nxt = {}
                cur[part] = nxt
            cur = nxt
        cur[parts[-1]] = value
    return out


def _deep_copy(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in doc.items()}
