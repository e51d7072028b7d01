"""Sweep points: one configuration to measure each, with a stable, pytest-safe id, and
how they are built from axis combinations (validated, invalid ones named or skipped)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.workloads import Workload
from pytest_llmperf.sweep.selection import Selection


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
    """The points of a sweep (a plain list) plus how they were chosen: the selection,
    the full grid size and the invalid combinations dropped by ``skip_invalid``."""

    def __init__(
        self,
        points: Iterable[SweepPoint] = (),
        *,
        sweep: str = "",
        selection: Selection | None = None,
        grid_size: int | None = None,
        skipped: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(points)
        self.sweep = sweep
        self.selection = selection or Selection()
        self.grid_size = grid_size
        #: (point id, reason) of each invalid combination dropped
        self.skipped: tuple[tuple[str, str], ...] = tuple(skipped)

    def ids(self) -> list[str]:
        return [p.id for p in self]


#: axes that choose the worker rather than load params: plain names of registry entries
CONFIG_AXES: dict[str, str] = {"build": "b", "launcher": "l"}
