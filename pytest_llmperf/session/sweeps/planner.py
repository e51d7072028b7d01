"""The plan printed after collection: per sweep, the strategy and counts, what this run
leaves out, and an estimated time (from earlier results, or from a probe run)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from pytest_llmperf.errors import LLMPerfError, UsageError
from pytest_llmperf.session.perf_session import PerfSession
from pytest_llmperf.session.sweeps.collect import SweepItem, SweepPlan
from pytest_llmperf.sweep.options import SweepOptions
from pytest_llmperf.sweep.points import SweepPoint
from pytest_llmperf.sweep.progress import first_line, fmt_duration, plan_summary, timed_runs
from pytest_llmperf.sweep.records import read_quietly


class Planner:
    """Writes the plan lines of a session's sweeps."""

    def __init__(self, options: SweepOptions, perf: Callable[[], PerfSession | None]) -> None:
        self.options = options
        self._perf = perf

    def lines(self, plans: Iterable[SweepPlan], items: Mapping[str, SweepItem]) -> list[str]:
        out: list[str] = []
        for plan in plans:
            if not plan.collected:
                continue
            if not plan.selected and not (plan.shard_skipped or plan.resume_skipped):
                continue  # deselected by -k / -m (e.g. the smoke run): no plan to show
            selected = [items[nodeid] for nodeid in plan.selected]
            out.extend(self._plan_lines(plan, selected))
        if out:
            out.extend(f"llmperf sweep shard: {note}" for note in self.options.shard_notes)
        return out

    def _plan_lines(self, plan: SweepPlan, selected: Sequence[SweepItem]) -> list[str]:
        summary = plan_summary(plan.points)
        head = f"sweep {plan.name}: "
        first = summary[0][len(head) :] if summary[0].startswith(head) else summary[0]
        phase = plan.phase + (f", {plan.origin}" if plan.origin else "")
        lines = [f"llmperf sweep {plan.name} ({phase}): {first}"]
        lines.extend(f"  {line}" for line in summary[1:])
        points = [it.point for it in selected]
        tail = self._left_out(plan, len(selected))
        lines.append(f"  this run: {len(selected)} test(s), {timed_runs(points)} timed runs{tail}")
        if selected:
            lines.append(f"  {self._estimate(plan, points, selected[0])}")
        return lines

    def _left_out(self, plan: SweepPlan, selected: int) -> str:
        o = self.options
        parts: list[str] = []
        if o.shard is not None:
            parts.append(f"shard {o.shard} leaves out {plan.shard_skipped}, from {o.shard.source}")
        if o.resume:
            name = o.results.name if o.results else ""
            parts.append(f"resume: {plan.resume_skipped} already done in {name}")
        others = plan.collected - plan.shard_skipped - plan.resume_skipped - selected
        if others > 0:
            parts.append(f"{others} deselected otherwise (-k, -m, --lf)")
        return f" ({'; '.join(parts)})" if parts else ""

    def _probe(self, item: SweepItem) -> tuple[float, str] | str:
        """Seconds for one run of the item's workloads, or why not."""
        perf = self._perf()
        if perf is None:
            return "nothing to probe"
        try:
            path, reason = perf.resolve_path(item.config)
            if path is None:
                return f"probe skipped: {reason}"
            runner = perf.runner(item.config, path)
            start = time.perf_counter()
            for wl in item.config.workloads:
                runner.measure(wl, 1, 0)
            return time.perf_counter() - start, item.point.id
        except LLMPerfError as exc:
            return f"probe failed on {item.point.id}: {first_line(str(exc))}"

    def _estimate(self, plan: SweepPlan, points: Sequence[SweepPoint], first: SweepItem) -> str:
        perf = self._perf()
        warmup = perf.settings.warmup if perf is not None else 1
        if self.options.probe:
            probed = self._probe(first)
            if isinstance(probed, str):
                return probed
            seconds, pid = probed
            runs = sum(p.repetitions + warmup for p in points)
            wls = "+".join(w.name for w in points[0].workloads)
            return (
                f"estimated time: {fmt_duration(seconds * runs)} (probe: one run of {wls} on "
                f"{pid} took {seconds:.2f} s; x {len(points)} points x (repetitions + "
                f"{warmup} warm-up); model loads not included)"
            )
        results = self.options.results
        if results is not None and results.is_file():
            try:
                rows, _warns = read_quietly(results)
            except UsageError as exc:
                return f"estimated time: unknown ({exc})"
            spent, runs_done, n = 0.0, 0, 0
            for row in rows:
                d, reps, names = row.get("duration_s"), row.get("repetitions"), row.get("workloads")
                if (
                    row.get("sweep") == plan.name
                    and isinstance(d, int | float)
                    and isinstance(reps, int)
                    and isinstance(names, list)
                    and reps * len(names) > 0
                ):
                    spent += float(d)
                    runs_done += reps * len(names)
                    n += 1
            if n:
                per_run = spent / runs_done
                return (
                    f"estimated time: {fmt_duration(per_run * timed_runs(points))} (from {n} "
                    f"earlier result(s) in {results.name}: {per_run:.3g} s per timed run, "
                    "loads and warm-ups included)"
                )
        return "estimated time: unknown (no earlier results; --perf-probe times one run first)"
