"""Sweep definitions: :class:`Sweep`, its :class:`Axis` es of :class:`Variant` s and its
:class:`DeepPhase`, from YAML (:func:`load_sweeps`, :func:`load_sweep`) or from Python
(:meth:`Sweep.define`), with the same validation. See docs/SWEEPS.md.

An axis named after a load parameter takes plain values, read by that parameter's own
spec (:data:`pytest_llmperf.model.params.KNOBS`: value kind, llama-bench ranges, id prefix);
any other axis takes named variants ``{name, args}``.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmperf.errors import UsageError
from pytest_llmperf.model.metrics import METRICS, Better
from pytest_llmperf.model.params import (
    KNOBS,
    LoadParams,
    Workload,
    int_range,
    parse_llama_args,
    value_id,
)
from pytest_llmperf.sweep.context import (
    SAFE_NAME,
    SAFE_NAME_HELP,
    PathLike,
    Where,
    check_keys,
    int_value,
    load_yaml,
)
from pytest_llmperf.sweep.points import (
    CONFIG_AXES,
    PointList,
    Root,
    SweepPoint,
    build,
    point_id,
    slug,
)
from pytest_llmperf.sweep.selection import Sampling, sample_indices

_AXIS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def parse_int_range(text: str) -> list[int]:
    """Integers of a llama-bench style range (:func:`pytest_llmperf.model.params.int_range`).

    ``"1-16*2"`` -> 1, 2, 4, 8, 16; ``"0-99+10"`` -> 0, 10, ..., 90; ``"8-16"`` -> 8..16;
    ``"1,2,4"`` and mixtures (``"1-4,8,16-64*2"``).
    """
    try:
        return int_range(text)
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
        if not isinstance(self.name, str) or not SAFE_NAME.match(self.name):
            raise UsageError(f"variant name {self.name!r}: {SAFE_NAME_HELP}")
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
        return parse_axis(name, raw, Where(source, name))


def _plain_values(name: str, raw: Any, where: Where) -> list[Any]:
    """The values of one item of a load-parameter axis (a range string may give several),
    read by the parameter's kind."""
    if isinstance(raw, Mapping | Variant):
        raise where.error(
            f"{name} is a load parameter: list plain values (e.g. [1, 2, 4] or "
            f"'1-16*2'); for named variants with args use another axis name"
        )
    try:
        return KNOBS[name].kind.sweep_values(raw)
    except (ValueError, TypeError) as exc:
        # a string's problem quotes the string; another value's does not name it
        raise where.error(str(exc) if isinstance(raw, str) else f"{raw!r}: {exc}") from None


def _parse_variant(raw: Any, where: Where, axis_name: str) -> Variant:
    if isinstance(raw, Variant):
        return raw
    if not isinstance(raw, Mapping):
        raise where.error(
            f"{raw!r} is a plain value, but {axis_name!r} is not a load parameter; write "
            f"named variants ({{name: ..., args: '-ctk q8_0'}}) or use a load-parameter axis "
            f"({', '.join(sorted(KNOBS))})"
        )
    check_keys(raw, ("name", "args"), where, "a variant")
    name = raw.get("name")
    if not isinstance(name, str | int) or isinstance(name, bool) or not str(name):
        raise where.key("name").error("each variant needs a name (a string used in test ids)")
    name = str(name)
    if not SAFE_NAME.match(name):
        raise where.key("name").error(f"{name!r}: {SAFE_NAME_HELP}")
    args_raw = raw.get("args", "")
    if args_raw is None:
        args_raw = ""
    if isinstance(args_raw, list) and all(isinstance(a, str) for a in args_raw):
        args = " ".join(args_raw)
    elif isinstance(args_raw, str):
        args = args_raw
    else:
        raise where.key("args").error(
            f"{args_raw!r}: write llama.cpp arguments as a string, e.g. '-ctk q8_0 -ctv f16'"
        )
    try:
        overrides = tuple(parse_llama_args(args).items()) if args.strip() else ()
    except UsageError as exc:
        raise where.key("args").error(str(exc)) from None
    return Variant(name=name, args=args.strip(), overrides=overrides)


