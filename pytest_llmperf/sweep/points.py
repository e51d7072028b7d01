"""Sweep points: one configuration to measure each, with a stable, pytest-safe id, and
how they are built from axis combinations (validated, invalid ones named or skipped)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pytest_llmperf.errors import UsageError
from pytest_llmperf.model.params import LoadParams, Workload
from pytest_llmperf.sweep.selection import Sampling

if TYPE_CHECKING:
    from pytest_llmperf.sweep.definition import Axis, Sweep


def slug(text: str) -> str:
    """A model id as a fragment of point ids: other characters than letters, digits and
    ``_ . + -`` become ``_``."""
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
    #: the llama.cpp build and the launcher of the worker (a ``build`` / ``launcher`` axis)
    build: str = "default"
    launcher: str = ""

    @property
    def axes(self) -> dict[str, str]:
        """Axis name -> variant name (for plain-value axes: the id fragment, e.g. ``t2``)."""
        return dict(self.variants)

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
            "build": self.build,
            "launcher": self.launcher,
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


#: axes that choose the worker rather than load params: plain names of registry entries
CONFIG_AXES: dict[str, str] = {"build": "b", "launcher": "l"}


def point_id(root: Root, axes: Sequence[Axis], combo: Sequence[int], deep: bool) -> str:
    """The root's prefix, then each axis' variant name, joined by ``-``."""
    names = [axis.variants[i].name for axis, i in zip(axes, combo, strict=True)]
    if deep and not names:
        names = ["deep"]
    return "-".join([p for p in (root.prefix, *names) if p]) or "default"


def build(
    sweep: Sweep,
    roots: Sequence[Root],
    axes: Sequence[Axis],
    combos: Sequence[tuple[int, ...]],
    *,
    repetitions: int,
    workloads: tuple[Workload, ...],
    sampling: Sampling,
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
        points, sweep=sweep.name, sampling=sampling, grid_size=grid_size, skipped=invalid
    )
