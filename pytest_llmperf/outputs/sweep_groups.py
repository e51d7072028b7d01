"""Sweep groups: the measurements of one sweep (same test function and workload) with
the axes their points varied, for the sweep tables and plots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytest_llmperf.model.metrics import KEY_METRICS, METRICS
from pytest_llmperf.model.results import Measurement, TestResult
from pytest_llmperf.outputs.rows import function_name


def sweep_axes(m: Measurement) -> dict[str, Any]:
    axes = m.resolved.get("sweep_axes")
    return dict(axes) if isinstance(axes, dict) else {}


@dataclass
class SweepGroup:
    """Measurements of one sweep (same test function and workload) with their axes."""

    function: str
    workload: str
    axes: list[str]
    points: list[tuple[TestResult, Measurement, dict[str, Any]]]

    @property
    def title(self) -> str:
        return f"{self.function} {self.workload}"

    def metric(self) -> str | None:
        """The metric this sweep is judged by: the first key metric its points measured
        (tg_tps, else pp_tps, ..., load_ms for cold loads)."""
        measured = {name for _, m, _ in self.points for name, v in m.values.items() if v}
        return next((name for name in KEY_METRICS if name in measured), None)

    def extra_metrics(self) -> list[str]:
        """The registry's metrics plotted beside the sweep's own (MetricSpec.sweep_plot:
        how close to the machine's limit, by axis) that its points measured."""
        measured = {name for _, m, _ in self.points for name, v in m.values.items() if v}
        own = self.metric()
        return [n for n, spec in METRICS.items() if spec.sweep_plot and n in measured and n != own]

    def variants(self, axis: str) -> list[Any]:
        seen: list[Any] = []
        for _, _, axes in self.points:
            if axis in axes and axes[axis] not in seen:
                seen.append(axes[axis])
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in seen):
            return sorted(seen)
        return seen


def sweep_groups(results: Sequence[TestResult]) -> list[SweepGroup]:
    groups: dict[tuple[str, str], SweepGroup] = {}
    for r in results:
        for m in r.measurements:
            axes = sweep_axes(m)
            if not axes:
                continue
            key = (function_name(r.nodeid), m.workload.name)
            g = groups.setdefault(key, SweepGroup(key[0], key[1], [], []))
            for axis in axes:
                if axis not in g.axes:
                    g.axes.append(axis)
            g.points.append((r, m, axes))
    return list(groups.values())