def _plain_axis(
    name: str, items: Sequence[tuple[Any, Where]], default: tuple[Any, Where] | None
) -> Axis:
    """A load-parameter axis: its values sorted when the kind is ordered (integers), and
    the default's index (the nearest value for an ordered kind)."""
    kind = KNOBS[name].kind
    values: list[Any] = []
    for item, where in items:
        for value in _plain_values(name, item, where):
            if value in values:
                raise where.error(f"value {value!r} appears twice in {name}; remove one")
            values.append(value)
    if kind.ordered:
        values.sort(key=kind.sort_key)
    variants = tuple(Variant(value_id(name, v), overrides=((name, v),), value=v) for v in values)
    index: int | None = None
    if default is not None:
        raw, dwhere = default
        dvals = _plain_values(name, raw, dwhere)
        if len(dvals) != 1:
            raise dwhere.error("the default is one value, not a range")
        dval = dvals[0]
        if dval in values:
            index = values.index(dval)
        elif kind.ordered:
            # nearest value on the axis (the first of two equally near)
            index = min(
                range(len(values)),
                key=lambda i: abs(kind.sort_key(values[i]) - kind.sort_key(dval)),
            )
        else:
            raise dwhere.error(f"{dval!r} is not one of the values of {name}: {values}")
    return Axis(name=name, variants=variants, field=name, default=index)


def _worker_axis(
    name: str, items: Sequence[tuple[Any, Where]], default: tuple[Any, Where] | None
) -> Axis:
    """A ``build`` or ``launcher`` axis: names of registry entries (``default`` is the
    installed build); ids get ``b<name>`` / ``l<name>`` like configs()."""
    values: list[str] = []
    for item, where in items:
        if not isinstance(item, str) or not SAFE_NAME.match(item):
            raise where.error(f"{item!r}: write the name of a registry {name} ({SAFE_NAME_HELP})")
        if item in values:
            raise where.error(f"{name} {item!r} appears twice; remove one")
        values.append(item)
    prefix = CONFIG_AXES[name]
    variants = tuple(Variant(f"{prefix}{v}", overrides=((name, v),), value=v) for v in values)
    index = None
    if default is not None:
        raw, dwhere = default
        if raw not in values:
            raise dwhere.error(f"{raw!r} is not one of the {name}s of this axis: {values}")
        index = values.index(raw)
    return Axis(name=name, variants=variants, field=name, default=index)


def _named_axis(
    name: str, items: Sequence[tuple[Any, Where]], default: tuple[Any, Where] | None
) -> Axis:
    named: list[Variant] = []
    for item, where in items:
        variant = _parse_variant(item, where, name)
        if variant.name in [v.name for v in named]:
            raise where.key("name").error(
                f"variant name {variant.name!r} appears twice in {name}; names must be unique"
            )
        named.append(variant)
    index: int | None = None
    if default is not None:
        raw, dwhere = default
        names = [v.name for v in named]
        if str(raw) not in names:
            raise dwhere.error(
                f"{raw!r} is not a variant of {name}; write one of {', '.join(names)}"
            )
        index = names.index(str(raw))
    return Axis(name=name, variants=tuple(named), field=None, default=index)


def parse_axis(name: str, raw: Any, where: Where) -> Axis:
    """An axis from a list, one value or range, or ``{values: ..., default: ...}``."""
    if isinstance(raw, Axis):
        return raw
    if not isinstance(name, str) or not _AXIS_NAME.match(name):
        raise where.error(f"axis name {name!r}: use letters, digits and _ . - only")
    default: tuple[Any, Where] | None = None
    values_at = where
    if isinstance(raw, Mapping) and not ({"name", "args"} & set(raw)):
        check_keys(raw, ("values", "default"), where, "an axis")
        if "values" not in raw:
            raise where.error(
                "an axis written as a mapping needs 'values' (and may have 'default')"
            )
        if "default" in raw:
            default = (raw["default"], where.key("default"))
        values_at = where.key("values")
        raw = raw["values"]
    items: list[tuple[Any, Where]]
    if isinstance(raw, list | tuple):
        items = [(item, values_at.key(i)) for i, item in enumerate(raw)]
    else:
        items = [(raw, values_at)]
    if not items:
        raise values_at.error("an axis needs at least one value")
    if name in KNOBS:
        return _plain_axis(name, items, default)
    if name in CONFIG_AXES:
        return _worker_axis(name, items, default)
    if all(not isinstance(item, Mapping | Variant) for item, _ in items):
        close = difflib.get_close_matches(name, list(KNOBS), n=1)
        hint = f" (did you mean the load parameter {close[0]!r}?)" if close else ""
        raise values_at.error(
            f"{name!r} is not a load parameter{hint}, so it takes named variants: "
            "[{name: ..., args: '...'}]; plain values need a load-parameter axis "
            f"({', '.join(sorted(KNOBS))})"
        )
    return _named_axis(name, items, default)


