"""Parameter sweeps: grids over load params, sparse sampling, two phases, result streams.

Pure: no pytest import, no llama.cpp import. A :class:`Sweep` (from YAML with
:func:`load_sweeps`, or from Python with :meth:`Sweep.define`) expands into a list of
:class:`SweepPoint` (``Sweep.points(strategy=...)``); each point has a stable, pytest-safe
id, the merged :class:`~pytest_llmperf.params.LoadParams`, the model id and the workloads.

Around that: :func:`rank` and :func:`deepen` for the two-phase flow (explore, then sweep
more knobs around the winners), :class:`ProgressLine` for one-line progress output,
crash-safe JSONL result streams (:func:`append_result`, :func:`read_results`),
resume (:func:`completed_ids`), sharding (:func:`shard`) and :func:`merge` of shard results,
and :func:`plan_summary`. The user documentation is docs/SWEEPS.md.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import inspect
import itertools
import json
import math
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from pytest_llmperf.errors import UsageError
from pytest_llmperf.metrics import METRICS, Better
from pytest_llmperf.params import (
    KNOBS,
    KV_CACHE_TYPES,
    LoadParams,
    Workload,
    parse_llama_args,
)

__all__ = [
    "RESULT_KEY_FIELD",
    "STRATEGIES",
    "Axis",
    "DeepSpec",
    "MergeResult",
    "PointList",
    "ProgressLine",
    "Ranked",
    "Sampling",
    "Sweep",
    "SweepPoint",
    "SweepWarning",
    "Variant",
    "append_result",
    "axis_indices",
    "completed_ids",
    "deepen",
    "fmt_duration",
    "lhs_default_size",
    "load_sweep",
    "load_sweeps",
    "merge",
    "merge_report",
    "parse_int_range",
    "parse_shard",
    "plan_summary",
    "rank",
    "read_ranking",
    "read_results",
    "sample_indices",
    "shard",
    "write_ranking",
]

PathLike = str | os.PathLike[str]

#: the field of a result record that holds its fingerprint key (see :func:`completed_ids`)
RESULT_KEY_FIELD = "fingerprint_key"

Strategy = Literal["full", "stratified", "boundary", "balanced", "custom_sparse", "lhs"]

#: the sampling strategies, each with its rule (shown by :func:`plan_summary`)
STRATEGIES: dict[str, str] = {
    "full": "every combination",
    "stratified": "min, middle, max of each axis (indices 0, (n-1)//2, n-1)",
    "boundary": (
        "min, 1/4, middle, 3/4, max of the widest axis (indices 0, (n-1)//4, (n-1)//2, "
        "3(n-1)//4, n-1), min/middle/max of the others"
    ),
    "balanced": (
        "m = ceil(n/2) values of each axis (at least 3, at most 5) spread evenly "
        "(index i*(n-1)//(m-1)), plus the declared default unless a chosen value is "
        "next to it"
    ),
    "custom_sparse": "every k-th value from the first, then the last (a gap before it is >= k)",
    "lhs": "Latin hypercube sample (scipy.stats.qmc) of the axis indices, seeded",
}

_STRATEGY_ALIASES: dict[str, Strategy] = {
    "full": "full",
    "grid": "full",
    "stratified": "stratified",
    "boundary": "boundary",
    "balanced": "balanced",
    "custom_sparse": "custom_sparse",
    "sparse": "custom_sparse",
    "lhs": "lhs",
    "latin_hypercube": "lhs",
}

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_AXIS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_MAX_RANGE_VALUES = 100_000


class SweepWarning(UserWarning):
    """Something in a results or ranking file was skipped (e.g. a line cut by a crash)."""


# -- error context -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ctx:
    """Where a value comes from: builds UsageErrors that name the file and the key."""

    source: str
    path: str = ""

    def key(self, key: str | int) -> _Ctx:
        if isinstance(key, int):
            return _Ctx(self.source, f"{self.path}[{key}]")
        return _Ctx(self.source, f"{self.path}.{key}" if self.path else key)

    def error(self, problem: str) -> UsageError:
        where = f"{self.source}: {self.path}" if self.path else self.source
        return UsageError(f"{where}: {problem}")


def _check_keys(data: Mapping[Any, Any], allowed: Sequence[str], ctx: _Ctx, what: str) -> None:
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ctx.key(str(key)).error(
                f"unknown key in {what}{hint}; allowed keys: {', '.join(allowed)}"
            )


def _int_value(raw: Any, ctx: _Ctx, minimum: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ctx.error(f"{raw!r} is not an integer; write an integer >= {minimum}")
    if raw < minimum:
        raise ctx.error(f"{raw} must be >= {minimum}")
    return raw


# -- ranges --------------------------------------------------------------------------------

_RANGE_PART = re.compile(r"^(-?\d+)(?:-(\d+)(?:([*+])(\d+))?)?$")
_RANGE_HELP = (
    "write an integer, a llama-bench range ('1-16*2' multiplies, '0-99+10' adds, "
    "'8-16' steps by 1) or a comma list ('1,2,4')"
)


def _int_range(text: str) -> list[int]:
    """Values of a llama-bench integer range; ValueError carries the problem."""
    out: list[int] = []
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise ValueError(f"{text!r} is not an integer or a range; {_RANGE_HELP}")
    for part in parts:
        m = _RANGE_PART.match(part.replace(" ", ""))
        if not m:
            raise ValueError(f"{part!r} is not an integer or a range; {_RANGE_HELP}")
        first = int(m.group(1))
        if m.group(2) is None:
            out.append(first)
            continue
        last = int(m.group(2))
        op, step = m.group(3) or "+", int(m.group(4) or 1)
        if last < first:
            raise ValueError(f"range {part!r}: the end {last} is below the start {first}")
        if op == "+" and step < 1:
            raise ValueError(f"range {part!r}: the step must be >= 1")
        if op == "*" and (step < 2 or first < 1):
            raise ValueError(f"range {part!r}: multiply needs a start >= 1 and a factor >= 2")
        value = first
        while value <= last:
            out.append(value)
            if len(out) > _MAX_RANGE_VALUES:
                raise ValueError(f"range {part!r} has more than {_MAX_RANGE_VALUES} values")
            value = value * step if op == "*" else value + step
    return out


def parse_int_range(text: str) -> list[int]:
    """Integers of a llama-bench style range.

    ``"1-16*2"`` -> 1, 2, 4, 8, 16; ``"0-99+10"`` -> 0, 10, ..., 90; ``"8-16"`` -> 8..16;
    ``"1,2,4"`` and mixtures (``"1-4,8,16-64*2"``).
    """
    try:
        return _int_range(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


# -- axes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One value of an axis: a name (a fragment of point ids) and what it changes.

    Named variants carry llama.cpp ``args``; plain values of a load-parameter axis carry
    ``value``. ``overrides`` are the LoadParams fields set, in order (computed from
    ``args`` when not given).
    """

    name: str
    args: str = ""
    overrides: tuple[tuple[str, Any], ...] = ()
    value: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _SAFE_NAME.match(self.name):
            raise UsageError(
                f"variant name {self.name!r}: use letters, digits and _ . + - only (no spaces, "
                "brackets or '::'), starting with a letter or digit"
            )
        if self.args and not self.overrides:
            object.__setattr__(self, "overrides", tuple(parse_llama_args(self.args).items()))


