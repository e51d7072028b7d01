"""A session's TestResults as the rows of the result tables (one per workload of a test),
what a reader sees first in a row (its rate, its headline change), and the verdicts
counted.

The terminal section, summary.md, report.html, the plots and the GitHub job summary read
their rows here, so a test reads the same everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from pytest_llmperf.model.metrics import KEY_METRICS, METRICS
from pytest_llmperf.model.results import Measurement, MetricComparison, TestResult, worst

#: the order in which verdicts are counted in summaries
VERDICT_ORDER: tuple[str, ...] = (
    "pass",
    "improved",
    "new",
    "inconclusive",
    "mismatch",
    "regressed",
    "error",
)


def short_name(nodeid: str) -> str:
    """``perf_tests/test_x.py::test_tg[tiny]`` -> ``test_tg[tiny]`` (a class is kept)."""
    _, sep, rest = nodeid.partition("::")
    return rest if sep else nodeid


def function_name(nodeid: str) -> str:
    """The test function of a node id, without its parameter id: ``test_tg``."""
    return short_name(nodeid).split("[", 1)[0]


@dataclass
class Row:
    """One line of the result tables: one workload of one test (or the whole test when it
    measured nothing, or its workload-independent "sla" comparisons)."""

    result: TestResult
    measurement: Measurement | None
    #: short test name (no file path)
    name: str
    #: workload label when the test measured several workloads, else ""
    workload: str
    comparisons: list[MetricComparison] = field(default_factory=list)
    verdict: str = "pass"

    @property
    def label(self) -> str:
        return f"{self.name} {self.workload}" if self.workload else self.name

    def comparison(self, metric: str) -> MetricComparison | None:
        for c in self.comparisons:
            if c.metric == metric:
                return c
        return None


def measurement_label(result: TestResult, m: Measurement) -> str:
    """The workload label of ``m`` inside ``result``: the workload name, with the params
    id when the test measured the same workload under several params."""
    same = [x for x in result.measurements if x.workload.name == m.workload.name]
    if len(same) > 1:
        return f"{m.params.short_id()} {m.workload.name}"
    return m.workload.name


def result_rows(result: TestResult) -> list[Row]:
    """The rows of one test: one per measurement (its comparisons, the worst of their
    verdicts), plus one for comparisons of no measured workload (limits, SLAs)."""
    name = short_name(result.nodeid)
    ms = result.measurements
    if not ms:
        return [Row(result, None, name, "", result.all_comparisons(), result.verdict)]
    if len(ms) == 1:
        return [Row(result, ms[0], name, "", result.all_comparisons(), result.verdict)]
    rows: list[Row] = []
    used: set[str] = set()
    for m in ms:
        comps = result.comparisons.get(m.workload.name, [])
        used.add(m.workload.name)
        if comps:
            verdict = worst([c.verdict for c in comps])
        elif result.verdict in ("new", "mismatch", "error"):
            verdict = result.verdict
        else:
            verdict = "pass"
        rows.append(Row(result, m, name, measurement_label(result, m), list(comps), verdict))
    rest = [c for key, comps in result.comparisons.items() if key not in used for c in comps]
    if rest:
        keys = [k for k in result.comparisons if k not in used]
        rows.append(Row(result, None, name, "/".join(keys), rest, worst([c.verdict for c in rest])))
    return rows


def all_rows(results: Sequence[TestResult]) -> list[Row]:
    return [row for r in results for row in result_rows(r)]


def gated(comps: Sequence[MetricComparison]) -> list[MetricComparison]:
    """The comparisons that decide a verdict: a change was computed, the metric is not
    informational and its rule did not leave it ungated."""
    return [
        c
        for c in comps
        if c.change_pct is not None
        and not (c.metric in METRICS and METRICS[c.metric].informational)
        and not (c.reason or "").startswith("not gated")
        and not math.isnan(c.change_pct)
    ]


#: verdicts nothing was compared for: "decided" does not apply
NOT_COMPARED = ("new", "error", "mismatch")


def decision(result: TestResult) -> tuple[bool | None, float | None]:
    """Whether a test was decided (no gated metric inconclusive; None where nothing was
    compared: new, mismatch, error) and, when it was not, the smallest change it could
    see: the largest ``detectable_pct`` of its undecided metrics (None if unknown)."""
    comps = result.all_comparisons()
    if not comps or result.verdict in NOT_COMPARED:
        return None, None
    undecided = [c for c in comps if c.verdict == "inconclusive" and c.threshold]
    seen = [c.detectable_pct for c in undecided if c.detectable_pct is not None]
    return not undecided, max(seen) if seen else None


def headline_change(comps: Sequence[MetricComparison]) -> MetricComparison | None:
    """The change a reader should see first: the largest-magnitude change among regressed
    metrics, else among all gated (non-informational) metrics."""
    pool = gated(comps)
    if not pool:
        return None
    regressed = [c for c in pool if c.verdict == "regressed"]
    notable = [c for c in pool if c.verdict in ("improved", "inconclusive")]
    if regressed:  # name the headline metric people read first (tg_tps before itl_p99_ms)
        key = [c for c in regressed if c.metric in KEY_METRICS]
        if key:
            return min(key, key=lambda c: KEY_METRICS.index(c.metric))
    return max(regressed or notable or pool, key=lambda c: abs(c.change_pct or 0.0))


def headline_median(m: Measurement, metric: str) -> float | None:
    """The median of ``metric``, or of its ``stream_*`` counterpart for a streamed
    request (whose metrics are named apart from the engine's)."""
    if m.workload.kind == "stream":
        spec = METRICS.get(metric)
        metric = spec.stream if spec is not None and spec.stream else metric
    return m.median(metric)


def headline_rate(m: Measurement) -> float | None:
    """t/s of a table row: tg (pp for prompt-only workloads; the stream's for streamed)."""
    if m.workload.kind == "stream":
        return m.median("stream_tps")
    return m.median("tg_tps") if m.values.get("tg_tps") else m.median("pp_tps")


def verdict_counts(results: Sequence[TestResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    order = {v: i for i, v in enumerate(VERDICT_ORDER)}
    return dict(sorted(counts.items(), key=lambda kv: order.get(kv[0], 99)))


def counts_text(results: Sequence[TestResult]) -> str:
    """``3 tests: 2 pass, 1 regressed`` (``no performance tests`` for none)."""
    counts = verdict_counts(results)
    n = len(results)
    detail = ", ".join(f"{c} {v}" for v, c in counts.items())
    return f"{n} test{'s' if n != 1 else ''}: {detail}" if n else "no performance tests"


# -- the baseline run's rows -------------------------------------------------------------

BaselineIndex = dict[tuple[str, str], Measurement]


def baseline_index(baseline_results: Sequence[TestResult] | None) -> BaselineIndex:
    """(nodeid, workload label) -> the baseline run's measurement."""
    out: BaselineIndex = {}
    for r in baseline_results or []:
        for m in r.measurements:
            out[(r.nodeid, measurement_label(r, m))] = m
    return out


def baseline_for(index: BaselineIndex, result: TestResult, m: Measurement) -> Measurement | None:
    return index.get((result.nodeid, measurement_label(result, m)))
