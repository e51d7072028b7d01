"""Interval estimates, in one place: how far a machine drifts between sessions (stored
baselines with history) and how sure a paired A/B ratio is (paired verdicts). Pure.

**Drift between sessions** (:func:`drift_allowance`). From the medians of the last k
accepted sessions, a one-sided prediction bound for the median of the next unchanged
session, on the log scale (times and rates are ratio quantities):
``t(1-alpha, k-1) * s * sqrt(1 + 1/k)`` with ``s`` the standard deviation of the log
medians (the prediction interval Bencher's t-test threshold uses). We chose it over the
median absolute deviation because with k = 3..5 sessions a MAD is 0 as soon as two
sessions agree, which would call a drifting machine quiet; the t quantile instead widens
the bound honestly while the history is short, and tightens as it grows. alpha defaults
to 0.01: a stored baseline fails only what lies beyond where 99% of unchanged sessions
would fall.

**Smallest detectable change within a session** (:func:`within_detectable`): the shift
of the median a one-sided rank test at ``alpha`` detects with 80% power, given the
samples' spread (CV from the median absolute deviation) and their counts, by the normal
approximation (medians have sqrt(pi/2) the standard error of means).

**Paired ratios** (:func:`paired_interval`). Per-round log ratios B/A grouped in blocks
(each block one load of both sides); the interval of the median log ratio comes from a
hierarchical bootstrap: resample blocks, then rounds within each chosen block (Kalibera &
Jones, "Rigorous benchmarking in reasonable time"), so that the variance between loads,
where most of it lives, is in the interval. Fixed seed: the same data, the same verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

#: the bootstrap's resamples and seed
N_BOOTSTRAP = 4000
SEED = 20261202
#: sessions needed before the drift between them is estimated
MIN_SESSIONS = 3
#: one-sided level of the drift bound
DRIFT_ALPHA = 0.01
#: power the smallest detectable change is quoted at
POWER = 0.8


def _t(q: float, dof: int) -> float:
    from scipy.stats import t

    return float(t.ppf(q, dof))


def _z(q: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(q))


def median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=float)))


def robust_cv(values: Sequence[float]) -> float:
    """1.4826 x MAD / median: the spread of ``values`` relative to their median."""
    arr = np.asarray(values, dtype=float)
    if arr.size < 2:
        return 0.0
    med = float(np.median(arr))
    if med == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(arr - med)) / abs(med))


def drift_allowance(session_medians: Sequence[float], alpha: float = DRIFT_ALPHA) -> float | None:
    """The relative change (a fraction, e.g. 0.14) that an unchanged next session stays
    within, on each side, with probability ``1 - alpha``; None with fewer than
    :data:`MIN_SESSIONS` sessions or non-positive medians."""
    k = len(session_medians)
    if k < MIN_SESSIONS or any(m <= 0 for m in session_medians):
        return None
    logs = np.log(np.asarray(session_medians, dtype=float))
    s = float(logs.std(ddof=1))
    bound = _t(1 - alpha, k - 1) * s * math.sqrt(1 + 1 / k)
    return math.expm1(bound)


def center(session_medians: Sequence[float]) -> float:
    """The reference of a history: the geometric mean of its session medians (the
    centre of the log-scale prediction interval)."""
    arr = np.asarray(session_medians, dtype=float)
    if arr.size and float(arr.min()) > 0:
        return float(np.exp(np.log(arr).mean()))
    return float(arr.mean()) if arr.size else math.nan


def within_detectable(
    cv: float, n_current: int, n_baseline: int, alpha: float = 0.05, power: float = POWER
) -> float:
    """The smallest relative shift of the median (a fraction) detectable within a
    session with this spread and these sample counts; inf with no samples."""
    if n_current < 1 or n_baseline < 1:
        return math.inf
    se = math.sqrt(math.pi / 2) * cv * math.sqrt(1 / n_current + 1 / n_baseline)
    return (_z(1 - alpha) + _z(power)) * se


#: the share of rounds left out at each end of the paired verdict's trimmed mean
TRIM = 0.2


def trimmed_mean(values: Sequence[float] | np.ndarray[Any, Any], trim: float = TRIM) -> float:
    """The mean of ``values`` without the ``trim`` share at each end (20%: nearly the
    mean's efficiency on well-behaved rounds, the median's calm under a burst)."""
    arr = np.sort(np.asarray(values, dtype=float))
    cut = int(trim * arr.size)
    return float(arr[cut : arr.size - cut].mean()) if arr.size else math.nan


def small_sample_factor(n: int, alpha: float) -> float:
    """How much wider an interval estimated from ``n`` values should be than the normal
    quantile makes it: ``t(1 - alpha, n - 1) / z(1 - alpha)`` (1 for large n; 1.5 for
    8 values at alpha 0.006)."""
    if n < 2:
        return math.inf
    return _t(1 - alpha, n - 1) / _z(1 - alpha)


def paired_interval(
    blocks: Sequence[Sequence[float]],
    alpha: float,
    *,
    n_boot: int = N_BOOTSTRAP,
    seed: int = SEED,
    trim: float = TRIM,
) -> tuple[float, float, float]:
    """``(center, low, high)`` of the per-round log ratios in ``blocks``: their trimmed
    mean (:func:`trimmed_mean`), and the two-sided ``1 - alpha`` hierarchical-bootstrap
    interval of it (each bound a one-sided ``1 - alpha / 2`` bound). One block: rounds are
    resampled alone. Vectorised: every resample at once (a resample's blocks padded to the
    largest, the padding sorted past the values it keeps)."""
    groups = [np.asarray(b, dtype=float) for b in blocks if len(b)]
    if not groups:
        return math.nan, math.nan, math.nan
    flat = np.concatenate(groups)
    med = trimmed_mean(flat, trim)
    rng = np.random.default_rng(seed)
    sizes = np.array([g.size for g in groups])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    nb = len(groups)
    chosen = rng.integers(0, nb, size=(n_boot, nb)) if nb > 1 else np.zeros((n_boot, 1), int)
    counts = sizes[chosen]  # (resample, block slot): the rounds each chosen block gives
    width = int(sizes.max())
    draw = (rng.random((n_boot, chosen.shape[1], width)) * counts[:, :, None]).astype(int)
    values = flat[offsets[chosen][:, :, None] + np.minimum(draw, counts[:, :, None] - 1)]
    kept = np.arange(width)[None, None, :] < counts[:, :, None]
    values = np.where(kept, values, np.inf).reshape(n_boot, -1)
    values.sort(axis=1)
    total = counts.sum(axis=1)
    cut = (trim * total).astype(int)
    sums = np.concatenate(
        [np.zeros((n_boot, 1)), np.cumsum(np.where(np.isinf(values), 0, values), axis=1)], axis=1
    )
    rows = np.arange(n_boot)
    centers = (sums[rows, total - cut] - sums[rows, cut]) / (total - 2 * cut)
    low, high = np.quantile(centers, [alpha / 2, 1 - alpha / 2])
    return med, float(low), float(high)


# -- the stored-baseline gate's tests (verdict/gate.py) ----------------------------------

#: resamples and seed of the bootstrap of a ratio of medians (fixed: the same samples
#: always give the same verdict)
RATIO_BOOTSTRAP = 2000
RATIO_SEED = 20240821
#: largest n_current * n_baseline for which the exact Mann-Whitney distribution is used
_EXACT_MAX_CELLS = 10_000

Direction = Literal["greater", "less"]


def mann_whitney_p(
    current: Sequence[float], baseline: Sequence[float], alternative: Direction
) -> float:
    """One-sided p that ``current`` is stochastically ``alternative`` than ``baseline``.

    Exact distribution for small samples (ties included), the normal approximation with
    continuity correction beyond. Returns 1.0 when the test is undefined.
    """
    from scipy.stats import mannwhitneyu

    if not current or not baseline:
        return 1.0
    method = "exact" if len(current) * len(baseline) <= _EXACT_MAX_CELLS else "asymptotic"
    result = mannwhitneyu(
        np.asarray(current, dtype=float),
        np.asarray(baseline, dtype=float),
        alternative=alternative,
        method=method,
    )
    p = float(result.pvalue)
    return p if math.isfinite(p) else 1.0


def bootstrap_ratio_bound(
    current: Sequence[float],
    baseline: Sequence[float],
    alternative: Direction,
    alpha: float,
    *,
    n_boot: int = RATIO_BOOTSTRAP,
    seed: int = RATIO_SEED,
) -> tuple[float, float, bool]:
    """Percentile bootstrap of median(current) / median(baseline).

    Returns ``(low, high, excludes_one)``: the ``alpha`` and ``1 - alpha`` quantiles of the
    resampled ratios, and whether the one-sided bound in direction ``alternative``
    excludes 1 (``greater``: low > 1; ``less``: high < 1). When a baseline median can be
    zero or negative the difference of medians is used instead (against 0).
    """
    cur = np.asarray(current, dtype=float)
    base = np.asarray(baseline, dtype=float)
    rng = np.random.default_rng(seed)
    med_c = np.median(cur[rng.integers(0, cur.size, size=(n_boot, cur.size))], axis=1)
    med_b = np.median(base[rng.integers(0, base.size, size=(n_boot, base.size))], axis=1)
    if float(base.min()) > 0 and float(cur.min()) >= 0:
        stat, neutral = med_c / med_b, 1.0
    else:
        stat, neutral = med_c - med_b, 0.0
    low, high = (float(x) for x in np.quantile(stat, [alpha, 1.0 - alpha]))
    excludes = low > neutral if alternative == "greater" else high < neutral
    return low, high, excludes


def change_points(values: Sequence[float]) -> list[int]:
    """Where a history steps: the indices at which a new level starts, by optimal
    partitioning with an L1 cost and a BIC-like penalty (the method of asv's step
    detection: piecewise-constant medians, each extra segment paying
    ``2 * noise * log(n)``, the noise estimated from the successive differences). Fewer
    than 3 values: none."""
    x = [float(v) for v in values]
    n = len(x)
    if n < 3:
        return []
    diffs = np.abs(np.diff(np.asarray(x)))
    noise = float(np.median(diffs)) / 0.954 if diffs.size else 0.0  # MAD of a difference
    noise = max(noise, 1e-9 * max(abs(v) for v in x))
    penalty = 2.0 * noise * math.log(n)

    def cost(i: int, j: int) -> float:
        seg = np.asarray(x[i:j])
        return float(np.abs(seg - np.median(seg)).sum())

    best = [0.0] + [math.inf] * n
    start = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):
            c = best[i] + cost(i, j) + (penalty if i else 0.0)
            if c < best[j]:
                best[j], start[j] = c, i
    steps: list[int] = []
    j = n
    while j > 0:
        if start[j] > 0:
            steps.append(start[j])
        j = start[j]
    return sorted(steps)


__all__ = [
    "DRIFT_ALPHA",
    "MIN_SESSIONS",
    "N_BOOTSTRAP",
    "POWER",
    "bootstrap_ratio_bound",
    "center",
    "change_points",
    "drift_allowance",
    "mann_whitney_p",
    "median",
    "paired_interval",
    "robust_cv",
    "small_sample_factor",
    "trimmed_mean",
    "within_detectable",
]