@dataclass(frozen=True)
class Axis:
    """One dimension of a sweep: its variants in order, the load-parameter field it sets
    (``None`` for named-variant axes) and the index of its declared default."""

    name: str
    variants: tuple[Variant, ...]
    field: str | None = None
    default: int | None = None

    def __len__(self) -> int:
        return len(self.variants)

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.variants]

    @classmethod
    def parse(cls, name: str, raw: Any, *, source: str = "<python>") -> Axis:
        """An axis from its YAML/Python form (see docs/SWEEPS.md)."""
        return _parse_axis(name, raw, _Ctx(source, name))


def _field_kinds() -> dict[str, str]:
    kinds: dict[str, str] = {}
    for f in dataclasses.fields(LoadParams):
        ann = str(f.type)
        if f.name == "flash_attn":
            kinds[f.name] = "fa"
        elif f.name in ("type_k", "type_v"):
            kinds[f.name] = "kv"
        elif "bool" in ann:
            kinds[f.name] = "bool"
        elif "int" in ann:
            kinds[f.name] = "int"
        else:
            kinds[f.name] = "str"
    return kinds


_FIELD_KINDS = _field_kinds()
_PREFIX: dict[str, str] = {name: k.prefix for name, k in KNOBS.items()}
_INT_MINIMUM: dict[str, int] = {"n_ctx": 8, "n_cpu_moe": 0, "n_gpu_layers": -1}
_FA_VALUES: dict[str, str] = {
    "auto": "auto", "-1": "auto", "on": "on", "1": "on", "true": "on",
    "off": "off", "0": "off", "false": "off",
}  # fmt: skip
_BOOL_VALUES: dict[str, bool] = {
    "true": True, "on": True, "1": True, "yes": True,
    "false": False, "off": False, "0": False, "no": False,
}  # fmt: skip


def _value_name(field_name: str, value: Any) -> str:
    prefix = _PREFIX.get(field_name, re.sub(r"[^A-Za-z0-9]", "", field_name))
    if isinstance(value, bool):
        return prefix if value else f"no{prefix}"
    if field_name == "n_gpu_layers" and value == -1:
        return f"{prefix}all"
    return f"{prefix}{value}"


def _plain_values(field_name: str, raw: Any, ctx: _Ctx) -> list[Any]:
    """The values of a load-parameter axis item (a range string may give several)."""
    kind = _FIELD_KINDS[field_name]
    if isinstance(raw, Mapping | Variant):
        raise ctx.error(
            f"{field_name} is a load parameter: list plain values (e.g. [1, 2, 4] or "
            f"'1-16*2'); for named variants with args use another axis name"
        )
    if kind == "int":
        if field_name == "n_gpu_layers" and isinstance(raw, str) and raw.strip() == "all":
            return [-1]
        if isinstance(raw, str):
            try:
                values = _int_range(raw)
            except ValueError as exc:
                raise ctx.error(str(exc)) from None
        elif isinstance(raw, int) and not isinstance(raw, bool):
            values = [raw]
        else:
            raise ctx.error(f"{raw!r} is not an integer; {_RANGE_HELP}")
        minimum = _INT_MINIMUM.get(field_name, 1)
        for v in values:
            if v < minimum:
                raise ctx.error(f"{v} is below the minimum {minimum} of {field_name}")
        return values
    if kind == "bool":
        if isinstance(raw, bool):
            return [raw]
        if isinstance(raw, str | int) and str(raw).strip().lower() in _BOOL_VALUES:
            return [_BOOL_VALUES[str(raw).strip().lower()]]
        raise ctx.error(f"{raw!r} is not a boolean; write true or false")
    if kind == "fa":
        text = ("on" if raw else "off") if isinstance(raw, bool) else str(raw).strip().lower()
        if text not in _FA_VALUES:
            raise ctx.error(f"{raw!r} is not a flash attention mode; write on, off or auto")
        return [_FA_VALUES[text]]
    if kind == "kv":
        text = str(raw).strip().lower() if isinstance(raw, str) else ""
        if text not in KV_CACHE_TYPES:
            raise ctx.error(
                f"{raw!r} is not a KV cache type; accepted: {', '.join(KV_CACHE_TYPES)}"
            )
        return [text]
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise ctx.error(f"{raw!r}: write a plain string value")
    return [raw]


def _sort_key(field_name: str, value: Any) -> float:
    if field_name == "n_gpu_layers" and value == -1:
        return math.inf  # "all layers" is the largest offload
    return float(value)


def _parse_variant(raw: Any, ctx: _Ctx, axis_name: str) -> Variant:
    if isinstance(raw, Variant):
        return raw
    if not isinstance(raw, Mapping):
        raise ctx.error(
            f"{raw!r} is a plain value, but {axis_name!r} is not a load parameter; write "
            f"named variants ({{name: ..., args: '-ctk q8_0'}}) or use a load-parameter axis "
            f"({', '.join(sorted(_FIELD_KINDS))})"
        )
    _check_keys(raw, ("name", "args"), ctx, "a variant")
    name = raw.get("name")
    if not isinstance(name, str | int) or isinstance(name, bool) or not str(name):
        raise ctx.key("name").error("each variant needs a name (a string used in test ids)")
    name = str(name)
    if not _SAFE_NAME.match(name):
        raise ctx.key("name").error(
            f"{name!r}: use letters, digits and _ . + - only (no spaces, brackets or '::'), "
            "starting with a letter or digit"
        )
    args_raw = raw.get("args", "")
    if args_raw is None:
        args_raw = ""
    if isinstance(args_raw, list) and all(isinstance(a, str) for a in args_raw):
        args = " ".join(args_raw)
    elif isinstance(args_raw, str):
        args = args_raw
    else:
        raise ctx.key("args").error(
            f"{args_raw!r}: write llama.cpp arguments as a string, e.g. '-ctk q8_0 -ctv f16'"
        )
    try:
        overrides = tuple(parse_llama_args(args).items()) if args.strip() else ()
    except UsageError as exc:
        raise ctx.key("args").error(str(exc)) from None
    return Variant(name=name, args=args.strip(), overrides=overrides)


