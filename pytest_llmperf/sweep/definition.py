"""Sweep definitions: :class:`Sweep`, its axes (:mod:`pytest_llmperf.sweep.axes`) and its
:class:`DeepPhase`, from YAML (:func:`load_sweeps`, :func:`load_sweep`) or from Python
(:meth:`Sweep.define`), with the same validation. See docs/SWEEPS.md.

An axis named after a load parameter takes plain values, read by that parameter's own
spec (:data:`pytest_llmperf.model.params.KNOBS`: value kind, llama-bench ranges, id prefix);
any other axis takes named variants ``{name, args}``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmperf.errors import UsageError
from pytest_llmperf.model.metrics import METRICS, Better
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.workloads import Workload
from pytest_llmperf.sweep.axes import Axis, parse_axes
from pytest_llmperf.sweep.context import (
    SAFE_NAME,
    PathLike,
    Where,
    check_keys,
    int_value,
    load_yaml,
)
from pytest_llmperf.sweep.points import CONFIG_AXES, PointList, SweepPoint, slug
from pytest_llmperf.sweep.selection import Selection, select_indices

# -- the other parts of a sweep ------------------------------------------------------------

_DEFAULT_WORKLOADS: tuple[Workload, ...] = (Workload.parse("pp512"), Workload.parse("tg128"))
_SWEEP_KEYS: tuple[str, ...] = (
    "description", "models", "workloads", "repetitions", "base", "axes", "skip_invalid",
    "select", "sampling", "deep",
)  # fmt: skip
_DEEP_KEYS: tuple[str, ...] = (
    "axes", "top_k", "repetitions", "metric", "better", "workload", "workloads", "select",
    "sampling",
)  # fmt: skip


def _selection(data: Mapping[str, Any], where: Where) -> Selection:
    """The ``select:`` of a sweep or deep phase (``sampling:``, its spelling before 0.2,
    is read the same; both at once is an error naming them)."""
    if "select" in data and "sampling" in data:
        raise where.error(
            "both 'select' and 'sampling' given; keep 'select' ('sampling' is its older spelling)"
        )
    key = "select" if "select" in data else "sampling"
    return Selection.parse(data.get(key), where=where.key(key))


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
    selection: Selection = field(default_factory=Selection)


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
        selection=_selection(raw, where),
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
    and repetitions of every point, a ``base`` applied first, the default ``selection``
    and an optional ``deep`` phase."""

    name: str
    axes: tuple[Axis, ...] = ()
    models: tuple[str, ...] = ()
    workloads: tuple[Workload, ...] = _DEFAULT_WORKLOADS
    repetitions: int = 3
    base: LoadParams = field(default_factory=LoadParams)
    skip_invalid: bool = False
    selection: Selection = field(default_factory=Selection)
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
            selection=_selection(data, at),
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
        selection: Selection | str | Mapping[str, Any] | None = None,
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
        for key, value in (("base", base), ("select", selection), ("deep", deep)):
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

    def selection_for(
        self,
        strategy: Selection | str | None,
        size: int | None = None,
        seed: int | None = None,
        k: int | None = None,
        *,
        base: Selection | None = None,
    ) -> Selection:
        """``base`` (default: the sweep's own selection) with what is given replaced."""
        return (base or self.selection).override(
            strategy, size, seed, k, where=Where(self.source, "strategy")
        )

    def points(
        self,
        strategy: Selection | str | None = None,
        *,
        size: int | None = None,
        seed: int | None = None,
        k: int | None = None,
    ) -> PointList:
        """The points a strategy keeps (default: the sweep's own ``selection``), models
        outermost, then the axes in order. Every point's load params are checked here:
        invalid ones raise a UsageError naming them, or are dropped with
        ``skip_invalid`` (see ``PointList.skipped``)."""
        s = self.selection_for(strategy, size, seed, k)
        combos = select_indices(self.lengths, s, defaults=[a.default for a in self.axes])
        return expand(
            self,
            self.roots(),
            self.axes,
            combos,
            repetitions=self.repetitions,
            workloads=self.workloads,
            selection=s,
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
            built = expand(
                self,
                [root],
                self.axes,
                [combo],
                repetitions=self.repetitions,
                workloads=self.workloads,
                selection=Selection(),
                grid_size=1,
                deep=False,
            )
            if built:
                out[pid] = built[0]
        return out


@dataclass(frozen=True)
class Root:
    """What a set of axis combinations is applied to: a model (explore) or a parent point
    (deep)."""

    prefix: str
    model: str
    params: LoadParams
    variants: tuple[tuple[str, str], ...] = ()
    parent: str | None = None
    build: str = "default"
    launcher: str = ""


def point_id(root: Root, axes: Sequence[Axis], combo: Sequence[int], deep: bool) -> str:
    """The root's prefix, then each axis' variant name, joined by ``-``."""
    names = [axis.variants[i].name for axis, i in zip(axes, combo, strict=True)]
    if deep and not names:
        names = ["deep"]
    return "-".join([p for p in (root.prefix, *names) if p]) or "default"


def expand(
    sweep: Sweep,
    roots: Sequence[Root],
    axes: Sequence[Axis],
    combos: Sequence[tuple[int, ...]],
    *,
    repetitions: int,
    workloads: tuple[Workload, ...],
    selection: Selection,
    grid_size: int,
    deep: bool,
) -> PointList:
    """The points of ``combos`` applied to each root: base params, then each axis'
    variant in axis order. A duplicate id is an error; invalid load params are an error
    naming the points, or dropped (``sweep.skip_invalid``)."""
    points: list[SweepPoint] = []
    invalid: list[tuple[str, str]] = []
    seen: dict[str, tuple[str, ...]] = {}
    for root in roots:
        base = root.params.to_dict()
        for combo in combos:
            pid = point_id(root, axes, combo, deep)
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
            values: dict[str, Any] = dict(base, build=root.build, launcher=root.launcher)
            for variant in chosen:
                values.update(dict(variant.overrides))
            worker = {k: str(values.pop(k)) for k in CONFIG_AXES}
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
                    build=worker["build"],
                    launcher=worker["launcher"],
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
        points, sweep=sweep.name, selection=selection, grid_size=grid_size, skipped=invalid
    )


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
