"""Paired verdicts: is B slower than A, measured side by side in one session.

A reference configuration A and a candidate B (another build, model, launcher or load
params) are both loaded, each in its own worker. The workload runs in **rounds**: one
timed repetition of each side, in alternating order (AB, BA, AB, ... so that neither side
always runs second), after a warm-up of both. Rounds come in **blocks**: each block starts
both workers afresh, so the interval includes the variance between loads (where the
weights land in memory), not only between repetitions (Kalibera & Jones). Machine drift
hits both sides of a round alike and cancels in the per-round ratio B/A.

**The verdict per metric** comes from the per-round log ratios: their median, and a
hierarchical-bootstrap interval (:func:`pytest_llmperf.verdict.stats.paired_interval`; chosen
over a Wilcoxon signed-rank interval because rounds of one block are not independent:
the bootstrap resamples blocks first). With the change measured in the metric's bad
direction:

- ``regressed``: the interval lies wholly beyond no change, and the median change is
  beyond the threshold (default 5%);
- ``pass``: the interval excludes a regression as large as the threshold;
- ``improved``: the mirror image of regressed;
- ``inconclusive``: the interval is too wide to say.

**Sequential design.** After each block from the second on, the verdicts are looked at;
the run stops as soon as every gated metric is clear (not inconclusive), or at the cap of
blocks or time. Looking up to k times would inflate the error rate, so each look uses
the interval at level ``1 - alpha / k`` (Bonferroni). Rounds during which another process
competed for the CPU (``Sample.contaminated``) are left out, and counted in the reason.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pytest_llmperf.model.metrics import METRICS, fmt_value, ordered_metrics
from pytest_llmperf.model.results import Measurement, MetricComparison, Verdict
from pytest_llmperf.model.workloads import Workload
from pytest_llmperf.verdict import stats
from pytest_llmperf.verdict.thresholds import GateRules

#: the paired mode's default threshold (percent): paired ratios resolve ~1-2% on a noisy
#: 2-core machine, so 5% is a change they can confirm in a few blocks
DEFAULT_THRESHOLD_PCT = 5.0
DEFAULT_ROUNDS = 5
MIN_BLOCKS = 2
MAX_BLOCKS = 6
DEFAULT_DEADLINE_S = 60.0


@dataclass(frozen=True)
class Design:
    """How a paired comparison is run and judged."""

    rounds: int = DEFAULT_ROUNDS
    min_blocks: int = MIN_BLOCKS
    max_blocks: int = MAX_BLOCKS
    warmup: int = 1
    threshold_pct: float = DEFAULT_THRESHOLD_PCT
    alpha: float = 0.05
    #: stop starting new blocks after this many seconds
    deadline_s: float = DEFAULT_DEADLINE_S

    def __post_init__(self) -> None:
        if self.rounds < 2 or self.min_blocks < 1 or self.max_blocks < self.min_blocks:
            raise ValueError(
                f"paired design: rounds={self.rounds} (>= 2), blocks {self.min_blocks}.."
                f"{self.max_blocks} (1 <= min <= max)"
            )


@dataclass
class Round:
    """One timed repetition of each side: metric -> value."""

    order: str
    a: dict[str, float]
    b: dict[str, float]
    contaminated: bool = False


@dataclass
class PairedRuns:
    """The rounds of one workload, per block (one load of both sides)."""

    workload: str
    blocks: list[list[Round]] = field(default_factory=list)

    @property
    def rounds(self) -> list[Round]:
        return [r for b in self.blocks for r in b]

    def log_ratios(self, metric: str) -> list[list[float]]:
        """Per block: log(B/A) of ``metric`` in each clean round."""
        out: list[list[float]] = []
        for block in self.blocks:
            row = [
                math.log(r.b[metric] / r.a[metric])
                for r in block
                if not r.contaminated and r.a.get(metric, 0) > 0 and r.b.get(metric, 0) > 0
            ]
            if row:
                out.append(row)
        return out

    def contaminated(self) -> int:
        return sum(r.contaminated for r in self.rounds)


def _bad(metric: str) -> float:
    """+1 when a larger value is worse (times), -1 when smaller is (rates)."""
    return 1.0 if METRICS.get(metric) is None or METRICS[metric].better == "lower" else -1.0


def _pct(log_ratio: float) -> float:
    return math.expm1(log_ratio) * 100


def compare(
    runs: PairedRuns,
    rules: GateRules,
    design: Design,
    *,
    looks: int = 1,
) -> list[MetricComparison]:
    """One comparison per metric measured on both sides, key metrics first."""
    metrics = (
        set.intersection(*(set(r.a) & set(r.b) for r in runs.rounds)) if runs.rounds else set()
    )
    level_alpha = design.alpha / max(looks, 1)
    dirty = runs.contaminated()
    out: list[MetricComparison] = []
    for metric in ordered_metrics(metrics):
        gated = rules.threshold(metric) is not None
        blocks = runs.log_ratios(metric)
        a_vals = [r.a[metric] for r in runs.rounds if not r.contaminated]
        b_vals = [r.b[metric] for r in runs.rounds if not r.contaminated]
        sign = _bad(metric)
        thr = design.threshold_pct
        thr_text = f"{'+' if sign > 0 else '-'}{thr:g}%"
        comp = MetricComparison.of(
            metric,
            thr_text if gated else "",
            baseline_median=stats.median(a_vals) if a_vals else None,
            current_median=stats.median(b_vals) if b_vals else None,
        )
        n = sum(len(b) for b in blocks)
        comp.rounds = n
        if n < 2:
            comp.verdict = "inconclusive" if gated else "pass"
            comp.reason = (
                f"{n} clean round(s)"
                + (f" ({dirty} contaminated by other processes)" if dirty else "")
                + ": too few to compare"
            )
            out.append(comp)
            continue
        med, low, high = stats.paired_interval(blocks, level_alpha)
        comp.change_pct = _pct(med)
        comp.ratio, comp.ratio_low, comp.ratio_high = math.exp(med), math.exp(low), math.exp(high)
        interval = (
            f"ratio B/A {comp.ratio:.3f} [{comp.ratio_low:.3f}, {comp.ratio_high:.3f}] "
            f"({1 - level_alpha:.1%} interval, {len(blocks)} load(s) x rounds, {n} rounds"
            + (f"; {dirty} contaminated round(s) left out" if dirty else "")
            + ")"
        )
        if not gated:
            comp.reason = f"not gated; {interval}"
            out.append(comp)
            continue
        # the change in the bad direction, as log ratios
        bad_med, bad_lo, bad_hi = (
            sign * med,
            min(sign * low, sign * high),
            max(sign * low, sign * high),
        )
        limit = -math.log1p(-thr / 100) if sign < 0 else math.log1p(thr / 100)
        verdict: Verdict
        if bad_lo > 0 and bad_med > limit:
            verdict, why = (
                "regressed",
                f"{_pct(med):+.1f}% is beyond {thr_text} and the interval excludes no change",
            )
        elif bad_hi < 0 and -bad_med > limit:
            verdict, why = (
                "improved",
                f"{_pct(med):+.1f}% better than {thr_text}, the interval excludes no change",
            )
        elif bad_hi < limit:
            verdict, why = "pass", f"the interval excludes a change of {thr_text}"
        else:
            verdict, why = (
                "inconclusive",
                (
                    f"the interval is too wide to tell a change of {thr_text} from none: more "
                    "rounds or loads (a quieter machine) would tell"
                ),
            )
        comp.verdict = verdict
        comp.reason = f"{why}; {interval}"
        out.append(comp)
    return out


def clear(comparisons: Sequence[MetricComparison]) -> bool:
    """Every gated comparison has a verdict (none is inconclusive)."""
    return all(c.verdict != "inconclusive" for c in comparisons if c.threshold)


class _Runner(Protocol):
    def measure(self, workload: Workload, repetitions: int = 3, warmup: int = 1) -> Measurement: ...

    def close(self) -> None: ...


def _round_values(m: Measurement) -> dict[str, float]:
    return {k: float(v[0]) for k, v in m.values.items() if v}


@dataclass
class PairedResult:
    runs: PairedRuns
    comparisons: list[MetricComparison]
    #: every round's measurement of each side, pooled
    reference: Measurement
    candidate: Measurement
    seconds: float


def run(
    start_a: Callable[[], _Runner],
    start_b: Callable[[], _Runner],
    workload: Workload,
    rules: GateRules,
    design: Design = Design(),
    *,
    clock: Callable[[], float] = time.monotonic,
) -> PairedResult:
    """Run ``workload`` on both sides in blocks of alternating rounds until the verdicts
    are clear or the cap is reached (see the module docstring)."""
    t0 = clock()
    runs = PairedRuns(workload.name)
    measured: dict[str, list[Measurement]] = {"a": [], "b": []}
    comps: list[MetricComparison] = []
    for block_no in range(design.max_blocks):
        # both sides start afresh each block, first one then the other in turn
        first, second = ("a", "b") if block_no % 2 == 0 else ("b", "a")
        starts = {"a": start_a, "b": start_b}
        runners: dict[str, _Runner] = {}
        runners[first] = starts[first]()
        runners[second] = starts[second]()
        try:
            for side in ("a", "b"):  # warm-up, untimed
                if design.warmup:
                    runners[side].measure(workload, 1, design.warmup - 1)
            block: list[Round] = []
            for i in range(design.rounds):
                order = "ab" if (i + block_no) % 2 == 0 else "ba"
                got: dict[str, Measurement] = {}
                for side in order:
                    got[side] = runners[side].measure(workload, 1, 0)
                    measured[side].append(got[side])
                dirty = any(s.contaminated for m in got.values() for s in m.samples)
                block.append(
                    Round(order.upper(), _round_values(got["a"]), _round_values(got["b"]), dirty)
                )
            runs.blocks.append(block)
        finally:
            for r in runners.values():
                try:
                    r.close()
                except Exception:  # a dead worker: nothing to close
                    pass
        done = block_no + 1
        if done >= design.min_blocks:
            comps = compare(runs, rules, design, looks=design.max_blocks - design.min_blocks + 1)
            if clear(comps) or clock() - t0 > design.deadline_s:
                break
    return PairedResult(runs, comps, _pooled(measured["a"]), _pooled(measured["b"]), clock() - t0)


def _pooled(ms: Sequence[Measurement]) -> Measurement:
    """One Measurement of every round of a side: each round a repetition."""
    first = ms[0]
    values: dict[str, list[float]] = {}
    for m in ms:
        for k, v in m.values.items():
            values.setdefault(k, []).extend(v)
    return Measurement(
        model=first.model,
        model_path=first.model_path,
        params=first.params,
        workload=first.workload,
        samples=[s for m in ms for s in m.samples],
        values=values,
        absent=dict(first.absent),
        resolved=dict(first.resolved),
        fingerprint=dict(first.fingerprint),
        started_at=first.started_at,
        repetitions=len(ms),
        warmup=first.warmup,
    )


def summary_line(result: PairedResult, key: str = "tg_tps") -> str:
    """One line for progress output: the key metric's ratio and interval."""
    for c in result.comparisons:
        if c.metric == key and c.ratio is not None:
            return (
                f"{key} B/A {c.ratio:.3f} [{c.ratio_low:.3f}, {c.ratio_high:.3f}] "
                f"{c.verdict} ({fmt_value(c.baseline_median)} -> {fmt_value(c.current_median)})"
            )
    return ""


def to_rows(result: PairedResult) -> list[dict[str, Any]]:
    """The rounds as plain rows (results.json, ``llmperf ab -o json``)."""
    return [
        {"block": bi, "order": r.order, "contaminated": r.contaminated, "a": r.a, "b": r.b}
        for bi, block in enumerate(result.runs.blocks)
        for r in block
    ]


def as_mapping(comps: Sequence[MetricComparison]) -> Mapping[str, MetricComparison]:
    return {c.metric: c for c in comps}
