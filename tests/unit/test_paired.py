"""Paired verdicts: the rule on known rounds, then real interleaved runs of real models
(a candidate several times slower is caught; the same configuration twice is not), the
plugin's reference= and --perf-reference, llmperf ab, and contamination.

Split by tier: pure parts in tests/unit/test_paired.py, real model runs in
tests/integration/test_paired.py and pytest sessions and child processes in
tests/e2e/test_paired.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_llmperf.api import config
from pytest_llmperf.errors import UsageError
from pytest_llmperf.session import alike
from pytest_llmperf.session.plan import apply_reference, parse_reference
from pytest_llmperf.verdict import paired
from pytest_llmperf.verdict.thresholds import default_rules, merge_threshold_sources

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

RULES = default_rules()
DESIGN = paired.Design()


def runs(
    ratio: float, noise: float, blocks: int = 3, rounds: int = 5, seed: int = 1
) -> paired.PairedRuns:
    """Rounds whose tg_tps ratio B/A is ``ratio`` times lognormal noise, on a machine whose
    speed drifts wildly from round to round (both sides alike)."""
    rng = np.random.default_rng(seed)
    out = paired.PairedRuns("tg64")
    for _ in range(blocks):
        block = []
        for i in range(rounds):
            speed = 500 * float(rng.uniform(0.6, 1.4))  # the machine's mood: +-40%
            a = speed
            b = speed * ratio * math.exp(float(rng.normal(0, noise)))
            block.append(paired.Round("AB" if i % 2 == 0 else "BA", {"tg_tps": a}, {"tg_tps": b}))
        out.blocks.append(block)
    return out


def verdict(r: paired.PairedRuns) -> str:
    [c] = paired.compare(r, RULES, DESIGN)
    return c.verdict


def test_drift_cancels_and_a_10_percent_slowdown_is_caught() -> None:
    assert verdict(runs(0.90, 0.02)) == "regressed"
    assert verdict(runs(1.00, 0.02)) == "pass"
    assert verdict(runs(1.12, 0.02)) == "improved"
    assert verdict(runs(0.98, 0.01)) == "pass"  # a 2% change is below the 5% threshold


def test_a_wide_interval_is_inconclusive_not_a_coin_flip() -> None:
    assert verdict(runs(0.93, 0.25, blocks=2, rounds=3)) == "inconclusive"


def test_a_centre_beyond_the_threshold_decides_only_when_the_rounds_resolve_it() -> None:
    """Against -45%: an interval of [0.16, 0.79] around 0.45 (a 12-layer model, truly
    ~0.67, measured in a noisy minute) is not a 45% regression; one wholly beyond the
    threshold is, however wide; a narrow one with its centre beyond it is."""
    limit = -math.log(0.55)
    rule = paired._rule
    assert rule("tg_tps", math.log(0.452), math.log(0.162), math.log(0.787), limit)[0] == (
        "inconclusive"
    )
    assert rule("tg_tps", math.log(0.30), math.log(0.10), math.log(0.50), limit)[0] == "regressed"
    assert rule("tg_tps", math.log(0.53), math.log(0.48), math.log(0.58), limit)[0] == "regressed"
    # the mirror image: a wide interval of faster is no regression, a narrow one improved
    assert rule("tg_tps", math.log(2.2), math.log(1.27), math.log(6.2), limit)[0] == "pass"
    assert rule("tg_tps", math.log(1.9), math.log(1.85), math.log(1.95), limit)[0] == "improved"
    # a lower-is-better metric in its bad direction
    assert rule("ttft_ms", math.log(2.2), math.log(1.9), math.log(2.5), limit)[0] == "regressed"


def test_a_tiny_alpha_over_two_rounds_gives_finite_bounds() -> None:
    # Student's t at 1e-6 with one degree of freedom widens by ~7e4: never an overflow
    [c] = paired.compare(runs(1.0, 0.05, blocks=1, rounds=2), RULES, paired.Design(alpha=1e-6))
    assert c.verdict == "inconclusive"
    assert c.ratio_low is not None and c.ratio_high is not None
    assert 0 < c.ratio_low < 1 < c.ratio_high < math.inf


def test_an_undecided_metric_says_why_its_rounds_could_not_tell() -> None:
    # the rounds resolve less than the threshold, but the change sits near it
    for seed in range(40):
        [c] = paired.compare(runs(0.965, 0.03, seed=seed), RULES, DESIGN)
        if c.verdict == "inconclusive" and (c.detectable_pct or 0) < 5:
            assert "lies too close to -5% for these rounds to tell" in c.reason, c.reason
            assert "wider than" not in c.reason
            break
    else:
        pytest.fail("no seed gave an interval narrower than the threshold yet undecided")
    # the rounds cannot resolve the threshold at all
    [c] = paired.compare(runs(1.0, 0.25, blocks=2, rounds=3), RULES, DESIGN)
    assert c.verdict == "inconclusive" and "wider than -5%" in c.reason


def test_the_comparison_says_ratio_interval_and_rounds() -> None:
    [c] = paired.compare(runs(0.90, 0.02), RULES, DESIGN)
    assert c.ratio is not None and c.ratio_low is not None and c.ratio_high is not None
    assert c.ratio_low < c.ratio < c.ratio_high < 1
    assert c.rounds == 15 and c.threshold == "-5%"
    assert "ratio B/A 0.9" in c.reason and "3 load(s)" in c.reason


def test_contaminated_rounds_are_left_out_and_counted() -> None:
    r = runs(1.0, 0.01)
    for rnd in r.blocks[0]:
        rnd.contaminated = True
        rnd.b["tg_tps"] *= 0.5  # what a neighbour did to B
    [c] = paired.compare(r, RULES, DESIGN)
    assert c.verdict == "pass" and "5 contaminated round(s) left out" in c.reason


def test_design_and_reference_validation() -> None:
    with pytest.raises(ValueError, match="rounds"):
        paired.Design(min_rounds=1)
    assert parse_reference("build:main,cpu_moe:false") == {"build": "main", "cpu_moe": False}
    with pytest.raises(UsageError, match="key:value"):
        parse_reference("main")
    with pytest.raises(UsageError, match="unknown key"):
        parse_reference("colour:blue")
    cfg = config("tiny-moe-mxfp4", n_threads=2, cpu_moe=True)
    ref = apply_reference(cfg, {"cpu_moe": "false"}, "here")
    assert ref.params.cpu_moe is False and ref.params.n_threads == 2
    with pytest.raises(UsageError, match="the test's own configuration"):
        apply_reference(cfg, {"cpu_moe": True}, "here")


def test_looks_come_at_growing_round_counts() -> None:
    assert paired.Design(min_rounds=6, max_rounds=48).looks() == [6, 9, 14, 21, 32, 48]
    assert paired.design_for(4).looks() == [4]


def test_each_metric_is_judged_against_its_own_paired_threshold() -> None:
    r = runs(1.0, 0.02)
    for rnd in r.rounds:
        # ttft 8% worse (within its +10%), p95 20% worse (beyond its +15%)
        rnd.a.update(ttft_ms=10.0, itl_p95_ms=4.0)
        rnd.b.update(ttft_ms=10.8, itl_p95_ms=4.8)
    got = {c.metric: c for c in paired.compare(r, RULES, DESIGN)}
    assert got["tg_tps"].threshold == "-5%" and got["tg_tps"].verdict == "pass"
    assert got["ttft_ms"].threshold == "+10% or +1 ms" and got["ttft_ms"].verdict == "pass"
    assert got["itl_p95_ms"].threshold == "+15% or +0.5 ms"
    assert got["itl_p95_ms"].verdict == "regressed"
    # a workload without a prompt shows ttft without gating it (one decode step's jitter)
    r.prompt = False
    assert not {c.metric: c for c in paired.compare(r, RULES, DESIGN)}["ttft_ms"].threshold
    r.prompt = True
    # the rules' paired table sets them, tier by tier (here: a marker's)
    strict = merge_threshold_sources([("marker", {"paired": {"ttft_ms": "+5%"}})], base=RULES)
    got = {c.metric: c for c in paired.compare(r, strict, DESIGN)}
    assert got["ttft_ms"].verdict == "regressed"
    # --perf-paired-threshold sets the rates'
    loose = merge_threshold_sources([("cli", paired.rate_rules(50))], base=RULES)
    assert loose.paired_threshold("tg_tps").text() == "-50%"  # type: ignore[union-attr]
    assert loose.paired_threshold("ttft_ms").text() == "+10% or +1 ms"  # type: ignore[union-attr]


def test_metrics_measured_once_per_load_are_judged_on_loads() -> None:
    r = runs(1.0, 0.02, blocks=3)
    for i, block in enumerate(r.blocks):
        for rnd in block:
            rnd.a.update(load_ms=40.0 + i, rss_peak_mb=150.0)
            rnd.b.update(load_ms=80.0 + i, rss_peak_mb=200.0)
    got = {c.metric: c for c in paired.compare(r, RULES, DESIGN)}
    # memory: deterministic, the median over the loads against +10% or +16 MB
    assert got["rss_peak_mb"].verdict == "regressed" and got["rss_peak_mb"].rounds == 3
    assert "median of 3 load(s)" in got["rss_peak_mb"].reason
    # load time: three loads cannot judge it here; a load workload does, load by load
    assert got["load_ms"].verdict == "pass" and not got["load_ms"].threshold
    assert "measure_load" in got["load_ms"].reason
    loads = paired.PairedRuns("load", rounds_are_loads=True)
    loads.blocks.append(
        [paired.Round("AB", {"load_ms": 40.0 + i % 3}, {"load_ms": 80.0 + i % 3}) for i in range(8)]
    )
    [c] = paired.compare(loads, RULES, DESIGN)
    assert c.metric == "load_ms" and c.verdict == "regressed" and c.rounds == 8


def test_a_metric_more_rounds_cannot_decide_does_not_hold_the_run_open() -> None:
    wide = runs(1.0, 0.30, blocks=2, rounds=3)
    comps = paired.compare(wide, RULES, DESIGN, final=False)
    assert not paired.decided(comps)
    assert paired.settled(comps, 6, 6)  # at the cap: nothing more to wait for
    narrow_soon = runs(0.99, 0.04, blocks=2, rounds=3)
    comps = paired.compare(narrow_soon, RULES, DESIGN, looks=6, final=False)
    if not paired.decided(comps):
        assert not paired.settled(comps, 6, 48)  # 48 rounds would narrow it enough
    final = paired.compare(wide, RULES, DESIGN, final=True)
    [tg] = [c for c in final if c.metric == "tg_tps"]
    assert tg.verdict == "inconclusive" and tg.detectable_pct is not None
    assert f"resolve changes beyond ±{tg.detectable_pct:.1f}%" in tg.reason


def test_what_the_sides_differ_in_unless_the_pair_varies_it() -> None:
    a = {
        "resolved.n_threads": 2,
        "resolved.n_threads_batch": 2,
        "resolved.flash_attn": "off",
        "software.lib_sha256": "aa",
        "env.OMP_WAIT_POLICY": "active",
        "resolved.worker_pid": 1,
    }
    b = dict(a, **{"resolved.worker_pid": 2})
    assert alike.differences(a, b, ()) == []  # a pid is per process, never compared
    b["resolved.flash_attn"] = "on"
    b["env.OMP_WAIT_POLICY"] = "passive"
    assert alike.differences(a, b, ("model",)) == [
        "env.OMP_WAIT_POLICY: 'active' (reference) != 'passive' (candidate)"
    ]
    assert [d.split(":")[0] for d in alike.differences(a, b, ("cpu_moe",))] == [
        "env.OMP_WAIT_POLICY",
        "resolved.flash_attn",
    ]
    b = dict(
        a, **{"resolved.n_threads": 4, "resolved.n_threads_batch": 4, "software.lib_sha256": "bb"}
    )
    assert [d.split(":")[0] for d in alike.differences(a, b, ("n_threads",))] == [
        "software.lib_sha256"
    ]
    assert alike.differences(a, b, ("n_threads", "build")) == []
