"""The sweep side of one pytest session, without pytest: a thin coordinator of the
:class:`~.collect.Collector` (markers, plans, shard and resume selection), the
:class:`~.planner.Planner` (plan lines), the :class:`~.recorder.Recorder` (result records,
progress lines) and :class:`~.phases.Phases` (ranking, the deep phase).

:mod:`pytest_llmperf.plugin.sweep` is the pytest glue around it: it reads the markers,
parametrizes, deselects and writes to the terminal, and hands this plain data (node ids,
:class:`~pytest_llmperf.api.Config` objects, option values).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from pytest_llmperf.api import Config
from pytest_llmperf.model import ownership
from pytest_llmperf.model.results import TestResult
from pytest_llmperf.session.perf_session import PerfSession
from pytest_llmperf.session.sweeps.collect import Collector, SweepPlan
from pytest_llmperf.session.sweeps.log import Recorder
from pytest_llmperf.session.sweeps.phases import Phases
from pytest_llmperf.session.sweeps.planner import Planner
from pytest_llmperf.sweep.options import SweepOptions


class SweepState:
    """Everything the sweep hooks share during one session."""

    def __init__(
        self,
        options: SweepOptions,
        rootpath: Path,
        perf: Callable[[], PerfSession | None] = lambda: None,
    ) -> None:
        self.options = options
        self.phases = Phases(options)
        self.collector = Collector(options, rootpath, perf, self.phases.deep_points)
        self.planner = Planner(options, perf)
        self.recorder = Recorder(options)

    @property
    def plans(self) -> dict[str, SweepPlan]:
        return self.collector.plans

    # -- collection (the glue calls ``collector`` for markers and selection) ---------------
    def finish_collection(self, nodeids: Iterable[str]) -> None:
        self.collector.finish(nodeids)
        self.recorder.total = len(self.collector.items)

    def check_outputs(self) -> None:
        """Refuse, before anything runs, a ranking file of a sweep (``{sweep}`` in
        ``--perf-ranking``) that exists and is not a ranking file (a UsageError)."""
        o = self.options
        if o.phase != "explore" or o.ranking is None or "{sweep}" not in o.ranking:
            return
        for name in self.plans:
            path = o.ranking_path(name)
            if path is not None:
                ownership.check(path, "ranking", "--perf-ranking")

    def plan_lines(self) -> list[str]:
        return self.planner.lines(self.plans.values(), self.collector.items)

    # -- running --------------------------------------------------------------------------
    def on_start(self, nodeid: str) -> None:
        if nodeid in self.collector.items:
            self.recorder.start(nodeid)

    def on_report(self, report: TestResult, cfg: Config) -> None:
        """PerfSession listener: one gated test."""
        it = self.collector.items.get(report.nodeid)
        if it is not None and it.config == cfg:
            self.recorder.gated(it, report)

    def wants_outcome(self, nodeid: str) -> bool:
        return nodeid in self.collector.items and self.recorder.wants_outcome(nodeid)

    def on_outcome(self, nodeid: str, outcome: str, message: str) -> None:
        """A sweep test ``failed`` or was ``skipped`` (the first failure or skip counts)."""
        if self.wants_outcome(nodeid):
            self.recorder.outcome(nodeid, outcome, message)

    def on_finish(self, nodeid: str) -> str | None:
        """A sweep test finished: its progress line."""
        it = self.collector.items.get(nodeid)
        if it is None:
            return None
        name = it.point.id if len(self.plans) == 1 else f"{it.plan.name}:{it.point.id}"
        return self.recorder.finish(it, nodeid, name)

    # -- end of session -------------------------------------------------------------------
    @property
    def write_errors(self) -> list[str]:
        return self.recorder.write_errors

    def finish_session(self) -> list[str]:
        """The lines of the session's end: notices, results written, rankings, failures."""
        lines = list(self.collector.notices)
        ran = [plan for plan in self.plans.values() if plan.records]
        o = self.options
        if o.results is not None and self.recorder.appended:
            n = self.recorder.appended
            lines.append(f"sweep results: {n} record(s) appended to {o.results}")
        if o.phase == "explore" and o.ranking is not None and ran:
            if len(ran) > 1 and "{sweep}" not in o.ranking:
                lines.append(
                    f"ranking NOT written: sweeps {', '.join(p.name for p in ran)} ran; put "
                    "'{sweep}' in --perf-ranking to write one file per sweep"
                )
            else:
                for plan in ran:
                    shown, errors = self.phases.write_ranking(plan)
                    lines.extend(shown)
                    self.write_errors.extend(errors)
        if self.write_errors:
            lines.append(f"sweep output NOT written ({len(self.write_errors)} failure(s)):")
            lines.extend(f"  {e}" for e in self.write_errors[:10])
        return lines
