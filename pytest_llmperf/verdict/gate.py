"""The noise-aware gate: thresholds + statistics -> one verdict per metric. Pure.

The rule, for a gated metric that varies run to run (times, rates):

1. **Threshold.** The change of the median (current vs baseline) must go beyond the
   metric's allowance (:class:`~pytest_llmperf.verdict.thresholds.Threshold`: the larger of
   ``rel_pct`` of the baseline median and ``abs``). Within it: ``pass``.
2. **Enough samples.** Fewer than ``min_samples`` (default 3) on either side: a change
   beyond the threshold is ``inconclusive`` (never a coin flip); an improvement is a pass.
3. **Evidence.** One-sided Mann-Whitney U on the raw per-repetition values, alternative
   in the direction of the change (scipy, ``method="exact"`` up to 10,000 sample pairs,
   the normal approximation beyond), with ``p <= alpha``. With 3 vs 3 cleanly separated samples the
   exact one-sided p is 1/20 = 0.05, so the default ``alpha=0.05`` can detect a change
   from 3 repetitions (hence ``<=``).
4. **Bootstrap (on by default, ``bootstrap=False`` turns it off).** A percentile
   bootstrap of the ratio of medians current/baseline (numpy, fixed seed, so the verdict
   is deterministic) whose one-sided ``1 - alpha`` bound must exclude 1. This rejects a
   "significant" rank shift carried by a minority of the samples when the medians do
   not separate.

All of 1-4 in the bad direction: ``regressed``. A change beyond the threshold that
fails 3 or 4: ``inconclusive`` (shown, never failing; more repetitions would tell). All
of 1-4 in the good direction: ``improved`` (a pass unless the caller fails improvements,
``--perf-fail-on-improvement``); an improvement without the evidence: ``pass``.

Deterministic metrics (``METRICS[m].deterministic``: memory, sizes) are compared by
median alone: beyond the threshold is ``regressed`` / ``improved`` without a test.

Metrics without an active threshold (informational ones, or turned off) are compared
and shown with verdict ``pass`` and reason ``not gated``.

Absent metrics (``Measurement.absent``, or simply not measured on one side): a gated
metric present in the baseline but absent now is ``inconclusive`` (the gate could not
check it; the reason says why); every other case (not gated, or new now and absent from
the baseline) is ``pass`` with a reason starting ``absent``. Absence never fails a test.

No baseline: every metric is ``new``. Absolute limits and ratio SLAs
(:func:`check_limits`) do not need a baseline: ``regressed`` when violated.

The re-measure-once rule belongs to the caller: when :func:`needs_remeasure` is true it
runs the workloads again and calls :func:`compare_measurement` anew.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pytest_llmperf.model.metrics import METRICS, fmt_value, ordered_metrics
from pytest_llmperf.model.results import (
    SLA_KEY,
    BaselineValues,
    Measurement,
    MetricComparison,
    Verdict,
)
from pytest_llmperf.verdict import stats
from pytest_llmperf.verdict.thresholds import GateRules, Limit, Operand, RatioSLA, Threshold

# -- per-metric comparison --------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=float)))


def _change_pct(baseline: float, current: float) -> float | None:
    if baseline == 0:
        return None if current != 0 else 0.0
    return (current - baseline) / abs(baseline) * 100.0


def _pct(change: float | None) -> str:
    return "n/a" if change is None else f"{change:+.1f}%"


def _text(threshold: Threshold | None) -> str:
    return threshold.text() if threshold is not None else ""


@dataclass(frozen=True)
class Drift:
    """What a baseline's history says about one metric on this machine."""

    sessions: int
    #: the bad-direction change an unchanged session stays within (percent), None when
    #: the history is too short to say
    allowance_pct: float | None
    #: the same bound, symmetric on the log scale, for messages ("drifts +-14%")
    spread_pct: float | None
    #: the smallest regression this gate can detect here (percent)
    detectable_pct: float | None

    def text(self) -> str:
        if self.spread_pct is None:
            return (
                f"{self.sessions} accepted session(s): this machine's drift between sessions "
                f"is unknown until {stats.MIN_SESSIONS} are recorded"
            )
        return (
            f"this machine drifts ±{self.spread_pct:.0f}% between sessions "
            f"({self.sessions} sessions)"
        )


