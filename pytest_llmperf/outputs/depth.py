"""Depth series: a test's measurements at several KV depths as llama-sweep-bench's rows
(the prompt and generation rates at each depth), for its table and plot."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from pytest_llmperf.model.results import TestResult


@dataclass
class DepthPoint:
    """One llama-sweep-bench row: the prompt and generation rates at KV depth ``n_kv``."""

    n_kv: int
    pp: int = 0
    tg: int = 0
    s_pp: list[float] = field(default_factory=list)  # per-repetition t/s
    s_tg: list[float] = field(default_factory=list)

    @staticmethod
    def _median(values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    @property
    def s_pp_median(self) -> float | None:
        return self._median(self.s_pp)

    @property
    def s_tg_median(self) -> float | None:
        return self._median(self.s_tg)

    @property
    def t_pp_s(self) -> float | None:
        s = self.s_pp_median
        return self.pp / s if s and self.pp else None

    @property
    def t_tg_s(self) -> float | None:
        s = self.s_tg_median
        return self.tg / s if s and self.tg else None


def depth_series(result: TestResult) -> list[DepthPoint]:
    """The test's measurements by KV depth when it measured at least two depths (one
    point per depth, pp and tg rates merged), else []."""
    engine = [m for m in result.measurements if m.workload.kind not in ("load", "stream")]
    depths = {m.workload.n_depth for m in engine}
    if len(depths) < 2:
        return []
    points: dict[int, DepthPoint] = {}
    for m in engine:
        p = points.setdefault(m.workload.n_depth, DepthPoint(m.workload.n_depth))
        if m.workload.n_prompt and m.values.get("pp_tps") and not p.s_pp:
            p.pp = m.workload.n_prompt
            p.s_pp = list(m.values["pp_tps"])
        if m.workload.n_gen and m.values.get("tg_tps") and not p.s_tg:
            p.tg = m.workload.n_gen
            p.s_tg = list(m.values["tg_tps"])
    return [points[d] for d in sorted(points)]
