"""Thresholds, absolute limits and ratio SLAs: parsing, defaults and merging. Pure.

Three kinds of rule, written the way people write them:

- **relative thresholds** per metric, against the stored baseline::

      tg_tps: "-10%"              # fail when tokens/s drop by more than 10 %
      itl_p95_ms: "+15% or +0.5 ms"  # the larger of the two allowances
      ttft_ms: "5%"               # the sign is optional: the bad direction is the metric's
      vram_mb: "off"              # not gated (also null / none / false)

  The direction comes from the metric registry (``METRICS[m].better``); a sign that
  points the wrong way ("+10%" on tokens/s) is an error rather than a silent guess.

- **absolute limits** on the current median, with an optional workload qualifier::

      load_ms < 11000
      tg_tps[tg64] >= 5

- **ratio SLAs** between the medians of two workloads of one test::

      itl_p95_ms[tg512] / itl_p95_ms[tg64] <= 1.30
      stream_itl_p95_ms[long] / stream_itl_p95_ms[short] <= 1.30   # stream:long, stream:short

Sources merge in order, later overriding earlier (see :func:`merge_threshold_sources`):
built-in defaults < pyproject ``[tool.llmperf]`` < pytest ini < YAML file < marker kwargs.
A threshold replaces the one of the same metric; a limit replaces the one with the same
metric, workload and side (upper or lower bound); an SLA replaces the one with the same
two operands and side. Every parse error is a :class:`UsageError` naming the source, the
key and the accepted spelling.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pytest_llmperf.errors import UsageError
from pytest_llmperf.model.metrics import METRICS
from pytest_llmperf.model.workloads import Workload, stream_name

Op = Literal["<", "<=", ">", ">="]

OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

#: spellings accepted for operators, mapped to the canonical one
_OP_ALIASES: dict[str, Op] = {
    "<": "<",
    "<=": "<=",
    "=<": "<=",
    "≤": "<=",
    ">": ">",
    ">=": ">=",
    "=>": ">=",
    "≥": ">=",
}

#: what turns a threshold off
_OFF_WORDS = frozenset({"off", "none", "null", "no", "false", "disabled", "disable", "-", ""})

#: unit spellings accepted after an absolute allowance, per registry unit
_UNIT_ALIASES: dict[str, frozenset[str]] = {
    "ms": frozenset({"ms", "msec", "millisecond", "milliseconds"}),
    "t/s": frozenset({"t/s", "tok/s", "tokens/s", "tps", "ts"}),
    "MB": frozenset({"mb", "mib", "m"}),
    "GB/s": frozenset({"gb/s", "gbs"}),
}

_ALL_UNITS = frozenset().union(*_UNIT_ALIASES.values())

#: the keys that hold gate rules, wherever rules are written (marker, YAML, pyproject, ini)
RULE_KEYS: tuple[str, ...] = ("thresholds", "paired", "limits", "sla")

#: where rule sources come from, in merge order (later overrides earlier); the marker's
#: rules are merged last, per test
RuleTier = Literal["pyproject", "ini", "yaml", "cli", "marker"]
RULE_TIERS: tuple[RuleTier, ...] = ("pyproject", "ini", "yaml", "cli", "marker")


@dataclass(frozen=True)
class RuleSource:
    """One place rules were written: its name for messages, its tier, the raw mapping."""

    name: str
    tier: RuleTier
    data: Mapping[str, Any]


THRESHOLD_HINT = "write '-10%' or '+15% or +0.5 ms' (or 'off')"
LIMIT_HINT = "write e.g. 'load_ms < 11000' or 'tg_tps[tg64] >= 5'"
SLA_HINT = "write e.g. 'itl_p95_ms[tg512] / itl_p95_ms[tg64] <= 1.30'"

#: relative-change tolerance for float comparisons at the threshold boundary
_EPS = 1e-9


def _known_metrics() -> str:
    return ", ".join(sorted(METRICS))


def _fmt_num(value: float) -> str:
    """``10.0`` -> ``"10"``, ``0.5`` -> ``"0.5"``: numbers as people write them."""
    return f"{value:g}" if abs(value) < 1e15 else repr(value)


# -- relative thresholds ----------------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    """How far a metric may move in its bad direction before it counts as a change.

    ``rel_pct`` is a percentage of the baseline median, ``abs`` an amount in the metric's
    unit; with both the larger allowance applies. Both ``None`` means "not gated".
    """

    metric: str
    rel_pct: float | None = None
    abs: float | None = None
    #: where it was defined ("defaults", a file, "marker on test X")
    source: str = field(default="defaults", compare=False)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise UsageError(f"unknown metric {self.metric!r}; known metrics: {_known_metrics()}")
        for name in ("rel_pct", "abs"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise UsageError(
                    f"threshold {self.metric}: {name}={value!r} must be a finite "
                    "number >= 0 (the direction comes from the metric)"
                )

    @property
    def enabled(self) -> bool:
        return self.rel_pct is not None or self.abs is not None

    @property
    def better(self) -> str:
        return METRICS[self.metric].better

    @property
    def unit(self) -> str:
        return METRICS[self.metric].unit

    def allowance(self, baseline: float) -> float:
        """The largest tolerated change, in metric units, from ``baseline``."""
        parts = [0.0]
        if self.rel_pct is not None:
            parts.append(self.rel_pct / 100.0 * abs(baseline))
        if self.abs is not None:
            parts.append(self.abs)
        return max(parts)

    def bad_delta(self, baseline: float, current: float) -> float:
        """The change in the bad direction (negative when the metric got better)."""
        return current - baseline if self.better == "lower" else baseline - current

    def _beyond(self, delta: float, baseline: float) -> bool:
        allowed = self.allowance(baseline)
        return delta > allowed + _EPS * max(abs(baseline), allowed, 1e-12)

    def exceeded(self, baseline: float, current: float) -> bool:
        """True when ``current`` is worse than ``baseline`` by more than the allowance."""
        return self.enabled and self._beyond(self.bad_delta(baseline, current), baseline)

    def improved(self, baseline: float, current: float) -> bool:
        """True when ``current`` is better than ``baseline`` by more than the allowance."""
        return self.enabled and self._beyond(-self.bad_delta(baseline, current), baseline)

    def text(self) -> str:
        """The threshold as people write it: ``-10%``, ``+15% or +0.5 ms``, ``off``."""
        if not self.enabled:
            return "off"
        sign = "-" if self.better == "higher" else "+"
        parts = []
        if self.rel_pct is not None:
            parts.append(f"{sign}{_fmt_num(self.rel_pct)}%")
        if self.abs is not None:
            parts.append(f"{sign}{_fmt_num(self.abs)} {self.unit}")
        return " or ".join(parts)

    __str__ = text


_TERM_RE = re.compile(
    r"^(?P<sign>[+-]|±)?\s*(?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<unit>%|[A-Za-z/]+)?$"
)


def parse_threshold(metric: str, value: Any, where: str = "thresholds") -> Threshold:
    """Parse ``"-10%"``, ``"+15% or +0.5 ms"``, ``"5%"``, ``"+20 ms"`` or ``"off"``.

    ``where`` names the source and key for error messages.
    """
    if metric not in METRICS:
        raise UsageError(f"{where}: unknown metric {metric!r}; known metrics: {_known_metrics()}")
    mdef = METRICS[metric]
    if value is None or value is False:
        return Threshold(metric, source=where)
    if isinstance(value, Threshold):
        if value.metric != metric:
            raise UsageError(f"{where}: a threshold of {value.metric} given for {metric}")
        return value
    if isinstance(value, (bool, int, float)):
        raise UsageError(
            f"{where}: {value!r} is a bare number: say whether it is a percentage or an amount; "
            f"{THRESHOLD_HINT}"
        )
    if not isinstance(value, str):
        raise UsageError(
            f"{where}: {value!r} ({type(value).__name__}) not understood; {THRESHOLD_HINT}"
        )
    text = value.strip()
    if text.lower() in _OFF_WORDS:
        return Threshold(metric, source=where)
    rel: float | None = None
    absolute: float | None = None
    bad_sign = "-" if mdef.better == "higher" else "+"
    for raw in re.split(r"\s+or\s+|\s*\|\|\s*", text, flags=re.IGNORECASE):
        m = _TERM_RE.match(raw.strip())
        if not m:
            raise UsageError(f"{where}: {value!r} not understood; {THRESHOLD_HINT}")
        sign, number, unit = m.group("sign"), float(m.group("num")), m.group("unit")
        if unit is not None and unit != "%" and unit.lower() not in _ALL_UNITS:
            raise UsageError(f"{where}: {value!r} not understood; {THRESHOLD_HINT}")
        if sign and sign not in ("±", bad_sign):
            direction = "higher" if mdef.better == "higher" else "lower"
            drop = "drop" if mdef.better == "higher" else "rise"
            raise UsageError(
                f"{where}: {value!r} points the wrong way: {metric} is better {direction}, so a "
                f"regression is a {drop}; write '{bad_sign}{raw.strip()[1:].strip()}' "
                "(or leave the sign out)"
            )
        if not math.isfinite(number):
            raise UsageError(f"{where}: {value!r}: not a finite number; {THRESHOLD_HINT}")
        if unit == "%":
            if rel is not None:
                raise UsageError(f"{where}: {value!r} gives two percentages; {THRESHOLD_HINT}")
            rel = number
            continue
        if unit is not None and unit.lower() not in _UNIT_ALIASES.get(mdef.unit, {mdef.unit}):
            raise UsageError(
                f"{where}: {value!r}: unit {unit!r} does not fit {metric} (measured in "
                f"{mdef.unit}); write e.g. '{bad_sign}{_fmt_num(number)} {mdef.unit}' or a "
                "percentage"
            )
        if absolute is not None:
            raise UsageError(f"{where}: {value!r} gives two amounts; {THRESHOLD_HINT}")
        absolute = number
    return Threshold(metric, rel, absolute, source=where)


# -- absolute limits and ratio SLAs -----------------------------------------------------


@dataclass(frozen=True)
class Operand:
    """A metric, optionally of one workload: ``tg_tps`` or ``tg_tps[tg64]``."""

    metric: str
    workload: str | None = None

    def text(self) -> str:
        return f"{self.metric}[{self.workload}]" if self.workload else self.metric

    __str__ = text


def _is_upper(op: str) -> bool:
    return op in ("<", "<=")


@dataclass(frozen=True)
class Limit:
    """An absolute bound on the current median: ``load_ms < 11000``."""

    operand: Operand
    op: Op
    value: float
    source: str = field(default="", compare=False)

    @property
    def key(self) -> tuple[str, str | None, bool]:
        return (self.operand.metric, self.operand.workload, _is_upper(self.op))

    def holds(self, current: float) -> bool:
        return OPS[self.op](current, self.value)

    def bound_text(self) -> str:
        return f"{self.op} {_fmt_num(self.value)}"

    def text(self) -> str:
        return f"{self.operand.text()} {self.bound_text()}"

    __str__ = text


@dataclass(frozen=True)
class RatioSLA:
    """A bound on the ratio of two medians of one test: ``a[tg512] / a[tg64] <= 1.30``."""

    numerator: Operand
    denominator: Operand
    op: Op
    value: float
    source: str = field(default="", compare=False)

    @property
    def key(self) -> tuple[str, str | None, str, str | None, bool]:
        return (
            self.numerator.metric,
            self.numerator.workload,
            self.denominator.metric,
            self.denominator.workload,
            _is_upper(self.op),
        )

    def holds(self, ratio: float) -> bool:
        return OPS[self.op](ratio, self.value)

    def bound_text(self) -> str:
        return f"{self.op} {_fmt_num(self.value)}"

    def text(self) -> str:
        return f"{self.numerator.text()} / {self.denominator.text()} {self.bound_text()}"

    __str__ = text


_OPERAND = r"(?P<{n}>[A-Za-z_][A-Za-z0-9_]*)\s*(?:\[\s*(?P<{n}w>[^\]]*?)\s*\])?"
_OP = r"(?P<op><=|>=|=<|=>|<|>|≤|≥)"
_NUM = r"(?P<value>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
_LIMIT_RE = re.compile(
    rf"^\s*{_OPERAND.format(n='m')}\s*{_OP}\s*{_NUM}\s*(?P<unit>[A-Za-z/]+)?\s*$"
)
_SLA_RE = re.compile(
    rf"^\s*{_OPERAND.format(n='a')}\s*/\s*{_OPERAND.format(n='b')}\s*{_OP}\s*{_NUM}"
    r"\s*(?:x|×)?\s*$"
)


#: metrics that only streamed requests have (pytest_llmperf.model.workloads)
_STREAM_PREFIXES = ("stream_", "engine_")
_STREAM_NAME = re.compile(r"^\s*stream\s*:", re.IGNORECASE)


def _operand(metric: str, workload: str | None, where: str, hint: str) -> Operand:
    if metric not in METRICS:
        raise UsageError(f"{where}: unknown metric {metric!r}; known metrics: {_known_metrics()}")
    if workload is None:
        return Operand(metric)
    if not workload:
        raise UsageError(f"{where}: empty workload in {metric}[]; {hint}")
    try:
        if metric.startswith(_STREAM_PREFIXES) or _STREAM_NAME.match(workload):
            # a streamed request's metric: its workload by name or bare label
            # (stream_itl_p95_ms[long] is stream_itl_p95_ms[stream:long])
            name = stream_name(workload)
        else:
            name = Workload.parse(workload).name
    except UsageError as exc:
        raise UsageError(f"{where}: {metric}[{workload}]: {exc}") from None
    return Operand(metric, name)


def parse_limit(text: Any, where: str = "limits") -> Limit:
    """Parse ``"load_ms < 11000"``, ``"tg_tps[tg64] >= 5"`` (optionally with the unit)."""
    if not isinstance(text, str):
        raise UsageError(f"{where}: {text!r} not understood; {LIMIT_HINT}")
    m = _LIMIT_RE.match(text)
    if not m:
        raise UsageError(f"{where}: {text!r} not understood; {LIMIT_HINT} (operators: < <= > >=)")
    operand = _operand(m.group("m"), m.group("mw"), where, LIMIT_HINT)
    unit = m.group("unit")
    mdef = METRICS[operand.metric]
    if unit and unit.lower() not in _UNIT_ALIASES.get(mdef.unit, {mdef.unit}):
        raise UsageError(
            f"{where}: {text!r}: unit {unit!r} does not fit {operand.metric} "
            f"(measured in {mdef.unit})"
        )
    value = float(m.group("value"))
    if not math.isfinite(value):
        raise UsageError(f"{where}: {text!r}: the bound must be a finite number")
    return Limit(operand, _OP_ALIASES[m.group("op")], value, source=where)


def parse_sla(text: Any, where: str = "sla") -> RatioSLA:
    """Parse ``"itl_p95_ms[tg512] / itl_p95_ms[tg64] <= 1.30"``."""
    if not isinstance(text, str):
        raise UsageError(f"{where}: {text!r} not understood; {SLA_HINT}")
    m = _SLA_RE.match(text)
    if not m:
        raise UsageError(f"{where}: {text!r} not understood; {SLA_HINT}")
    num = _operand(m.group("a"), m.group("aw"), where, SLA_HINT)
    den = _operand(m.group("b"), m.group("bw"), where, SLA_HINT)
    if num == den:
        raise UsageError(
            f"{where}: {text!r} divides a median by itself; name two different "
            f"workloads, {SLA_HINT}"
        )
    value = float(m.group("value"))
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"{where}: {text!r}: the bound must be a number > 0")
    return RatioSLA(num, den, _OP_ALIASES[m.group("op")], value, source=where)


# -- the merged configuration -----------------------------------------------------------

#: the default threshold of each gated metric, from the metric registry
DEFAULT_THRESHOLDS: dict[str, str] = {
    name: spec.threshold for name, spec in METRICS.items() if spec.threshold is not None
}
#: the default paired threshold of each metric a paired verdict gates, from the registry
DEFAULT_PAIRED: dict[str, str] = {
    name: spec.paired for name, spec in METRICS.items() if spec.paired is not None
}


@dataclass(frozen=True)
class GateRules:
    """Everything the gate needs: per-metric thresholds, limits and ratio SLAs.

    Metrics absent from ``thresholds`` (informational ones, or turned off) are compared
    and shown but never fail a test.
    """

    thresholds: Mapping[str, Threshold] = field(default_factory=dict)
    #: per-metric thresholds of paired verdicts (candidate against reference side by side)
    paired: Mapping[str, Threshold] = field(default_factory=dict)
    limits: tuple[Limit, ...] = ()
    slas: tuple[RatioSLA, ...] = ()
    #: the sources merged into this config, earliest first
    sources: tuple[str, ...] = ()

    def threshold(self, metric: str) -> Threshold | None:
        """The active threshold of ``metric``, or None when it is not gated."""
        t = self.thresholds.get(metric)
        return t if t is not None and t.enabled else None

    def is_gated(self, metric: str) -> bool:
        return self.threshold(metric) is not None

    def paired_threshold(self, metric: str) -> Threshold | None:
        """The active paired threshold of ``metric``, or None when a paired verdict shows
        it without gating it."""
        t = self.paired.get(metric)
        return t if t is not None and t.enabled else None

    def describe(self) -> list[str]:
        """One line per rule, for ``--help``-style listings and reports."""
        lines = [f"{m}: {t.text()}" for m, t in sorted(self.thresholds.items()) if t.enabled]
        lines += [f"paired {m}: {t.text()}" for m, t in sorted(self.paired.items()) if t.enabled]
        lines += [f"limit: {lim.text()}" for lim in self.limits]
        lines += [f"sla: {s.text()}" for s in self.slas]
        return lines


def default_rules() -> GateRules:
    return GateRules(
        thresholds={m: parse_threshold(m, v, "defaults") for m, v in DEFAULT_THRESHOLDS.items()},
        paired={m: parse_threshold(m, v, "defaults") for m, v in DEFAULT_PAIRED.items()},
        sources=("defaults",),
    )


def _section(source: str, key: str) -> str:
    """``"x.toml [tool.llmperf]"`` + ``thresholds`` -> ``"x.toml [tool.llmperf.thresholds]"``."""
    if source.endswith("]") and "[" in source:
        return f"{source[:-1]}.{key}]"
    return f"{source} [{key}]"


def _items(value: Any, where: str, hint: str) -> list[tuple[str | None, Any]]:
    """A limits/sla value as (key or None, text) pairs: a string, a list, or a mapping of
    left-hand side -> rest (``{"load_ms": "< 11000"}``, value ``off`` removes)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [(None, line) for line in value.splitlines() if line.strip()]
    if isinstance(value, Mapping):
        return [(str(k), v) for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        return [(None, v) for v in value]
    raise UsageError(f"{where}: expected a list of strings, got {type(value).__name__}; {hint}")


def _is_off(value: Any) -> bool:
    return (
        value is None
        or value is False
        or (isinstance(value, str) and value.strip().lower() in _OFF_WORDS)
    )


def rules_from(sources: Iterable[RuleSource], *, base: GateRules | None = None) -> GateRules:
    """Merge rule sources in tier order (:data:`RULE_TIERS`; within a tier, as given)."""
    ordered = sorted(sources, key=lambda s: RULE_TIERS.index(s.tier))
    return merge_threshold_sources(((s.name, s.data) for s in ordered), base=base)


def merge_threshold_sources(
    sources: Iterable[tuple[str, Mapping[str, Any] | None]] = (),
    *,
    base: GateRules | None = None,
) -> GateRules:
    """Merge threshold sources, earliest first, over ``base`` (default: the built-in defaults).

    Each source is ``(name, mapping)``, the name used in error messages (a file,
    ``"pyproject.toml [tool.llmperf]"``, ``"marker on test X"``). A mapping looks like::

        {"thresholds": {"tg_tps": "-10%", "vram_mb": "off"},
         "limits": ["load_ms < 11000", "tg_tps[tg64] >= 5"],
         "sla": ["itl_p95_ms[tg512] / itl_p95_ms[tg64] <= 1.30"]}

    Metric thresholds may also sit at the top level (``{"tg_tps": "-5%"}``). Limits and
    SLAs may be given as a list, one string (one rule a line) or a mapping of left-hand
    side to the rest (``{"load_ms": "< 11000"}``; ``"off"`` removes that left-hand side's
    rules). Later sources override earlier ones rule by rule (see the module docstring).
    """
    cfg = base if base is not None else default_rules()
    thresholds = dict(cfg.thresholds)
    paired = dict(cfg.paired)
    limits: dict[tuple[str, str | None, bool], Limit] = {lim.key: lim for lim in cfg.limits}
    slas: dict[tuple[str, str | None, str, str | None, bool], RatioSLA] = {
        s.key: s for s in cfg.slas
    }
    names = list(cfg.sources)
    for name, mapping in sources:
        if not mapping:
            continue
        if not isinstance(mapping, Mapping):
            raise UsageError(
                f"{name}: thresholds must be a mapping with keys thresholds, "
                f"limits, sla; got {type(mapping).__name__}"
            )
        names.append(name)
        table: dict[str, Any] = {}
        nested = mapping.get("thresholds")
        if nested is not None:
            if not isinstance(nested, Mapping):
                raise UsageError(
                    f"{_section(name, 'thresholds')}: must be a mapping of metric "
                    f"-> threshold, e.g. {{tg_tps: '-10%'}}"
                )
            table.update({str(k): v for k, v in nested.items()})
        if "sla" in mapping and "slas" in mapping:
            raise UsageError(f"{name}: both sla and slas are given; write the SLAs under one")
        for key, value in mapping.items():
            if key in ("thresholds", "paired", "limits", "sla", "slas"):
                continue
            if key not in METRICS:
                raise UsageError(
                    f"{name}: unknown key {key!r}; accepted: thresholds, paired, limits, sla, "
                    f"or a metric name ({_known_metrics()})"
                )
            if str(key) in table:
                raise UsageError(
                    f"{name}: the threshold of {key} is given twice (under thresholds and "
                    "at the top level); which one is meant is ambiguous: keep one"
                )
            table[str(key)] = value
        where_t = _section(name, "thresholds")
        for metric, value in table.items():
            if metric not in METRICS:
                raise UsageError(
                    f"{where_t}: unknown metric {metric!r}; known metrics: {_known_metrics()}"
                )
            thresholds[metric] = parse_threshold(metric, value, f"{where_t} {metric}")
        where_p = _section(name, "paired")
        side_by_side = mapping.get("paired")
        if side_by_side is not None:
            if not isinstance(side_by_side, Mapping):
                raise UsageError(
                    f"{where_p}: must be a mapping of metric -> threshold of paired verdicts, "
                    "e.g. {tg_tps: '-3%'}"
                )
            for metric, value in side_by_side.items():
                if str(metric) not in METRICS:
                    raise UsageError(
                        f"{where_p}: unknown metric {metric!r}; known metrics: {_known_metrics()}"
                    )
                paired[str(metric)] = parse_threshold(str(metric), value, f"{where_p} {metric}")
        where_l = _section(name, "limits")
        mine: dict[Any, str] = {}  # a rule's key -> its text, in this source
        for lhs, item in _items(mapping.get("limits"), where_l, LIMIT_HINT):
            if lhs is not None and _is_off(item):
                op = _operand(*_split_operand(lhs, where_l), where_l, LIMIT_HINT)
                limits = {k: v for k, v in limits.items() if v.operand != op}
                continue
            lim = parse_limit(_join(lhs, item, where_l, LIMIT_HINT), where_l)
            _once(mine, lim.key, lim.text(), where_l)
            limits[lim.key] = lim
        sla_value = mapping.get("sla", mapping.get("slas"))
        where_s = _section(name, "sla")
        for lhs, item in _items(sla_value, where_s, SLA_HINT):
            if lhs is not None and _is_off(item):
                sla_off = parse_sla(f"{lhs} <= 1", where_s)
                slas = {
                    k: v
                    for k, v in slas.items()
                    if (v.numerator, v.denominator) != (sla_off.numerator, sla_off.denominator)
                }
                continue
            sla = parse_sla(_join(lhs, item, where_s, SLA_HINT), where_s)
            _once(mine, sla.key, sla.text(), where_s)
            slas[sla.key] = sla
    return GateRules(
        thresholds=thresholds,
        paired=paired,
        limits=tuple(limits.values()),
        slas=tuple(slas.values()),
        sources=tuple(names),
    )


def _once(seen: dict[Any, str], key: Any, text: str, where: str) -> None:
    """Refuse a second rule of one source on the same operand(s) and side: which bound is
    meant would be ambiguous (a later source overrides; one source says it once)."""
    if key in seen:
        raise UsageError(
            f"{where}: {text!r} and {seen[key]!r} bound the same thing twice; which one is "
            "meant is ambiguous: keep one"
        )
    seen[key] = text


def _join(lhs: str | None, item: Any, where: str, hint: str) -> Any:
    """A rule from a mapping entry (``"load_ms": "< 11000"``) or a list item."""
    if lhs is None:
        return item
    if not isinstance(item, str):
        raise UsageError(f"{where}: {lhs}: {item!r} not understood; {hint}")
    return f"{lhs} {item}"


def _split_operand(text: str, where: str) -> tuple[str, str | None]:
    m = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\[\s*([^\]]*?)\s*\])?\s*$", text)
    if not m:
        raise UsageError(f"{where}: {text!r} is not a metric or metric[workload]; {LIMIT_HINT}")
    return m.group(1), m.group(2)


__all__ = [
    "DEFAULT_THRESHOLDS",
    "GateRules",
    "Limit",
    "Operand",
    "RatioSLA",
    "Threshold",
    "default_rules",
    "merge_threshold_sources",
    "parse_limit",
    "parse_sla",
    "parse_threshold",
    "rules_from",
]