def history_drift(
    metric: str,
    sessions: Sequence[Sequence[float]],
    n_current: int,
    threshold: Threshold | None,
    alpha: float = 0.05,
) -> Drift:
    """The drift of ``metric`` across accepted ``sessions`` (oldest first) and the
    smallest change the gate can then detect with ``n_current`` new samples."""
    medians = [_median(v) for v in sessions if len(v)]
    bound = stats.drift_allowance(medians)
    better = METRICS[metric].better if metric in METRICS else "lower"
    allowance = spread = None
    if bound is not None:
        spread = bound * 100
        allowance = (1 - 1 / (1 + bound)) * 100 if better == "higher" else bound * 100
    pooled = [x for v in sessions for x in v]
    cvs = [stats.robust_cv(v) for v in sessions if len(v) > 1]
    within = (
        stats.within_detectable(_median(cvs) if cvs else 0.0, n_current, len(pooled), alpha) * 100
    )
    parts = [within] + ([allowance] if allowance is not None else [])
    if threshold is not None and threshold.rel_pct is not None:
        parts.append(threshold.rel_pct)
    return Drift(len(medians), allowance, spread, max(parts))


def _widened(threshold: Threshold, drift: Drift | None) -> Threshold:
    if drift is None or drift.allowance_pct is None:
        return threshold
    rel = max(threshold.rel_pct or 0.0, drift.allowance_pct)
    return Threshold(threshold.metric, rel_pct=rel, abs=threshold.abs, source=threshold.source)


