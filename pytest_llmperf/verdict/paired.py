"""Paired verdicts: is B slower than A, measured side by side in one session. Pure.

A reference configuration A and a candidate B (another build, model, launcher or load
params) are both loaded, several times each (**loads**, each a worker process of its own),
and the workload runs in **rounds**: a calibrated number of timed repetitions of each side
of one load pair, the order alternating (AB, BA, ...) so that neither side always runs
second. The rounds of a workload are spread over the load pairs, so the interval includes
the variance between loads (where the weights land in memory, up to several percent on a
small model), not only between repetitions (Kalibera & Jones). Machine drift hits both
sides of a round alike and cancels in the per-round ratio B/A. How the rounds are run
(loads, calibration, stopping, the session's budget) is :mod:`pytest_llmperf.session.pairs`;
this module holds the data and the rule.

**The rule per metric**, from the metric's paired threshold (the rule tiers' ``paired``
table, defaults in the metric registry, :attr:`MetricSpec.paired`):

- metrics measured per repetition: the per-round log ratios, their 20%-trimmed mean (the
  mean's efficiency on well-behaved rounds, the median's calm under a burst) and a
  hierarchical-bootstrap interval of it (:func:`pytest_llmperf.verdict.stats.paired_interval`;
  loads first, then rounds within them). With the change measured in the metric's bad
  direction: ``regressed`` when the interval lies wholly beyond no change and the change
  is beyond the threshold, the interval being narrower than the threshold each way (a
  wider one only when it lies wholly beyond the threshold: its centre is not to be trusted
  yet); ``pass`` when the interval excludes a regression as large as the threshold;
  ``improved``, the mirror image of regressed; ``inconclusive`` when the interval is too
  wide to say;
- metrics measured once per load (load time, memory; :attr:`MetricSpec.per`) are judged on
  loads, not rounds: in a ``load`` workload each round is a load (the rule above); in any
  other workload a deterministic one (memory) compares the two sides' medians over the
  loads against the threshold, and a timed one (load time) is shown, not gated (a few loads
  cannot resolve it: ``llm_perf.measure_load()`` judges it);
- a metric without a paired threshold is shown with its ratio, not gated.

**Deciding.** A gated metric is *decided* once its verdict is not inconclusive. A metric
that the rounds left at the cap could not decide is reported with the smallest change its
rounds resolve (``detectable_pct``), and a metric whose interval, shrunk to what the
remaining rounds could give, would still be too wide does not hold the run open
(:func:`hopeless`). Looks happen after a minimum of rounds and then at growing intervals;
each decision is one-sided (beyond the threshold? beyond no change?), so each bound is a
one-sided bound at level ``1 - alpha / looks`` (Bonferroni over the looks). Rounds during
which another process competed for the CPU (``Sample.contaminated``) are left out, and
counted in the reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_llmperf.model.metrics import METRICS, fmt_value, ordered_metrics
from pytest_llmperf.model.results import Measurement, MetricComparison, Verdict
from pytest_llmperf.verdict import stats
from pytest_llmperf.verdict.thresholds import GateRules, Threshold

#: the paired threshold ``--perf-paired-threshold`` replaces: the rates (t/s)
DEFAULT_THRESHOLD_PCT = 5.0
#: rounds of a workload before the first look, and at most
MIN_ROUNDS = 10
MAX_ROUNDS = 120
#: load pairs a workload's rounds start on, and at most
LOADS = 2
MAX_LOADS = 6
#: each side's share of a round lasts at least this long (seconds): a short workload is
#: repeated within the round until it does (see session/pairs.py)
ROUND_S = 0.08
#: repetitions of one side in one round, at most
MAX_REPETITIONS = 32
#: seconds a workload's rounds may take, unless the session's budget says less
MAX_SECONDS = 30.0
#: the widest log ratio an interval shows (e^50: no finite measurement is further)
LOG_RATIO_BOUND = 50.0
#: later looks come when the rounds have grown by this factor
LOOK_GROWTH = 1.5
#: a metric is given up on (not held open) when the rounds left would narrow its interval
#: to no less than this many times its threshold
HOPELESS = 1.5


@dataclass(frozen=True)
class Design:
    """How a paired comparison is run and judged."""

    min_rounds: int = MIN_ROUNDS
    max_rounds: int = MAX_ROUNDS
    loads: int = LOADS
    max_loads: int = MAX_LOADS
    #: load pairs kept loaded at once (memory); older ones are closed when more are started
    concurrent_loads: int = MAX_LOADS
    round_s: float = ROUND_S
    max_repetitions: int = MAX_REPETITIONS
    warmup: int = 1
    alpha: float = 0.05
    max_seconds: float = MAX_SECONDS

    def __post_init__(self) -> None:
        if not 2 <= self.min_rounds <= self.max_rounds:
            raise ValueError(
                f"paired design: rounds {self.min_rounds}..{self.max_rounds} (2 <= min <= max)"
            )
        if not 1 <= self.loads <= self.max_loads or self.concurrent_loads < 1:
            raise ValueError(
                f"paired design: loads {self.loads}..{self.max_loads} (1 <= first <= most), "
                f"{self.concurrent_loads} at once (>= 1)"
            )
        if not self.round_s >= 0 or self.max_repetitions < 1 or not self.max_seconds > 0:
            raise ValueError("paired design: round_s >= 0, max_repetitions >= 1, max_seconds > 0")

    def looks(self) -> list[int]:
        """The round counts at which the verdicts are looked at: the minimum, then each
        :data:`LOOK_GROWTH` times the last, and the maximum."""
        out = [self.min_rounds]
        while out[-1] < self.max_rounds:
            out.append(min(self.max_rounds, max(out[-1] + 1, math.ceil(out[-1] * LOOK_GROWTH))))
        return out


@dataclass
class Round:
    """One round on one load pair: metric -> value of each side (the median of the
    round's repetitions of that side)."""

    order: str
    a: dict[str, float]
    b: dict[str, float]
    contaminated: bool = False
    #: timed repetitions of each side in this round
    repetitions: int = 1


@dataclass
class PairedRuns:
    """The rounds of one workload, per load pair (``blocks[i]``: the rounds on the i-th
    load pair this workload ran on)."""

    workload: str
    blocks: list[list[Round]] = field(default_factory=list)
    #: each round is a load of its own (a ``load`` workload): loads are the rounds
    rounds_are_loads: bool = False
    #: the workload has a prompt (pp, pg, a streamed request)
    prompt: bool = True

    @property
    def rounds(self) -> list[Round]:
        return [r for b in self.blocks for r in b]

    def groups(self) -> list[list[Round]]:
        """What the bootstrap resamples first: the loads."""
        if self.rounds_are_loads:
            return [[r] for r in self.rounds]
        return [b for b in self.blocks if b]

    def log_ratios(self, metric: str) -> list[list[float]]:
        """Per load: log(B/A) of ``metric`` in each clean round."""
        out: list[list[float]] = []
        for group in self.groups():
            row = [
                math.log(r.b[metric] / r.a[metric])
                for r in group
                if not r.contaminated and r.a.get(metric, 0) > 0 and r.b.get(metric, 0) > 0
            ]
            if row:
                out.append(row)
        return out

    def per_load(self, metric: str) -> tuple[list[float], list[float]]:
        """A once-per-load metric's values of each side, one per load pair (its last clean
        round: a peak grows over a load's life)."""
        a: list[float] = []
        b: list[float] = []
        for block in self.blocks:
            clean = [r for r in block if not r.contaminated and metric in r.a and metric in r.b]
            if clean:
                a.append(clean[-1].a[metric])
                b.append(clean[-1].b[metric])
        return a, b

    def contaminated(self) -> int:
        return sum(r.contaminated for r in self.rounds)


def _pct(log_ratio: float) -> float:
    return math.expm1(log_ratio) * 100


def _bad_sign(metric: str) -> float:
    """+1 when a larger value is worse (times), -1 when smaller is (rates)."""
    spec = METRICS.get(metric)
    return 1.0 if spec is None or spec.better == "lower" else -1.0


def _limit(threshold: Threshold, reference: float | None, sign: float) -> float:
    """The threshold as a log ratio in the bad direction (its relative and absolute parts,
    the larger, at the reference's median)."""
    ref = abs(reference) if reference else 0.0
    rel = threshold.allowance(ref) / ref if ref else (threshold.rel_pct or 0.0) / 100
    rel = max(rel, 1e-9)
    return -math.log1p(-min(rel, 0.999)) if sign < 0 else math.log1p(rel)


def _median(values: Sequence[float]) -> float | None:
    return stats.median(values) if values else None


def _shown_only(c: MetricComparison, why: str) -> MetricComparison:
    c.reason = f"{why}; {c.reason}" if c.reason else why
    return c


def compare(
    runs: PairedRuns,
    rules: GateRules,
    design: Design,
    *,
    looks: int = 1,
    final: bool = True,
) -> list[MetricComparison]:
    """One comparison per metric measured on both sides, key metrics first. ``final``: no
    more rounds will come (an inconclusive verdict then says what the rounds resolved)."""
    rounds = runs.rounds
    metrics = set.intersection(*(set(r.a) & set(r.b) for r in rounds)) if rounds else set()
    level_alpha = design.alpha / max(looks, 1)
    dirty = runs.contaminated()
    out: list[MetricComparison] = []
    for metric in ordered_metrics(metrics):
        spec = METRICS.get(metric)
        threshold = rules.paired_threshold(metric)
        sign = _bad_sign(metric)
        clean = [r for r in rounds if not r.contaminated]
        a_med = _median([r.a[metric] for r in clean])
        b_med = _median([r.b[metric] for r in clean])
        comp = MetricComparison.of(
            metric,
            threshold.text() if threshold is not None else "",
            baseline_median=a_med,
            current_median=b_med,
        )
        per_load = spec is not None and spec.per == "load" and not runs.rounds_are_loads
        if threshold is not None and spec is not None and spec.prompt and not runs.prompt:
            threshold = None
            comp.threshold = ""
            comp.reason = "measures the prompt; this workload has none"
        if per_load:
            out.append(_per_load(comp, runs, threshold, spec is not None and spec.deterministic))
            continue
        blocks = runs.log_ratios(metric)
        n = sum(len(b) for b in blocks)
        comp.rounds = n
        if n < 2:
            comp.verdict = "inconclusive" if threshold is not None else "pass"
            comp.reason = (
                f"{n} clean round(s)"
                + (f" ({dirty} contaminated by other processes)" if dirty else "")
                + ": too few to compare"
            )
            out.append(comp)
            continue
        # each decision is one-sided (worse than the threshold? worse at all?): the
        # bounds are one-sided at level_alpha each, i.e. a 1 - 2 * level_alpha interval
        med, low, high = stats.paired_interval(blocks, 2 * level_alpha)
        # a percentile bootstrap of few rounds is too narrow (it knows the spread only
        # from the rounds themselves): widened by Student's t over the normal quantile
        widen = stats.small_sample_factor(n, level_alpha)
        low, high = med - (med - low) * widen, med + (high - med) * widen
        # a tiny --alpha over two rounds widens by 10^5: kept to ratios a float can hold
        low, high = max(low, -LOG_RATIO_BOUND), min(high, LOG_RATIO_BOUND)
        comp.change_pct = _pct(med)
        comp.ratio, comp.ratio_low, comp.ratio_high = math.exp(med), math.exp(low), math.exp(high)
        comp.detectable_pct = _pct((high - low) / 2)
        interval = (
            f"ratio B/A {comp.ratio:.3f} [{comp.ratio_low:.3f}, {comp.ratio_high:.3f}] "
            f"({1 - 2 * level_alpha:.1%} interval, {len(blocks)} load(s), {n} rounds"
            + (f"; {dirty} contaminated round(s) left out" if dirty else "")
            + ")"
        )
        if threshold is None:
            out.append(_shown_only(comp, f"not gated side by side; {interval}"))
            continue
        limit = _limit(threshold, a_med, sign)
        comp.threshold_pct = math.expm1(limit) * 100
        verdict, why = _rule(metric, med, low, high, limit)
        if verdict == "inconclusive" and final:
            seen = comp.detectable_pct
            why = (
                f"{why}; these rounds resolve changes beyond ±{seen:.1f}%, wider than "
                f"{threshold.text()}"
                if seen >= abs(comp.threshold_pct)
                else f"the change ({_pct(med):+.1f}%) lies too close to {threshold.text()} for "
                f"these rounds to tell (they resolve ±{seen:.1f}%)"
            )
        comp.verdict = verdict
        comp.reason = f"{why}; {interval}"
        out.append(comp)
    return out


def _rule(metric: str, med: float, low: float, high: float, limit: float) -> tuple[Verdict, str]:
    """The verdict of a log ratio's center and interval against a log limit."""
    sign = _bad_sign(metric)
    thr = f"{'+' if sign > 0 else '-'}{_pct(limit) if sign > 0 else -_pct(-limit):.3g}%"
    bad_med = sign * med
    bad_lo, bad_hi = sorted((sign * low, sign * high))
    # a centre beyond the threshold decides only when the rounds resolve the threshold
    # (the interval is narrower than it each way); a wider interval decides only when it
    # lies wholly beyond it (an interval of [-84%, -21%] against -45% is not a regression
    # of 45%, whatever its centre)
    resolved = (bad_hi - bad_lo) / 2 < limit
    if bad_lo > limit or (bad_lo > 0 and bad_med > limit and resolved):
        return "regressed", f"{_pct(med):+.1f}% is beyond {thr} and the interval excludes no change"
    if bad_hi < -limit or (bad_hi < 0 and -bad_med > limit and resolved):
        return "improved", f"{_pct(med):+.1f}% better than {thr}, the interval excludes no change"
    if bad_hi < limit:
        return "pass", f"the interval excludes a change of {thr}"
    return "inconclusive", f"the interval is too wide to tell a change of {thr} from none"


def _per_load(
    comp: MetricComparison, runs: PairedRuns, threshold: Threshold | None, deterministic: bool
) -> MetricComparison:
    """A metric measured once per load, in a workload whose rounds are not loads."""
    a, b = runs.per_load(comp.metric)
    comp.rounds = len(a)
    comp.baseline_median, comp.current_median = _median(a), _median(b)
    if not a or comp.baseline_median is None or comp.current_median is None:
        comp.reason = "not measured on both sides"
        return comp
    if comp.baseline_median > 0 and comp.current_median > 0:
        comp.ratio = comp.current_median / comp.baseline_median
        comp.change_pct = (comp.ratio - 1) * 100
    if threshold is None:
        return _shown_only(comp, f"not gated side by side ({len(a)} load(s) each)")
    if not deterministic:
        comp.threshold = ""
        return _shown_only(
            comp,
            f"measured once per load ({len(a)} load(s) each): too few to judge here; a load "
            "workload (llm_perf.measure_load()) judges it load by load",
        )
    worse = threshold.exceeded(comp.baseline_median, comp.current_median)
    better = threshold.improved(comp.baseline_median, comp.current_median)
    comp.verdict = "regressed" if worse else "improved" if better else "pass"
    comp.reason = (
        f"median of {len(a)} load(s) each: {fmt_value(comp.baseline_median, comp.unit)} -> "
        f"{fmt_value(comp.current_median, comp.unit)}, "
        + ("beyond " if worse or better else "within ")
        + f"{threshold.text()} (deterministic: compared directly)"
    )
    return comp


def rate_rules(pct: float) -> dict[str, Any]:
    """A rule source's mapping that sets the paired threshold of every rate (t/s) metric
    to ``pct`` (``--perf-paired-threshold``, ``llmperf ab --threshold``)."""
    return {
        "paired": {
            name: f"-{pct:g}%"
            for name, spec in METRICS.items()
            if spec.paired is not None and spec.unit == "t/s"
        }
    }


def design_for(max_rounds: int | None = None, **fields: Any) -> Design:
    """A Design with at most ``max_rounds`` rounds (the first look at that many when it
    is fewer than the usual minimum)."""
    if max_rounds is not None:
        fields.update(max_rounds=max_rounds, min_rounds=min(MIN_ROUNDS, max_rounds))
    return Design(**fields)


def decided(comparisons: Sequence[MetricComparison]) -> bool:
    """Every gated comparison has a verdict (none is inconclusive)."""
    return all(c.verdict != "inconclusive" for c in comparisons if c.threshold)


def hopeless(c: MetricComparison, rounds: int, max_rounds: int) -> bool:
    """An inconclusive metric that ``max_rounds`` rounds would still not decide: its
    interval, narrowed by the square root of the rounds, would still be :data:`HOPELESS`
    times as wide as the threshold (so it could not pass even if the true change were
    none), and would not clear it either (so it could not be called regressed)."""
    if c.verdict != "inconclusive" or c.ratio is None or c.ratio_low is None:
        return False
    if c.ratio_high is None or rounds <= 0 or max_rounds <= rounds:
        return True
    half = (math.log(c.ratio_high) - math.log(c.ratio_low)) / 2
    shrunk = half * math.sqrt(rounds / max_rounds)
    if c.threshold_pct is None:
        return False
    limit = math.log1p(c.threshold_pct / 100)
    center = abs(math.log(c.ratio))
    # a burst in the first rounds widens an interval far more than the rounds to come
    # will: only a projection well past the threshold gives up early
    return shrunk >= HOPELESS * limit and center - shrunk <= limit


def settled(comparisons: Sequence[MetricComparison], rounds: int, max_rounds: int) -> bool:
    """Every gated metric is decided, or more rounds would not decide it."""
    return all(
        c.verdict != "inconclusive" or hopeless(c, rounds, max_rounds)
        for c in comparisons
        if c.threshold
    )


@dataclass
class PairedResult:
    runs: PairedRuns
    comparisons: list[MetricComparison]
    #: every round's measurement of each side, pooled
    reference: Measurement
    candidate: Measurement
    seconds: float
    #: repetitions of each side per round (the calibration)
    repetitions: int = 1
    #: what stopped the rounds: "decided", "regressed", "hopeless", "cap", "deadline",
    #: "budget"
    stopped: str = "decided"
    #: facts of the two sides that differ though the test did not vary them
    unalike: list[str] = field(default_factory=list)
    #: per load pair, what each side's worker reported (mapped libraries, CPUs, ...)
    records: list[dict[str, Any]] = field(default_factory=list)


def summary_line(result: PairedResult, key: str = "tg_tps") -> str:
    """One line for progress output: the key metric's ratio and interval."""
    for c in result.comparisons:
        if c.metric == key and c.ratio is not None and c.ratio_low is not None:
            return (
                f"{key} B/A {c.ratio:.3f} [{c.ratio_low:.3f}, {c.ratio_high:.3f}] "
                f"{c.verdict} ({fmt_value(c.baseline_median)} -> {fmt_value(c.current_median)})"
            )
    return ""


def to_rows(result: PairedResult) -> list[dict[str, Any]]:
    """The rounds as plain rows (results.json, ``llmperf ab -o json``)."""
    return [
        {
            "load": bi,
            "order": r.order,
            "repetitions": r.repetitions,
            "contaminated": r.contaminated,
            "a": r.a,
            "b": r.b,
        }
        for bi, block in enumerate(result.runs.blocks)
        for r in block
    ]


def as_mapping(comps: Sequence[MetricComparison]) -> Mapping[str, MetricComparison]:
    return {c.metric: c for c in comps}