def _parse_axis(name: str, raw: Any, ctx: _Ctx) -> Axis:
    if isinstance(raw, Axis):
        return raw
    if not isinstance(name, str) or not _AXIS_NAME.match(name):
        raise ctx.error(f"axis name {name!r}: use letters, digits and _ . - only")
    default_raw: Any = None
    has_default = False
    if isinstance(raw, Mapping) and not ({"name", "args"} & set(raw)):
        _check_keys(raw, ("values", "default"), ctx, "an axis")
        if "values" not in raw:
            raise ctx.error("an axis written as a mapping needs 'values' (and may have 'default')")
        has_default = "default" in raw
        default_raw = raw.get("default")
        values_ctx = ctx.key("values")
        raw = raw["values"]
    else:
        values_ctx = ctx
    items: list[tuple[Any, _Ctx]]
    if isinstance(raw, list | tuple):
        items = [(item, values_ctx.key(i)) for i, item in enumerate(raw)]
    else:
        items = [(raw, values_ctx)]
    if not items:
        raise values_ctx.error("an axis needs at least one value")

    default: int | None = None
    if name in _FIELD_KINDS:
        values: list[Any] = []
        for item, item_ctx in items:
            for value in _plain_values(name, item, item_ctx):
                if value in values:
                    raise item_ctx.error(f"value {value!r} appears twice in {name}; remove one")
                values.append(value)
        if _FIELD_KINDS[name] == "int":
            values.sort(key=lambda v: _sort_key(name, v))
        variants = tuple(
            Variant(_value_name(name, v), overrides=((name, v),), value=v) for v in values
        )
        if has_default:
            dctx = ctx.key("default")
            dvals = _plain_values(name, default_raw, dctx)
            if len(dvals) != 1:
                raise dctx.error("the default is one value, not a range")
            dval = dvals[0]
            if dval in values:
                default = values.index(dval)
            elif _FIELD_KINDS[name] == "int":
                # nearest value on the axis (the first of two equally near)
                default = min(
                    range(len(values)),
                    key=lambda i: abs(_sort_key(name, values[i]) - _sort_key(name, dval)),
                )
            else:
                raise dctx.error(f"{dval!r} is not one of the values of {name}: {values}")
        return Axis(name=name, variants=variants, field=name, default=default)

    if all(not isinstance(item, Mapping | Variant) for item, _ in items):
        close = difflib.get_close_matches(name, list(_FIELD_KINDS), n=1)
        hint = f" (did you mean the load parameter {close[0]!r}?)" if close else ""
        raise values_ctx.error(
            f"{name!r} is not a load parameter{hint}, so it takes named variants: "
            "[{name: ..., args: '...'}]; plain values need a load-parameter axis "
            f"({', '.join(sorted(_FIELD_KINDS))})"
        )
    named: list[Variant] = []
    for item, item_ctx in items:
        variant = _parse_variant(item, item_ctx, name)
        if variant.name in [v.name for v in named]:
            raise item_ctx.key("name").error(
                f"variant name {variant.name!r} appears twice in {name}; names must be unique"
            )
        named.append(variant)
    if has_default:
        names = [v.name for v in named]
        if str(default_raw) not in names:
            raise ctx.key("default").error(
                f"{default_raw!r} is not a variant of {name}; write one of {', '.join(names)}"
            )
        default = names.index(str(default_raw))
    return Axis(name=name, variants=tuple(named), field=None, default=default)


def _parse_axes(raw: Any, ctx: _Ctx) -> tuple[Axis, ...]:
    if raw is None:
        return ()
    if (
        isinstance(raw, Sequence)
        and not isinstance(raw, str)
        and all(isinstance(a, Axis) for a in raw)
    ):
        return tuple(raw)
    if not isinstance(raw, Mapping):
        raise ctx.error(
            "write the axes as a mapping: {n_threads: [1, 2, 4], kv_cache: [{name: ..., "
            "args: ...}]}"
        )
    return tuple(_parse_axis(str(name), value, ctx.key(str(name))) for name, value in raw.items())


# -- sampling ------------------------------------------------------------------------------


def _canonical_strategy(text: Any, ctx: _Ctx) -> Strategy:
    key = str(text).strip().lower().replace("-", "_")
    if key not in _STRATEGY_ALIASES:
        raise ctx.error(f"unknown sampling strategy {text!r}; accepted: {', '.join(STRATEGIES)}")
    return _STRATEGY_ALIASES[key]


@dataclass(frozen=True)
class Sampling:
    """How to pick points from the grid: ``strategy``, and ``size``/``seed`` (lhs) or ``k``
    (custom_sparse). ``size`` of ``None`` means max(largest axis, a quarter of the grid)."""

    strategy: Strategy = "full"
    size: int | None = None
    seed: int = 42
    k: int = 2

    def __post_init__(self) -> None:
        ctx = _Ctx("sampling")
        object.__setattr__(self, "strategy", _canonical_strategy(self.strategy, ctx))
        if self.size is not None:
            _int_value(self.size, ctx.key("size"), 1)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ctx.key("seed").error(f"{self.seed!r} is not an integer >= 0")
        _int_value(self.k, ctx.key("k"), 1)

    @classmethod
    def parse(cls, raw: Any, *, source: str = "<python>") -> Sampling:
        return _parse_sampling(raw, _Ctx(source, "sampling"))

    def describe(self) -> str:
        text = f"{self.strategy}: {STRATEGIES[self.strategy]}"
        if self.strategy == "custom_sparse":
            text += f" (k={self.k})"
        elif self.strategy == "lhs":
            text += f" (size={self.size or 'auto'}, seed={self.seed})"
        return text


def _parse_sampling(raw: Any, ctx: _Ctx) -> Sampling:
    if raw is None:
        return Sampling()
    if isinstance(raw, Sampling):
        return raw
    if isinstance(raw, str):
        return Sampling(_canonical_strategy(raw, ctx))
    if not isinstance(raw, Mapping):
        raise ctx.error("write a strategy name or {strategy: lhs, size: 60, seed: 42}")
    _check_keys(raw, ("strategy", "size", "seed", "k"), ctx, "sampling")
    strategy = _canonical_strategy(raw.get("strategy", "full"), ctx.key("strategy"))
    size = raw.get("size")
    if size is not None:
        size = _int_value(size, ctx.key("size"), 1)
    seed = _int_value(raw.get("seed", 42), ctx.key("seed"), 0)
    k = _int_value(raw.get("k", 2), ctx.key("k"), 1)
    return Sampling(strategy, size, seed, k)