def compare_metric(
    metric: str,
    current: Sequence[float],
    baseline: Sequence[float],
    threshold: Threshold | None,
    *,
    alpha: float = 0.05,
    min_samples: int = 3,
    fail_on_improvement: bool = False,
    bootstrap: bool = True,
    sessions: Sequence[Sequence[float]] | None = None,
) -> MetricComparison:
    """Compare one metric's raw values; see the module docstring for the rule.

    ``sessions``: the baseline's accepted sessions (oldest first), when it keeps a
    history; ``baseline`` is then their pooled values, the reference value is the centre
    of the session medians, and the allowance widens to what the machine drifts.
    """
    history = [list(v) for v in sessions or () if len(v)]
    bm = stats.center([_median(v) for v in history]) if len(history) >= 2 else _median(baseline)
    cm = _median(current)
    change = _change_pct(bm, cm)
    out = MetricComparison.of(
        metric, _text(threshold), baseline_median=bm, current_median=cm, change_pct=change
    )
    if threshold is None:
        out.reason = "not gated"
        return out
    drift = (
        history_drift(metric, history, len(current), threshold, alpha)
        if len(history) >= 2
        else None
    )
    out.threshold_pct = threshold.rel_pct
    if drift is not None:
        out.sessions = drift.sessions
        out.drift_pct = drift.spread_pct
        out.detectable_pct = drift.detectable_pct
    gate_thr = _widened(threshold, drift)
    worse = threshold.exceeded(bm, cm)
    better = threshold.improved(bm, cm)
    thr = threshold.text()
    if gate_thr is not threshold:
        out.allowance = gate_thr.text()
    if not worse and not better:
        out.reason = f"within {thr}" + (f"; {drift.text()}" if drift is not None else "")
        return out
    if (
        drift is not None
        and (worse or better)
        and not (gate_thr.exceeded(bm, cm) or gate_thr.improved(bm, cm))
    ):
        if worse:
            out.verdict = "inconclusive"
            out.reason = (
                f"{_pct(change)} is beyond the threshold {thr}, but {drift.text()}: gating "
                f"at {gate_thr.text()}, a change this size cannot be told from drift "
                "(more accepted sessions, a paired reference run or a quieter machine would "
                "tell)"
            )
        else:
            out.reason = f"{_pct(change)} better than {thr}, within {drift.text()}"
        return out
    if gate_thr is not threshold:
        thr = f"{gate_thr.text()} (threshold {threshold.text()}; {drift.text() if drift else ''})"
    mdef = METRICS.get(metric)
    improvement_note = (
        ": fails with --perf-fail-on-improvement; refresh with --perf-accept"
        if fail_on_improvement
        else ""
    )
    if mdef is not None and mdef.deterministic:
        out.verdict = "regressed" if worse else "improved"
        what = "worse" if worse else "better"
        out.reason = (
            f"{_pct(change)} is {what} than {thr} allows (deterministic metric: "
            f"compared by median, no test){improvement_note if better else ''}"
        )
        return out
    n_b, n_c = len(baseline), len(current)
    if history and n_b != sum(len(v) for v in history):
        baseline = [x for v in history for x in v]
        n_b = len(baseline)
    if min(n_b, n_c) < min_samples:
        if worse:
            out.verdict = "inconclusive"
            out.reason = (
                f"{_pct(change)} is beyond {thr}, but only {n_b} baseline / {n_c} "
                f"current samples (need >= {min_samples} each to decide): raise the "
                "repetitions"
            )
        else:
            out.reason = (
                f"{_pct(change)} better than {thr}, but too few samples "
                f"({n_b} / {n_c}) to call it an improvement"
            )
        return out
    # the direction in which current differs from baseline
    alternative: stats.Direction = "greater" if cm > bm else "less"
    p = stats.mann_whitney_p(current, baseline, alternative)
    out.p_value = p
    significant = p <= alpha
    ci_note = ""
    if significant and bootstrap:
        low, high, excludes = stats.bootstrap_ratio_bound(current, baseline, alternative, alpha)
        ci_note = f"; median ratio {1 - 2 * alpha:.0%} CI [{low:.3g}, {high:.3g}]"
        significant = excludes
        if not excludes:
            ci_note += " includes 1"
    if worse:
        if significant:
            out.verdict = "regressed"
            out.reason = (
                f"{_pct(change)} is beyond {thr} and the samples separate "
                f"(Mann-Whitney p={p:.3g} <= {alpha:g}){ci_note}"
            )
        else:
            out.verdict = "inconclusive"
            why = f"p={p:.3g} > {alpha:g}" if p > alpha else f"p={p:.3g}{ci_note}"
            out.reason = (
                f"{_pct(change)} is beyond {thr}, but the samples overlap ({why}): "
                "likely noise; more repetitions would tell"
            )
        return out
    if significant:
        out.verdict = "improved"
        out.reason = (
            f"{_pct(change)} better than {thr} and the samples separate "
            f"(p={p:.3g}){ci_note}{improvement_note}"
        )
    else:
        out.reason = f"{_pct(change)} better than {thr}, not significant (p={p:.3g})"
    return out


def _absent_reason(m: Measurement | BaselineValues | None, metric: str, side: str) -> str:
    if m is not None and metric in m.absent:
        return f"absent {side}: {m.absent[metric]}"
    return f"absent {side}: not measured"