def parse_axes(raw: Any, where: Where) -> tuple[Axis, ...]:
    if raw is None:
        return ()
    if (
        isinstance(raw, Sequence)
        and not isinstance(raw, str)
        and all(isinstance(a, Axis) for a in raw)
    ):
        return tuple(raw)
    if not isinstance(raw, Mapping):
        raise where.error(
            "write the axes as a mapping: {n_threads: [1, 2, 4], kv_cache: [{name: ..., "
            "args: ...}]}"
        )
    return tuple(parse_axis(str(name), value, where.key(str(name))) for name, value in raw.items())


# -- the other parts of a sweep ------------------------------------------------------------

_DEFAULT_WORKLOADS: tuple[Workload, ...] = (Workload.parse("pp512"), Workload.parse("tg128"))
_SWEEP_KEYS: tuple[str, ...] = (
    "description", "models", "workloads", "repetitions", "base", "axes", "skip_invalid",
    "sampling", "deep",
)  # fmt: skip
_DEEP_KEYS: tuple[str, ...] = (
    "axes", "top_k", "repetitions", "metric", "better", "workload", "workloads", "sampling",
)  # fmt: skip


@dataclass(frozen=True)
class DeepPhase:
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


def _parse_workloads(raw: Any, where: Where) -> tuple[Workload, ...]:
    items = raw if isinstance(raw, list | tuple) else [raw]
    if not items:
        raise where.error("list at least one workload, e.g. [pp512, tg128]")
    out: list[Workload] = []
    for i, item in enumerate(items):
        at = where.key(i) if isinstance(raw, list | tuple) else where
        if not isinstance(item, str | Workload):
            raise at.error(
                f"{item!r}: write a workload such as 'pp512', 'tg128', 'pg512,128' or 'tg128@d4096'"
            )
        try:
            wl = Workload.parse(item)
        except UsageError as exc:
            raise at.error(str(exc)) from None
        if wl in out:
            raise at.error(f"workload {wl.name} appears twice; remove one")
        out.append(wl)
    return tuple(out)


def _parse_better(raw: Any, where: Where) -> Better | None:
    if raw is None:
        return None
    if raw == "higher":
        return "higher"
    if raw == "lower":
        return "lower"
    raise where.error(f"{raw!r}: write 'higher' or 'lower'")


def _parse_deep(raw: Any, where: Where) -> DeepPhase | None:
    if raw is None:
        return None
    if isinstance(raw, DeepPhase):
        return raw
    if not isinstance(raw, Mapping):
        raise where.error("write the deep phase as a mapping: {top_k: 3, axes: {...}}")
    check_keys(raw, _DEEP_KEYS, where, "deep")
    metric = raw.get("metric", "tg_tps")
    if not isinstance(metric, str):
        raise where.key("metric").error(f"{metric!r}: write a metric name such as tg_tps")
    better = _parse_better(raw.get("better"), where.key("better"))
    if better is None and metric not in METRICS:
        raise where.key("metric").error(
            f"unknown metric {metric!r}; known: {', '.join(sorted(METRICS))} (or set 'better')"
        )
    workload = raw.get("workload")
    if workload is not None:
        workload = _parse_workloads(workload, where.key("workload"))[0].name
    reps = raw.get("repetitions")
    return DeepPhase(
        axes=parse_axes(raw.get("axes"), where.key("axes")),
        top_k=int_value(raw.get("top_k", 3), where.key("top_k"), 1),
        repetitions=None if reps is None else int_value(reps, where.key("repetitions"), 1),
        metric=metric,
        better=better,
        workload=workload,
        workloads=(
            _parse_workloads(raw["workloads"], where.key("workloads"))
            if "workloads" in raw
            else None
        ),
        sampling=Sampling.parse(raw.get("sampling"), where=where.key("sampling")),
    )


def _parse_base(raw: Any, where: Where) -> LoadParams:
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
        raise where.error(f"{exc}") from None
    raise where.error("write llama.cpp arguments ('-c 4096 -fa on') or a mapping of load params")


def _parse_models(raw: Any, where: Where) -> tuple[str, ...]:
    if raw is None:
        return ()
    items = raw if isinstance(raw, list | tuple) else [raw]
    out: list[str] = []
    for i, item in enumerate(items):
        at = where.key(i) if isinstance(raw, list | tuple) else where
        if not isinstance(item, str) or not item.strip():
            raise at.error(f"{item!r}: write a model id (a string), e.g. tiny-moe")
        if item in out:
            raise at.error(f"model {item!r} appears twice; remove one")
        out.append(item)
    slugs = [slug(m) for m in out]
    for i, s in enumerate(slugs):
        if slugs.index(s) != i:
            raise where.error(
                f"models {out[slugs.index(s)]!r} and {out[i]!r} give the same id part {s!r}; "
                "use model ids of letters, digits and _ . + -"
            )
    return tuple(out)