def axis_indices(
    strategy: str, n: int, *, default: int | None = None, k: int = 2, widest: bool = False
) -> list[int]:
    """The indices one axis of ``n`` values keeps under a per-axis ``strategy``.

    For the seed example (6, 8 and 5 values): stratified keeps 3/3/3, boundary 3/5/3
    (top_k is the widest), balanced and custom_sparse (k=2) 3/4/3.
    """
    if n < 1:
        raise UsageError("an axis needs at least one value")
    last = n - 1
    name = _canonical_strategy(strategy, _Ctx("sampling"))
    chosen: set[int]
    if name == "full":
        chosen = set(range(n))
    elif name == "stratified" or (name == "boundary" and not widest):
        chosen = {0, last // 2, last}
    elif name == "boundary":
        chosen = {0, last // 4, last // 2, (3 * last) // 4, last}
    elif name == "balanced":
        m = min(n, max(3, min(5, math.ceil(n / 2))))
        chosen = {0} if m == 1 else {i * last // (m - 1) for i in range(m)}
        if default is not None and not any(abs(default - c) <= 1 for c in chosen):
            chosen.add(default)
    elif name == "custom_sparse":
        chosen = {0, last} | set(range(0, last - k + 1, k))
    else:
        raise UsageError("lhs samples combinations, not single axes: use sample_indices()")
    return sorted(chosen)


def _lhs_sampler(d: int, seed: int) -> Any:
    import numpy as np
    from scipy.stats import qmc

    rng = np.random.default_rng(seed)
    params = inspect.signature(qmc.LatinHypercube).parameters
    if "rng" in params:  # scipy >= 1.15
        return qmc.LatinHypercube(d=d, rng=rng)
    return qmc.LatinHypercube(d=d, seed=rng)  # pragma: no cover - older scipy


def _lhs_batch(sampler: Any, lengths: Sequence[int], size: int) -> list[tuple[int, ...]]:
    """One LHS batch mapped to axis indices by stratum: the sample in stratum j (of
    ``size``) gets index j*n//size, so with size >= n every index of the axis appears."""
    import numpy as np

    unit = sampler.random(size)
    cols: list[list[int]] = []
    for j, n in enumerate(lengths):
        order = np.argsort(unit[:, j], kind="stable")
        stratum = np.empty(size, dtype=np.int64)
        stratum[order] = np.arange(size)
        cols.append([int(s) * n // size for s in stratum])
    return [tuple(col[r] for col in cols) for r in range(size)]


def _lhs_combinations(lengths: Sequence[int], size: int, seed: int) -> list[tuple[int, ...]]:
    grid = math.prod(lengths)
    if not lengths:
        return [()]
    size = min(size, grid)
    if size == grid:
        return list(itertools.product(*(range(n) for n in lengths)))
    sampler = _lhs_sampler(len(lengths), seed)
    seen: dict[tuple[int, ...], None] = dict.fromkeys(_lhs_batch(sampler, lengths, size))
    # duplicates: fill up to the requested size from further batches of the same sampler
    for _ in range(50):
        if len(seen) >= size:
            break
        for combo in _lhs_batch(sampler, lengths, size):
            if len(seen) >= size:
                break
            seen.setdefault(combo, None)
    if len(seen) < size:  # pragma: no cover - nearly exhausted small grids
        import numpy as np

        for flat in np.random.default_rng(seed).permutation(grid):
            combo = tuple(int(x) for x in np.unravel_index(int(flat), tuple(lengths)))
            seen.setdefault(combo, None)
            if len(seen) >= size:
                break
    return sorted(seen)


def lhs_default_size(lengths: Sequence[int]) -> int:
    """max(largest axis, a quarter of the grid, rounded up), at most the grid."""
    grid = math.prod(lengths)
    return min(grid, max(max(lengths, default=1), math.ceil(grid / 4)))


def sample_indices(
    lengths: Sequence[int],
    sampling: Sampling | str = "full",
    *,
    defaults: Sequence[int | None] | None = None,
) -> list[tuple[int, ...]]:
    """The combinations (one index per axis) a strategy keeps, in grid order."""
    s = (
        sampling
        if isinstance(sampling, Sampling)
        else Sampling(_canonical_strategy(sampling, _Ctx("sampling")))
    )
    if s.strategy == "lhs":
        return _lhs_combinations(lengths, s.size or lhs_default_size(lengths), s.seed)
    widest = max(range(len(lengths)), key=lambda i: lengths[i]) if lengths else -1
    dflt = list(defaults) if defaults is not None else [None] * len(lengths)
    per_axis = [
        axis_indices(s.strategy, n, default=dflt[i], k=s.k, widest=i == widest)
        for i, n in enumerate(lengths)
    ]
    return list(itertools.product(*per_axis))


# -- points --------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_") or "model"


@dataclass(frozen=True)
class SweepPoint:
    """One configuration to measure: a model, merged load params and the workloads."""

    id: str
    model: str
    params: LoadParams
    workloads: tuple[Workload, ...]
    repetitions: int
    #: (axis name, variant name) pairs in axis order
    variants: tuple[tuple[str, str], ...] = ()
    sweep: str = ""
    #: the id of the exploration point a deep point was built around
    parent: str | None = None
    phase: Literal["explore", "deep"] = "explore"

    @property
    def axes(self) -> dict[str, str]:
        """Axis name -> variant name (for plain-value axes: the id fragment, e.g. ``t2``)."""
        return dict(self.variants)

    def config_key(self) -> str:
        """A short hash of what this sweep decides about the point: model, load params,
        workloads, repetitions. Combine with the environment fingerprint via
        :meth:`fingerprint_key`."""
        return self.fingerprint_key()

    def fingerprint_key(self, extra: Mapping[str, Any] | None = None) -> str:
        """A stable hash of the point's configuration and ``extra`` (e.g. the machine,
        software and model-file fingerprint): equal keys mean comparable measurements."""
        data = {
            "model": self.model,
            "params": self.params.to_dict(),
            "workloads": [w.name for w in self.workloads],
            "repetitions": self.repetitions,
            "extra": extra or {},
        }
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sweep": self.sweep,
            "phase": self.phase,
            "parent": self.parent,
            "model": self.model,
            "variants": dict(self.variants),
            "params": self.params.to_dict(),
            "args": self.params.to_args(),
            "workloads": [w.name for w in self.workloads],
            "repetitions": self.repetitions,
        }


class PointList(list[SweepPoint]):
    """The points of a sweep (a plain list) plus how they were chosen: the sampling,
    the full grid size and the invalid combinations dropped by ``skip_invalid``."""

    def __init__(
        self,
        points: Iterable[SweepPoint] = (),
        *,
        sweep: str = "",
        sampling: Sampling | None = None,
        grid_size: int | None = None,
        skipped: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(points)
        self.sweep = sweep
        self.sampling = sampling or Sampling()
        self.grid_size = grid_size
        #: (point id, reason) of each invalid combination dropped
        self.skipped: tuple[tuple[str, str], ...] = tuple(skipped)

    def ids(self) -> list[str]:
        return [p.id for p in self]


@dataclass(frozen=True)
class _Root:
    """What a set of axis combinations is applied to: a model (explore) or a parent point."""

    prefix: str
    model: str
    params: LoadParams
    variants: tuple[tuple[str, str], ...] = ()
    parent: str | None = None


def _point_id(root: _Root, axes: Sequence[Axis], combo: Sequence[int], deep: bool) -> str:
    names = [axis.variants[i].name for axis, i in zip(axes, combo, strict=True)]
    if deep and not names:
        names = ["deep"]
    return "-".join([p for p in (root.prefix, *names) if p]) or "default"


def _build(
    sweep: Sweep,
    roots: Sequence[_Root],
    axes: Sequence[Axis],
    combos: Sequence[tuple[int, ...]],
    *,
    repetitions: int,
    workloads: tuple[Workload, ...],
    sampling: Sampling,
    grid_size: int,
    deep: bool,
) -> PointList:
    points: list[SweepPoint] = []
    invalid: list[tuple[str, str]] = []
    seen: dict[str, tuple[str, ...]] = {}
    for root in roots:
        base = root.params.to_dict()
        for combo in combos:
            pid = _point_id(root, axes, combo, deep)
            chosen = [axis.variants[i] for axis, i in zip(axes, combo, strict=True)]
            label = tuple(f"{a.name}={v.name}" for a, v in zip(axes, chosen, strict=True))
            if pid in seen:
                raise UsageError(
                    f"{sweep.source}: sweep {sweep.name!r}: two points get the id {pid!r} "
                    f"({', '.join(seen[pid]) or 'model'} and {', '.join(label) or 'model'}); "
                    "rename the variants so their names differ (avoid '-' in variant names "
                    "that could join into another variant's name)"
                )
            seen[pid] = (f"model={root.model}", *label)
            values = dict(base)
            for variant in chosen:
                values.update(dict(variant.overrides))
            try:
                params = LoadParams.from_dict(values, source=pid)
            except UsageError as exc:
                invalid.append((pid, str(exc)))
                continue
            points.append(
                SweepPoint(
                    id=pid,
                    model=root.model,
                    params=params,
                    workloads=workloads,
                    repetitions=repetitions,
                    variants=root.variants
                    + tuple((a.name, v.name) for a, v in zip(axes, chosen, strict=True)),
                    sweep=sweep.name,
                    parent=root.parent,
                    phase="deep" if deep else "explore",
                )
            )
    if invalid and not sweep.skip_invalid:
        shown = "; ".join(f"{pid}: {why}" for pid, why in invalid[:5])
        more = f"; and {len(invalid) - 5} more" if len(invalid) > 5 else ""
        total = len(invalid) + len(points)
        raise UsageError(
            f"{sweep.source}: sweep {sweep.name!r}: {len(invalid)} of {total} points have "
            f"invalid load params: {shown}{more}. Fix the axes or base, or set "
            "'skip_invalid: true' to drop invalid combinations"
        )
    return PointList(
        points, sweep=sweep.name, sampling=sampling, grid_size=grid_size, skipped=invalid
    )


# -- sweep ---------------------------------------------------------------------------------

_DEFAULT_WORKLOADS: tuple[Workload, ...] = (Workload.parse("pp512"), Workload.parse("tg128"))
_SWEEP_KEYS: tuple[str, ...] = (
    "description", "models", "workloads", "repetitions", "base", "axes", "skip_invalid",
    "sampling", "deep",
)  # fmt: skip
_DEEP_KEYS: tuple[str, ...] = (
    "axes", "top_k", "repetitions", "metric", "better", "workload", "workloads", "sampling",
)  # fmt: skip


@dataclass(frozen=True)
class DeepSpec:
    """The deep phase of a sweep: how many winners, ranked by which metric, and which
    axes to sweep around each (with more repetitions)."""

    axes: tuple[Axis, ...] = ()
    top_k: int = 3
    #: None: twice the exploration's repetitions
    repetitions: int | None = None
    metric: str = "tg_tps"
    better: Better | None = None
    #: rank on this workload's rows only (e.g. "tg128"); None: any row with the metric
    workload: str | None = None
    #: None: the exploration's workloads
    workloads: tuple[Workload, ...] | None = None
    sampling: Sampling = field(default_factory=Sampling)


def _parse_workloads(raw: Any, ctx: _Ctx) -> tuple[Workload, ...]:
    items = raw if isinstance(raw, list | tuple) else [raw]
    if not items:
        raise ctx.error("list at least one workload, e.g. [pp512, tg128]")
    out: list[Workload] = []
    for i, item in enumerate(items):
        ictx = ctx.key(i) if isinstance(raw, list | tuple) else ctx
        if not isinstance(item, str | Workload):
            raise ictx.error(
                f"{item!r}: write a workload such as 'pp512', 'tg128', 'pg512,128' or 'tg128@d4096'"
            )
        try:
            wl = Workload.parse(item)
        except UsageError as exc:
            raise ictx.error(str(exc)) from None
        if wl in out:
            raise ictx.error(f"workload {wl.name} appears twice; remove one")
        out.append(wl)
    return tuple(out)


def _parse_better(raw: Any, ctx: _Ctx) -> Better | None:
    if raw is None:
        return None
    if raw == "higher":
        return "higher"
    if raw == "lower":
        return "lower"
    raise ctx.error(f"{raw!r}: write 'higher' or 'lower'")


def _parse_deep(raw: Any, ctx: _Ctx) -> DeepSpec | None:
    if raw is None:
        return None
    if isinstance(raw, DeepSpec):
        return raw
    if not isinstance(raw, Mapping):
        raise ctx.error("write the deep phase as a mapping: {top_k: 3, axes: {...}}")
    _check_keys(raw, _DEEP_KEYS, ctx, "deep")
    metric = raw.get("metric", "tg_tps")
    if not isinstance(metric, str):
        raise ctx.key("metric").error(f"{metric!r}: write a metric name such as tg_tps")
    better = _parse_better(raw.get("better"), ctx.key("better"))
    if better is None and metric not in METRICS:
        raise ctx.key("metric").error(
            f"unknown metric {metric!r}; known: {', '.join(sorted(METRICS))} (or set 'better')"
        )
    workload = raw.get("workload")
    if workload is not None:
        workload = _parse_workloads(workload, ctx.key("workload"))[0].name
    reps = raw.get("repetitions")
    return DeepSpec(
        axes=_parse_axes(raw.get("axes"), ctx.key("axes")),
        top_k=_int_value(raw.get("top_k", 3), ctx.key("top_k"), 1),
        repetitions=None if reps is None else _int_value(reps, ctx.key("repetitions"), 1),
        metric=metric,
        better=better,
        workload=workload,
        workloads=(
            _parse_workloads(raw["workloads"], ctx.key("workloads")) if "workloads" in raw else None
        ),
        sampling=_parse_sampling(raw.get("sampling"), ctx.key("sampling")),
    )


def _parse_base(raw: Any, ctx: _Ctx) -> LoadParams:
    if raw is None:
        return LoadParams()
    if isinstance(raw, LoadParams):
        return raw
    try:
        if isinstance(raw, str):
            return LoadParams().merged(raw) if raw.strip() else LoadParams()
        if isinstance(raw, Mapping):
            return LoadParams.from_dict(dict(raw), source="base")
    except (UsageError, TypeError) as exc:
        raise ctx.error(f"{exc}") from None
    raise ctx.error("write llama.cpp arguments ('-c 4096 -fa on') or a mapping of load params")


@dataclass(frozen=True)
class Sweep:
    """A sweep definition: models x axes (each a list of variants), with the workloads
    and repetitions of every point, a ``base`` applied first, the default ``sampling``
    and an optional ``deep`` phase."""

    name: str
    axes: tuple[Axis, ...] = ()
    models: tuple[str, ...] = ()
    workloads: tuple[Workload, ...] = _DEFAULT_WORKLOADS
    repetitions: int = 3
    base: LoadParams = field(default_factory=LoadParams)
    skip_invalid: bool = False
    sampling: Sampling = field(default_factory=Sampling)
    deep: DeepSpec | None = None
    description: str = ""
    #: the file (or "<python>") the sweep came from, for error messages
    source: str = "<python>"

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, name: str, source: str = "<python>", where: str = ""
    ) -> Sweep:
        """A sweep from its YAML form; errors name ``source`` and the key path."""
        ctx = _Ctx(source, where)
        if not isinstance(name, str) or not _SAFE_NAME.match(name):
            raise ctx.error(f"sweep name {name!r}: use letters, digits and _ . + - only")
        if not isinstance(data, Mapping):
            raise ctx.error("a sweep is a mapping with models, workloads, axes ...")
        _check_keys(data, _SWEEP_KEYS, ctx, "a sweep")
        models = _parse_models(data.get("models"), ctx.key("models"))
        reps = _int_value(data.get("repetitions", 3), ctx.key("repetitions"), 1)
        skip = data.get("skip_invalid", False)
        if not isinstance(skip, bool):
            raise ctx.key("skip_invalid").error(f"{skip!r}: write true or false")
        description = data.get("description", "")
        if not isinstance(description, str):
            raise ctx.key("description").error("write a string")
        return cls(
            name=name,
            axes=_parse_axes(data.get("axes"), ctx.key("axes")),
            models=models,
            workloads=(
                _parse_workloads(data["workloads"], ctx.key("workloads"))
                if "workloads" in data
                else _DEFAULT_WORKLOADS
            ),
            repetitions=reps,
            base=_parse_base(data.get("base"), ctx.key("base")),
            skip_invalid=skip,
            sampling=_parse_sampling(data.get("sampling"), ctx.key("sampling")),
            deep=_parse_deep(data.get("deep"), ctx.key("deep")),
            description=description,
            source=source,
        )

    @classmethod
    def define(
        cls,
        name: str,
        *,
        axes: Mapping[str, Any] | Sequence[Axis] | None = None,
        models: Sequence[str] | str | None = None,
        workloads: Sequence[str | Workload] | str | None = None,
        repetitions: int = 3,
        base: str | Mapping[str, Any] | LoadParams | None = None,
        skip_invalid: bool = False,
        sampling: Sampling | str | Mapping[str, Any] | None = None,
        deep: DeepSpec | Mapping[str, Any] | None = None,
        description: str = "",
    ) -> Sweep:
        """The Python twin of the YAML form, with the same validation::

        Sweep.define("cpu", models=["tiny-moe"], workloads=["tg128"],
                     axes={"n_threads": "1-8*2",
                           "kv_cache": [{"name": "q8", "args": "-ctk q8_0"}]})
        """
        data: dict[str, Any] = {
            "repetitions": repetitions,
            "skip_invalid": skip_invalid,
            "description": description,
        }
        if axes is not None:
            data["axes"] = axes
        if models is not None:
            data["models"] = list(models) if not isinstance(models, str) else models
        if workloads is not None:
            data["workloads"] = list(workloads) if not isinstance(workloads, str) else workloads
        for key, value in (("base", base), ("sampling", sampling), ("deep", deep)):
            if value is not None:
                data[key] = value
        return cls.from_dict(data, name=name, source="<python>")

    # -- grid --------------------------------------------------------------------------
    @property
    def lengths(self) -> list[int]:
        return [len(a.variants) for a in self.axes]

    @property
    def grid_size(self) -> int:
        """Points in the full grid: models x the product of the axis lengths."""
        return max(1, len(self.models)) * math.prod(self.lengths)

    def _roots(self) -> list[_Root]:
        if not self.models:
            return [_Root(prefix="", model="", params=self.base)]
        return [_Root(prefix=_slug(m), model=m, params=self.base) for m in self.models]

    def _sampling(
        self,
        strategy: Sampling | str | None,
        size: int | None,
        seed: int | None,
        k: int | None,
        base: Sampling,
    ) -> Sampling:
        if isinstance(strategy, Sampling):
            s = strategy
        elif strategy is None:
            s = base
        else:
            s = Sampling(
                _canonical_strategy(strategy, _Ctx(self.source, "strategy")),
                base.size,
                base.seed,
                base.k,
            )
        return Sampling(
            s.strategy,
            s.size if size is None else size,
            s.seed if seed is None else seed,
            s.k if k is None else k,
        )

    def points(
        self,
        strategy: Sampling | str | None = None,
        *,
        size: int | None = None,
        seed: int | None = None,
        k: int | None = None,
    ) -> PointList:
        """The points a strategy keeps (default: the sweep's own ``sampling``), models
        outermost, then the axes in order. Every point's load params are checked here:
        invalid ones raise a UsageError naming them, or are dropped with
        ``skip_invalid`` (see ``PointList.skipped``)."""
        s = self._sampling(strategy, size, seed, k, self.sampling)
        combos = sample_indices(self.lengths, s, defaults=[a.default for a in self.axes])
        return _build(
            self,
            self._roots(),
            self.axes,
            combos,
            repetitions=self.repetitions,
            workloads=self.workloads,
            sampling=s,
            grid_size=self.grid_size,
            deep=False,
        )

    def find_points(self, ids: Iterable[str]) -> dict[str, SweepPoint]:
        """The exploration points with these ids, searched over the full grid."""
        wanted = set(ids)
        found: dict[str, tuple[_Root, tuple[int, ...]]] = {}
        for root in self._roots():
            for combo in itertools.product(*(range(n) for n in self.lengths)):
                pid = _point_id(root, self.axes, combo, False)
                if pid in wanted:
                    found[pid] = (root, combo)
            if len(found) == len(wanted):
                break
        out: dict[str, SweepPoint] = {}
        for pid, (root, combo) in found.items():
            built = _build(
                self,
                [root],
                self.axes,
                [combo],
                repetitions=self.repetitions,
                workloads=self.workloads,
                sampling=Sampling(),
                grid_size=1,
                deep=False,
            )
            if built:
                out[pid] = built[0]
        return out


def _parse_models(raw: Any, ctx: _Ctx) -> tuple[str, ...]:
    if raw is None:
        return ()
    items = raw if isinstance(raw, list | tuple) else [raw]
    out: list[str] = []
    for i, item in enumerate(items):
        ictx = ctx.key(i) if isinstance(raw, list | tuple) else ctx
        if not isinstance(item, str) or not item.strip():
            raise ictx.error(f"{item!r}: write a model id (a string), e.g. tiny-moe")
        if item in out:
            raise ictx.error(f"model {item!r} appears twice; remove one")
        out.append(item)
    slugs = [_slug(m) for m in out]
    for i, s in enumerate(slugs):
        if slugs.index(s) != i:
            raise ctx.error(
                f"models {out[slugs.index(s)]!r} and {out[i]!r} give the same id part {s!r}; "
                "use model ids of letters, digits and _ . + -"
            )
    return tuple(out)


def load_sweeps(path: PathLike) -> dict[str, Sweep]:
    """Every sweep of a YAML file: one at top level (named by ``name:`` or the file stem)
    or several under ``sweeps: {name: {...}}``. Loaded with ``yaml.safe_load``."""
    source = str(path)
    ctx = _Ctx(source)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ctx.error(f"cannot read the sweep file ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ctx.error(f"not valid YAML{where}: {problem}") from None
    if not isinstance(data, Mapping):
        raise ctx.error("the file must hold a sweep (a mapping) or 'sweeps: {name: {...}}'")
    if "sweeps" in data:
        _check_keys(data, ("sweeps",), ctx, "a file of several sweeps")
        sweeps = data["sweeps"]
        sctx = ctx.key("sweeps")
        if not isinstance(sweeps, Mapping) or not sweeps:
            raise sctx.error("write the sweeps as a mapping: sweeps: {cpu: {...}, gpu: {...}}")
        return {
            str(name): Sweep.from_dict(
                body, name=str(name), source=source, where=sctx.key(str(name)).path
            )
            for name, body in sweeps.items()
        }
    body = dict(data)
    name = body.pop("name", None) or _slug(Path(path).stem)
    if not isinstance(name, str):
        raise ctx.key("name").error(f"{name!r}: write the sweep name as a string")
    return {name: Sweep.from_dict(body, name=name, source=source)}


def load_sweep(path: PathLike, name: str | None = None) -> Sweep:
    """One sweep of a file: ``name``, or the only one."""
    sweeps = load_sweeps(path)
    if name is None:
        if len(sweeps) != 1:
            raise UsageError(f"{path}: holds several sweeps ({', '.join(sweeps)}); name one")
        return next(iter(sweeps.values()))
    if name not in sweeps:
        raise UsageError(f"{path}: no sweep {name!r}; the file has: {', '.join(sweeps)}")
    return sweeps[name]


# -- two phases ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Ranked:
    """One ranked configuration: its id and the median of the ranking metric."""

    id: str
    value: float
    metric: str
    better: Better


def _metric_value(raw: Any) -> float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, Mapping):
        if "median" in raw:
            return _metric_value(raw["median"])
        if isinstance(raw.get("summary"), Mapping):
            return _metric_value(raw["summary"].get("median"))
        return None
    else:
        return None
    return None if math.isnan(value) else value


def _workload_name(raw: Any) -> str | None:
    if isinstance(raw, Mapping):
        raw = raw.get("name")
    if isinstance(raw, str):
        try:
            return Workload.parse(raw).name
        except UsageError:
            return raw
    return None


def rank(
    results: Iterable[Mapping[str, Any]],
    metric: str,
    top_k: int | None = None,
    better: Better | None = None,
    *,
    workload: str | None = None,
) -> list[Ranked]:
    """Completed results, best first by the median of ``metric``.

    A result is a mapping with at least ``id`` and ``metrics: {name: median}`` (a number,
    or ``{"median": x}``, or ``{"summary": {"median": x}}``). Rows with a truthy
    ``error`` or without the metric are ignored; with ``workload`` only rows of that
    workload count; the last row of an id wins. ``better`` defaults to the metric's
    direction in the registry. Ties keep id order.
    """
    if better is None:
        if metric not in METRICS:
            raise UsageError(
                f"unknown metric {metric!r}; known: {', '.join(sorted(METRICS))} "
                "(or pass better='higher'/'lower')"
            )
        better = METRICS[metric].better
    wanted = Workload.parse(workload).name if workload else None
    values: dict[str, float] = {}
    for row in results:
        pid = row.get("id")
        if not isinstance(pid, str) or row.get("error"):
            continue
        if wanted is not None and _workload_name(row.get("workload")) != wanted:
            continue
        metrics = row.get("metrics")
        value = _metric_value(metrics.get(metric)) if isinstance(metrics, Mapping) else None
        if value is not None:
            values[pid] = value
    sign = -1.0 if better == "higher" else 1.0
    order = sorted(values, key=lambda pid: (sign * values[pid], pid))
    if top_k is not None:
        order = order[:top_k]
    return [Ranked(pid, values[pid], metric, better) for pid in order]


def write_ranking(path: PathLike, ranked: Sequence[Ranked | str]) -> None:
    """Write a ranking file the user can edit (reorder, delete lines): a list of ids.

    ``.json``: a JSON list. ``.yaml``/``.yml``: a YAML list with the metric values as
    comments. Written atomically.
    """
    p = Path(path)
    ids = [r.id if isinstance(r, Ranked) else str(r) for r in ranked]
    suffix = p.suffix.lower()
    if suffix == ".json":
        text = json.dumps(ids, indent=2) + "\n"
    elif suffix in (".yaml", ".yml"):
        first = next((r for r in ranked if isinstance(r, Ranked)), None)
        lines = ["# ranking, best first: reorder or delete lines, then run the deep phase"]
        if first is not None:
            lines.append(f"# by {first.metric} ({first.better} is better)")
        for r in ranked:
            item = json.dumps(r.id if isinstance(r, Ranked) else str(r))
            lines.append(f"- {item}  # {r.value:g}" if isinstance(r, Ranked) else f"- {item}")
        text = "\n".join(lines) + "\n"
    else:
        raise UsageError(f"{p}: a ranking file ends in .json, .yaml or .yml")
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, p)


def read_ranking(path: PathLike) -> list[str]:
    """The ids of a ranking file (JSON or YAML list, or a mapping with ``ranking:``)."""
    ctx = _Ctx(str(path))
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ctx.error(f"cannot read the ranking file ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ctx.error(f"not valid JSON/YAML: {exc}") from None
    if isinstance(data, Mapping):
        _check_keys(data, ("ranking",), ctx, "a ranking file")
        data = data.get("ranking")
        ctx = ctx.key("ranking")
    if not isinstance(data, list) or not data:
        raise ctx.error("write a list of point ids, best first")
    out: list[str] = []
    for i, item in enumerate(data):
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise ctx.key(i).error(f"{item!r}: each entry is a point id (a string)")
        if str(item) not in out:
            out.append(str(item))
    return out


def deepen(
    sweep: Sweep,
    ranked_ids: Sequence[str | Ranked | SweepPoint],
    top_k: int | None = None,
    deep_axes: Mapping[str, Any] | Sequence[Axis] | None = None,
    repetitions: int | None = None,
    *,
    sampling: Sampling | str | None = None,
) -> PointList:
    """The deep phase: for each of the ``top_k`` best configs, sweep ``deep_axes``
    (same syntax as ``axes``) around it with ``repetitions``.

    Defaults come from the sweep's ``deep:`` section, then: top 3, no extra axes (the
    winners re-measured), twice the exploration's repetitions, the full deep grid.
    Deep ids extend the parent's: ``<parent id>-<deep variant names>`` (``-deep`` when
    there are no deep axes). Unknown ids raise a UsageError naming them.
    """
    spec = sweep.deep or DeepSpec()
    k = spec.top_k if top_k is None else top_k
    if k < 1:
        raise UsageError(f"deepen: top_k={k}: must be >= 1")
    axes = (
        _parse_axes(deep_axes, _Ctx(sweep.source, "deep.axes"))
        if deep_axes is not None
        else spec.axes
    )
    reps = repetitions or spec.repetitions or 2 * sweep.repetitions
    s = sweep._sampling(sampling, None, None, None, spec.sampling)

    ordered: list[str | SweepPoint] = []
    seen: set[str] = set()
    for item in ranked_ids:
        pid = item.id if isinstance(item, Ranked | SweepPoint) else str(item)
        if pid not in seen:
            seen.add(pid)
            ordered.append(item if isinstance(item, SweepPoint) else pid)
        if len(ordered) >= k:
            break
    wanted = [x for x in ordered if isinstance(x, str)]
    found = sweep.find_points(wanted) if wanted else {}
    missing = [pid for pid in wanted if pid not in found]
    if missing:
        raise UsageError(
            f"{sweep.source}: sweep {sweep.name!r}: ranked id(s) {', '.join(missing)} are not "
            "points of this sweep; check the ranking file against the sweep's ids"
        )
    parents = [x if isinstance(x, SweepPoint) else found[x] for x in ordered]
    roots = [
        _Root(prefix=p.id, model=p.model, params=p.params, variants=p.variants, parent=p.id)
        for p in parents
    ]
    lengths = [len(a.variants) for a in axes]
    combos = sample_indices(lengths, s, defaults=[a.default for a in axes])
    return _build(
        sweep,
        roots,
        axes,
        combos,
        repetitions=reps,
        workloads=spec.workloads or sweep.workloads,
        sampling=s,
        grid_size=len(roots) * math.prod(lengths),
        deep=True,
    )


# -- progress and plan ---------------------------------------------------------------------


def fmt_duration(seconds: float) -> str:
    """``45s``, ``1m12s``, ``2h05m``."""
    total = max(0, round(seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    return f"{total // 3600}h{(total % 3600) // 60:02d}m"


def _one_line(text: str) -> str:
    return re.sub(r"[\r\n\t]+", " ", text).strip()


@dataclass(frozen=True)
class ProgressLine:
    """One progress line for a terminal or a CI log (no carriage returns)::

        [3/27] tiny-moe-q8_f16-small-t2  tg_tps 812.4 t/s  ETA 1m12s

    ``index`` is the 1-based number of the run just finished, ``elapsed`` the durations
    (seconds) of the finished runs, or their total. The ETA is the mean duration of the
    finished runs times the runs left.
    """

    index: int
    total: int
    name: str
    figure: str = ""
    elapsed: Sequence[float] | float = ()

    def eta_seconds(self) -> float | None:
        if isinstance(self.elapsed, int | float):
            done, spent = self.index, float(self.elapsed)
        else:
            done, spent = len(self.elapsed), float(sum(self.elapsed))
        if done <= 0:
            return None
        return spent / done * max(0, self.total - self.index)

    def render(self) -> str:
        parts = [f"[{self.index}/{self.total}] {_one_line(self.name)}"]
        if self.figure:
            parts.append(_one_line(self.figure))
        eta = self.eta_seconds()
        parts.append("ETA -" if eta is None else f"ETA {fmt_duration(eta)}")
        return "  ".join(parts)

    def __str__(self) -> str:
        return self.render()


def plan_summary(
    points: Sequence[SweepPoint],
    strategy: Sampling | str | None = None,
    probe_seconds_per_run: float | None = None,
    *,
    grid_size: int | None = None,
) -> list[str]:
    """Lines describing a plan: the strategy and its rule, the count against the full
    grid, the timed runs (points x workloads x repetitions), invalid points skipped, and
    an estimated time when a probe duration per timed run is given."""
    plist = points if isinstance(points, PointList) else None
    if strategy is None:
        s = plist.sampling if plist is not None else Sampling()
    elif isinstance(strategy, Sampling):
        s = strategy
    else:
        s = Sampling(_canonical_strategy(strategy, _Ctx("plan")))
    grid = grid_size if grid_size is not None else (plist.grid_size if plist else None)
    sweeps = sorted({p.sweep for p in points if p.sweep}) or (
        [plist.sweep] if plist and plist.sweep else []
    )
    head = f"sweep {', '.join(sweeps)}: " if sweeps else ""
    lines = [f"{head}strategy {s.describe()}"]
    n = len(points)
    if grid:
        lines.append(f"{n} of {grid} grid points ({100.0 * n / grid:.0f}%)")
    else:
        lines.append(f"{n} points")
    runs = sum(len(p.workloads) * p.repetitions for p in points)
    models = len({p.model for p in points})
    shapes = sorted({(len(p.workloads), p.repetitions) for p in points})
    detail = (
        f"{n} points x {shapes[0][0]} workloads x {shapes[0][1]} repetitions"
        if len(shapes) == 1
        else "summed over points"
    )
    lines.append(f"{runs} timed runs ({detail}; {models} model(s))")
    if plist is not None and plist.skipped:
        lines.append(f"{len(plist.skipped)} invalid combination(s) skipped (skip_invalid)")
    if probe_seconds_per_run is not None:
        lines.append(
            f"estimated time: {fmt_duration(runs * probe_seconds_per_run)} "
            f"({runs} runs x {probe_seconds_per_run:g} s; model loads and warm-ups not "
            "included)"
        )
    return lines


# -- result streams ------------------------------------------------------------------------


def append_result(path: PathLike, record: Mapping[str, Any]) -> None:
    """Append one result as a JSON line, flushed and fsynced before returning, so a crash
    or Ctrl-C keeps every run completed so far. Adds ``finished_at`` (UTC ISO 8601) when
    absent. A line cut by an earlier crash is closed first so it cannot swallow this one.
    Use one writer per file (each shard writes its own)."""
    if not isinstance(record.get("id"), str):
        raise UsageError("a result record needs an 'id' (the point id)")
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
    line (a crash mid-write) is skipped with a :class:`SweepWarning`, never fatal."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        return []
    out: list[dict[str, Any]] = []
    lines = raw.split(b"\n")
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
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


def completed_ids(
    results: PathLike | Iterable[Mapping[str, Any]], keys: Mapping[str, str]
) -> set[str]:
    """Ids of points already measured with the same fingerprint key (skip them on resume).

    ``keys`` maps point id -> its current fingerprint key; a record counts when its
    ``fingerprint_key`` equals it and it has no truthy ``error``."""
    rows = read_results(results) if isinstance(results, str | os.PathLike) else results
    done: set[str] = set()
    for row in rows:
        pid = row.get("id")
        if (
            isinstance(pid, str)
            and pid in keys
            and not row.get("error")
            and row.get(RESULT_KEY_FIELD) == keys[pid]
        ):
            done.add(pid)
    return done


# -- sharding and merge --------------------------------------------------------------------

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


@dataclass(frozen=True)
class MergeResult:
    records: list[dict[str, Any]]
    #: records dropped as duplicates (same id and fingerprint key; the latest was kept)
    duplicates: int
    #: one line per id measured under different fingerprint keys (all kept)
    conflicts: tuple[str, ...]


def merge_report(paths: Sequence[PathLike]) -> MergeResult:
    """Join the JSONL results of several shards; see :func:`merge`."""
    latest: dict[tuple[str, Any], tuple[tuple[str, int], dict[str, Any], str]] = {}
    dropped = 0
    seq = 0
    for path in paths:
        for row in read_results(path):
            seq += 1
            key = (row["id"], json.dumps(row.get(RESULT_KEY_FIELD), sort_keys=True))
            rank_key = (str(row.get("finished_at") or ""), seq)
            if key in latest:
                dropped += 1
                if rank_key < latest[key][0]:
                    continue
            latest[key] = (rank_key, row, str(path))
    by_id: dict[str, list[tuple[str, str]]] = {}
    for (pid, fkey), (_, _, src) in latest.items():
        by_id.setdefault(pid, []).append((fkey, src))
    conflicts = tuple(
        f"{pid}: measured under {len(entries)} fingerprint keys "
        f"({', '.join(sorted({src for _, src in entries}))}); all kept, compare with care"
        for pid, entries in sorted(by_id.items())
        if len(entries) > 1
    )
    records = [row for _, (_, row, _) in sorted(latest.items(), key=lambda kv: kv[0])]
    return MergeResult(records=records, duplicates=dropped, conflicts=conflicts)


def merge(paths: Sequence[PathLike]) -> list[dict[str, Any]]:
    """The results of several shard files, sorted by id: duplicates (same id and
    fingerprint key) keep the latest (``finished_at``, then file and line order); an id
    measured under different fingerprint keys keeps every key and is reported with a
    :class:`SweepWarning` (use :func:`merge_report` for the counts and lines)."""
    result = merge_report(paths)
    for line in result.conflicts:
        warnings.warn(f"merge: {line}", SweepWarning, stacklevel=2)
    return result.records