def compare_measurement(
    current: Measurement,
    baseline: Measurement | BaselineValues | None,
    config: GateRules,
    *,
    alpha: float = 0.05,
    min_samples: int = 3,
    fail_on_improvement: bool = False,
    bootstrap: bool = True,
) -> list[MetricComparison]:
    """One comparison per metric of ``current`` (and of ``baseline``), key metrics first.

    ``baseline`` None: every metric is ``new``; a :class:`BaselineValues` with several
    accepted sessions gates with the history's drift (:func:`compare_metric`). See the
    module docstring for the rule and for absent metrics.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r} must be between 0 and 1")
    cur_vals = {k: v for k, v in current.values.items() if v}
    if baseline is None:
        out: list[MetricComparison] = []
        for metric in ordered_metrics(cur_vals):
            threshold = config.threshold(metric)
            out.append(
                MetricComparison.of(
                    metric,
                    _text(threshold),
                    "new",
                    current_median=_median(cur_vals[metric]),
                    reason="no baseline",
                )
            )
        return out
    ref = baseline if isinstance(baseline, BaselineValues) else BaselineValues.of(baseline)
    base_vals = ref.pooled()
    names = set(cur_vals) | set(base_vals)
    out = []
    for metric in ordered_metrics(names):
        threshold = config.threshold(metric)
        if metric in cur_vals and metric in base_vals:
            out.append(
                compare_metric(
                    metric,
                    cur_vals[metric],
                    base_vals[metric],
                    threshold,
                    alpha=alpha,
                    min_samples=min_samples,
                    fail_on_improvement=fail_on_improvement,
                    bootstrap=bootstrap,
                    sessions=ref.per_session(metric),
                )
            )
            continue
        comp = MetricComparison.of(
            metric,
            _text(threshold),
            baseline_median=_median(base_vals[metric]) if metric in base_vals else None,
            current_median=_median(cur_vals[metric]) if metric in cur_vals else None,
        )
        if metric in base_vals:  # absent now
            comp.reason = _absent_reason(current, metric, "now")
            if threshold is not None:
                comp.verdict = "inconclusive"
                comp.reason += " (gated metric not checked)"
        else:  # absent from the baseline
            comp.reason = _absent_reason(ref, metric, "in baseline")
            if threshold is not None:
                comp.reason += " (re-accept to gate it)"
        out.append(comp)
    return out


# -- absolute limits and ratio SLAs ------------------------------------------------------


def _limit_comparison(
    name: str,
    unit: str,
    upper: bool,
    value: float | None,
    bound: str,
    verdict: Verdict,
    reason: str,
) -> MetricComparison:
    return MetricComparison(
        metric=name,
        unit=unit,
        better="lower" if upper else "higher",
        baseline_median=None,
        current_median=value,
        change_pct=None,
        threshold=bound,
        verdict=verdict,
        reason=reason,
    )


def _check_limit(lim: Limit, by_wl: Mapping[str, Measurement]) -> list[MetricComparison]:
    metric = lim.operand.metric
    unit = METRICS[metric].unit if metric in METRICS else ""
    upper = lim.op in ("<", "<=")
    targets = [lim.operand.workload] if lim.operand.workload else list(by_wl)
    out: list[MetricComparison] = []
    for wl in targets:
        if wl is None or wl not in by_wl:
            continue  # a workload this test does not measure: the rule is not for it
        m = by_wl[wl]
        name = Operand(metric, wl).text()
        value = m.median(metric)
        if value is None:
            if metric in m.absent or lim.operand.workload:
                out.append(
                    _limit_comparison(
                        name,
                        unit,
                        upper,
                        None,
                        lim.bound_text(),
                        "pass",
                        _absent_reason(m, metric, "now") + ": limit not checked",
                    )
                )
            continue
        ok = lim.holds(value)
        out.append(
            _limit_comparison(
                name,
                unit,
                upper,
                value,
                lim.bound_text(),
                "pass" if ok else "regressed",
                f"median {fmt_value(value, unit)} {'is' if ok else 'is not'} {lim.bound_text()}"
                + (f" (limit from {lim.source})" if lim.source and not ok else ""),
            )
        )
    return out


def _sla_pairs(
    sla: RatioSLA, by_wl: Mapping[str, Measurement]
) -> list[tuple[str | None, str | None]]:
    a, b = sla.numerator.workload, sla.denominator.workload
    if a is None and b is None:
        return [(wl, wl) for wl in by_wl]
    return [(a or b, b or a)]


def _ratio_interval(
    num: Sequence[float], den: Sequence[float], alpha: float
) -> tuple[float, float] | None:
    """The two-sided ``1 - 2 alpha`` bootstrap interval of median(num) / median(den), or
    None where it cannot be had (a single value each, a denominator not above 0)."""
    if len(num) + len(den) < 3 or min(den) <= 0 or min(num) < 0:
        return None
    low, high, _ = stats.bootstrap_ratio_bound(num, den, "greater", alpha)
    return low, high


def _check_sla(
    sla: RatioSLA, by_wl: Mapping[str, Measurement], alpha: float
) -> list[MetricComparison]:
    """A ratio SLA judged as the gate judges a change: violated only when the interval of
    the ratio (a bootstrap over both workloads' repetitions) lies wholly beyond the bound,
    inconclusive when it straddles the bound, met when it lies wholly within."""
    out: list[MetricComparison] = []
    upper = sla.op in ("<", "<=")
    for wa, wb in _sla_pairs(sla, by_wl):
        num = Operand(sla.numerator.metric, wa)
        den = Operand(sla.denominator.metric, wb)
        name = f"{num.text()}/{den.text()}"

        def result(value: float | None, verdict: Verdict, reason: str, name: str = name) -> None:
            out.append(
                _limit_comparison(name, "x", upper, value, sla.bound_text(), verdict, reason)
            )

        ma, mb = by_wl.get(wa or ""), by_wl.get(wb or "")
        if ma is None and mb is None:
            continue  # neither workload in this test
        if ma is None or mb is None:
            missing = wa if ma is None else wb
            result(None, "pass", f"not checked: workload {missing} not measured in this test")
            continue
        va, vb = ma.median(num.metric), mb.median(den.metric)
        if va is None or vb is None:
            if (
                sla.numerator.workload is None
                and sla.denominator.workload is None
                and num.metric not in ma.absent
                and den.metric not in mb.absent
            ):
                continue  # an unqualified rule on a workload without these metrics
            which, m = (num, ma) if va is None else (den, mb)
            result(None, "pass", _absent_reason(m, which.metric, "now") + ": SLA not checked")
            continue
        if vb == 0:
            result(None, "inconclusive", f"{den.text()} median is 0: the ratio is undefined")
            continue
        ratio = va / vb
        interval = _ratio_interval(ma.values[num.metric], mb.values[den.metric], alpha)
        low, high = interval or (ratio, ratio)
        ends = (sla.holds(low), sla.holds(high))
        verdict: Verdict = "pass" if all(ends) else "regressed" if not any(ends) else "inconclusive"
        shown = f"ratio {ratio:.3g}" + (f" [{low:.3g}, {high:.3g}]" if interval else "")
        said = {
            "pass": f"is {sla.bound_text()}",
            "regressed": f"is not {sla.bound_text()}",
            "inconclusive": f"straddles {sla.bound_text()}: more repetitions would tell",
        }[verdict]
        result(
            ratio,
            verdict,
            f"{shown} ({fmt_value(va)} / {fmt_value(vb)}) {said}"
            + (f" (SLA from {sla.source})" if sla.source and verdict != "pass" else ""),
        )
    return out


def check_limits(
    measurements_by_workload: Mapping[str, Measurement], config: GateRules, alpha: float = 0.05
) -> list[MetricComparison]:
    """Absolute limits and ratio SLAs on current medians (no baseline needed).

    Comparisons are named ``metric[workload]`` (limits) and ``a[w1]/b[w2]`` (ratios) with
    threshold text like ``< 11000`` or ``<= 1.3``; the caller files them under
    :data:`SLA_KEY`. A rule naming a workload the test did not measure is skipped; a rule
    on a measured workload whose metric is absent is shown as ``pass`` ("not checked").
    """
    by_wl = dict(measurements_by_workload)
    out: list[MetricComparison] = []
    for lim in config.limits:
        out.extend(_check_limit(lim, by_wl))
    for sla in config.slas:
        out.extend(_check_sla(sla, by_wl, alpha))
    return out


__all__ = [
    "SLA_KEY",
    "Drift",
    "check_limits",
    "compare_measurement",
    "compare_metric",
    "history_drift",
]