# -- the sweep -----------------------------------------------------------------------------


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
    deep: DeepPhase | None = None
    description: str = ""
    #: the file (or "<python>") the sweep came from, for error messages
    source: str = "<python>"

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, name: str, source: str = "<python>", where: str = ""
    ) -> Sweep:
        """A sweep from its YAML form; errors name ``source`` and the key path."""
        at = Where(source, where)
        if not isinstance(name, str) or not SAFE_NAME.match(name):
            raise at.error(f"sweep name {name!r}: use letters, digits and _ . + - only")
        if not isinstance(data, Mapping):
            raise at.error("a sweep is a mapping with models, workloads, axes ...")
        check_keys(data, _SWEEP_KEYS, at, "a sweep")
        skip = data.get("skip_invalid", False)
        if not isinstance(skip, bool):
            raise at.key("skip_invalid").error(f"{skip!r}: write true or false")
        description = data.get("description", "")
        if not isinstance(description, str):
            raise at.key("description").error("write a string")
        return cls(
            name=name,
            axes=parse_axes(data.get("axes"), at.key("axes")),
            models=_parse_models(data.get("models"), at.key("models")),
            workloads=(
                _parse_workloads(data["workloads"], at.key("workloads"))
                if "workloads" in data
                else _DEFAULT_WORKLOADS
            ),
            repetitions=int_value(data.get("repetitions", 3), at.key("repetitions"), 1),
            base=_parse_base(data.get("base"), at.key("base")),
            skip_invalid=skip,
            sampling=Sampling.parse(data.get("sampling"), where=at.key("sampling")),
            deep=_parse_deep(data.get("deep"), at.key("deep")),
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
        deep: DeepPhase | Mapping[str, Any] | None = None,
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
        return [len(a) for a in self.axes]

    @property
    def grid_size(self) -> int:
        """Points in the full grid: models x the product of the axis lengths."""
        return max(1, len(self.models)) * math.prod(self.lengths)

    def roots(self) -> list[Root]:
        """One root per model (a single unnamed one without models)."""
        if not self.models:
            return [Root(prefix="", model="", params=self.base)]
        return [Root(prefix=slug(m), model=m, params=self.base) for m in self.models]

    def sampling_for(
        self,
        strategy: Sampling | str | None,
        size: int | None = None,
        seed: int | None = None,
        k: int | None = None,
        *,
        base: Sampling | None = None,
    ) -> Sampling:
        """``base`` (default: the sweep's own sampling) with what is given replaced."""
        return (base or self.sampling).override(
            strategy, size, seed, k, where=Where(self.source, "strategy")
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
        s = self.sampling_for(strategy, size, seed, k)
        combos = sample_indices(self.lengths, s, defaults=[a.default for a in self.axes])
        return build(
            self,
            self.roots(),
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
        found: dict[str, tuple[Root, tuple[int, ...]]] = {}
        for root in self.roots():
            for combo in itertools.product(*(range(n) for n in self.lengths)):
                pid = point_id(root, self.axes, combo, False)
                if pid in wanted:
                    found[pid] = (root, combo)
            if len(found) == len(wanted):
                break
        out: dict[str, SweepPoint] = {}
        for pid, (root, combo) in found.items():
            built = build(
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


def load_sweeps(path: PathLike) -> dict[str, Sweep]:
    """Every sweep of a YAML file: one at top level (named by ``name:`` or the file stem)
    or several under ``sweeps: {name: {...}}``. Loaded with ``yaml.safe_load``."""
    source = str(path)
    at = Where(source)
    data = load_yaml(path)
    if not isinstance(data, Mapping):
        raise at.error("the file must hold a sweep (a mapping) or 'sweeps: {name: {...}}'")
    if "sweeps" in data:
        check_keys(data, ("sweeps",), at, "a file of several sweeps")
        sweeps = data["sweeps"]
        sat = at.key("sweeps")
        if not isinstance(sweeps, Mapping) or not sweeps:
            raise sat.error("write the sweeps as a mapping: sweeps: {cpu: {...}, gpu: {...}}")
        return {
            str(name): Sweep.from_dict(
                body, name=str(name), source=source, where=sat.key(str(name)).path
            )
            for name, body in sweeps.items()
        }
    body = dict(data)
    name = body.pop("name", None) or slug(Path(path).stem)
    if not isinstance(name, str):
        raise at.key("name").error(f"{name!r}: write the sweep name as a string")
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
