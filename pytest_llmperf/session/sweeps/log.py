"""During the run: one result record per sweep test (appended to the results file) and
one progress line per finished test."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from pytest_llmperf.errors import LLMPerfError
from pytest_llmperf.model.metrics import METRICS
from pytest_llmperf.model.results import TestResult
from pytest_llmperf.session.sweeps.collect import SweepItem
from pytest_llmperf.sweep.options import SweepOptions
from pytest_llmperf.sweep.progress import ProgressLine, first_line
from pytest_llmperf.sweep.ranking import DEFAULT_METRIC, with_fallback
from pytest_llmperf.sweep.records import append_result


def _key_figure(report: TestResult, metrics: Sequence[str]) -> str:
    for metric in metrics:
        for m in report.measurements:
            value = m.median(metric)
            if value is not None:
                unit = METRICS[metric].unit if metric in METRICS else ""
                text = f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"
                return f"{metric} {text} {unit}".rstrip()
    return ""


class Recorder:
    """Result records and progress lines of the sweep tests that run."""

    def __init__(self, options: SweepOptions) -> None:
        self.options = options
        self.metrics = with_fallback(options.metric or DEFAULT_METRIC)
        self.total = 0
        self.done = 0
        self.durations: list[float] = []
        self.write_errors: list[str] = []
        #: records appended to the results file (``options.results``)
        self.appended = 0
        self._started: dict[str, float] = {}
        self._outcomes: dict[str, tuple[str, str]] = {}
        self._recorded: set[str] = set()
        self._figures: dict[str, str] = {}

    def _write(self, it: SweepItem, record: dict[str, Any]) -> None:
        it.plan.records.append(record)
        if self.options.results is None:
            return
        try:
            append_result(self.options.results, record)
        except (OSError, LLMPerfError) as exc:
            self.write_errors.append(f"{record['id']}: {exc}")
        else:
            self.appended += 1

    def _record(self, it: SweepItem, nodeid: str, **fields: Any) -> dict[str, Any]:
        point = it.point
        start = self._started.get(nodeid)
        duration = time.perf_counter() - start if start is not None else None
        record: dict[str, Any] = {
            "id": point.id,
            "sweep": it.plan.name,
            "phase": point.phase,
            "parent": point.parent,
            "nodeid": nodeid,
            "model": it.config.model,
            "fingerprint_key": None,
            "axes": dict(point.axes),
            "params": it.config.params.to_dict(),
            "workloads": [w.name for w in it.config.workloads],
            "repetitions": point.repetitions,
            "metrics": {},
            "verdict": None,
            "duration_s": None if duration is None else round(duration, 3),
            "error": None,
        }
        record.update(fields)
        return record

    def start(self, nodeid: str) -> None:
        self._started[nodeid] = time.perf_counter()

    def gated(self, it: SweepItem, report: TestResult) -> None:
        """The session gated the test: append its record."""
        metrics: dict[str, dict[str, float]] = {}
        for m in report.measurements:
            metrics[m.workload.name] = {k: s.median for k, s in sorted(m.summaries().items())}
        error = None
        if not report.measurements:
            error = "nothing measured (call llm_perf.measure_all() in the test)"
        record = self._record(
            it,
            report.nodeid,
            fingerprint_key=report.baseline_key or None,
            metrics=metrics,
            verdict=report.verdict,
            error=error,
        )
        self._write(it, record)
        self._recorded.add(report.nodeid)
        figure = _key_figure(report, self.metrics)
        if report.verdict not in ("pass", "new"):
            figure = f"{figure}  {report.verdict}".strip()
        self._figures[report.nodeid] = figure

    def wants_outcome(self, nodeid: str) -> bool:
        """Whether an outcome of ``nodeid`` is still to be heard (the first counts)."""
        return nodeid not in self._outcomes

    def outcome(self, nodeid: str, outcome: str, message: str) -> None:
        if self.wants_outcome(nodeid):
            self._outcomes[nodeid] = (outcome, first_line(message))

    def finish(self, it: SweepItem, nodeid: str, name: str) -> str:
        """The test finished: write a record if the gate did not; the progress line."""
        outcome, message = self._outcomes.get(nodeid, ("passed", ""))
        if nodeid not in self._recorded:
            verdict = "skipped" if outcome == "skipped" else "error"
            error = message or ("not measured" if outcome == "passed" else outcome)
            self._write(it, self._record(it, nodeid, verdict=verdict, error=error))
            self._recorded.add(nodeid)
            figure = f"{outcome.upper()}: {message}" if message else outcome.upper()
        else:
            figure = self._figures.get(nodeid, "")
            if outcome == "failed" and "regressed" not in figure:
                figure = f"{figure}  FAILED".strip()
        start = self._started.get(nodeid)
        self.durations.append(time.perf_counter() - start if start is not None else 0.0)
        self.done += 1
        total = max(self.total, self.done)
        return ProgressLine(self.done, total, name, figure, list(self.durations)).render()
