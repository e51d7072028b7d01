"""What a sweep prints: the plan (:func:`plan_summary`) and one line per finished run
(:class:`ProgressLine`), plain text that reads the same in a terminal and a CI log."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_llmperf.sweep.points import PointList, SweepPoint
from pytest_llmperf.sweep.selection import Selection


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
    strategy: Selection | str | None = None,
    probe_seconds_per_run: float | None = None,
    *,
    grid_size: int | None = None,
) -> list[str]:
    """Lines describing a plan: the strategy and its rule, the count against the full
    grid, the timed runs (points x workloads x repetitions), invalid points skipped, and
    an estimated time when a probe duration per timed run is given."""
    plist = points if isinstance(points, PointList) else None
    if strategy is None:
        s = plist.selection if plist is not None else Selection()
    elif isinstance(strategy, Selection):
        s = strategy
    else:
        s = Selection(strategy)
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
    runs = timed_runs(points)
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


def timed_runs(points: Sequence[SweepPoint]) -> int:
    """Timed runs of ``points``: workloads x repetitions, summed."""
    return sum(len(p.workloads) * p.repetitions for p in points)


def first_line(text: str, limit: int = 200) -> str:
    """The first non-blank line of ``text``, cut to ``limit`` characters."""
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return ""
