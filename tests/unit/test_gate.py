"""The noise-aware gate: every verdict, statistics, limits, SLAs, tables and messages."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_llmperf.model.metrics import Sample
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.results import Measurement, MetricComparison, worst
from pytest_llmperf.model.workloads import Workload
from pytest_llmperf.verdict import gate, judge, stats, table
from pytest_llmperf.verdict.thresholds import GateRules, default_rules, merge_threshold_sources

CFG = default_rules()


def measurement(
    values: dict[str, list[float]], workload: str = "tg128", absent: dict[str, str] | None = None
) -> Measurement:
    return Measurement(
        model="tiny",
        model_path="/models/tiny.gguf",
        params=LoadParams(),
        workload=Workload.parse(workload),
        samples=[],
        values={k: [float(x) for x in v] for k, v in values.items()},
        absent=dict(absent or {}),
    )


def from_rates(rates: list[float], n_gen: int = 32, ttft_ms: float = 20.0) -> Measurement:
    """A tg measurement whose samples generate at exactly ``rates`` tokens/s."""
    samples = []
    for rate in rates:
        gap = 1e9 / rate
        start = int(ttft_ms * 1e6)
        toks = [start + round(i * gap) for i in range(n_gen)]
        samples.append(
            Sample(
                n_prompt=0,
                n_gen=n_gen,
                n_depth=0,
                prompt_ns=None,
                token_ns=toks,
                end_ns=toks[-1],
                llama={},
            )
        )
    return Measurement.from_samples(
        model="tiny",
        model_path="/models/tiny.gguf",
        params=LoadParams(),
        workload=Workload(n_gen=n_gen),
        samples=samples,
    )


def by_metric(comps: list[MetricComparison]) -> dict[str, MetricComparison]:
    return {c.metric: c for c in comps}


# -- regressions and noise --------------------------------------------------------------


def test_clean_20pct_drop_5v5_from_samples_regresses() -> None:
    base = from_rates([100.0, 101.0, 99.0, 100.5, 99.5])
    cur = from_rates([80.0, 81.0, 79.0, 80.5, 79.5])
    comps = by_metric(gate.compare_measurement(cur, base, CFG))
    tg = comps["tg_tps"]
    assert tg.verdict == "regressed"
    assert tg.change_pct == pytest.approx(-20.0, abs=0.1)
    assert tg.p_value is not None and tg.p_value <= 0.05
    assert tg.threshold == "-10%"
    assert tg.baseline_median == pytest.approx(100.0, rel=1e-3)
    assert tg.current_median == pytest.approx(80.0, rel=1e-3)
    assert "samples separate" in tg.reason
    # the per-token times regressed with it (tpot +25 %); ttft did not change
    assert comps["tpot_ms"].verdict == "regressed"
    assert comps["ttft_ms"].verdict == "pass"
    assert worst(c.verdict for c in list(comps.values())) == "regressed"
    assert judge.needs_remeasure({"w": list(comps.values())})


def _contaminated(m: Measurement, dirty: int) -> Measurement:
    """``m`` with its first ``dirty`` repetitions run while other processes took 40% of
    the CPU."""
    for s in m.samples[:dirty]:
        s.contention = {"others_cpu": 0.4, "cpu_stall": 0.02}
    return m


def test_a_regression_measured_while_others_took_the_cpu_is_not_judged() -> None:
    base = from_rates([100.0, 101.0, 99.0, 100.5, 99.5])
    cur = _contaminated(from_rates([80.0, 81.0, 79.0, 80.5, 79.5]), 3)
    comps = {cur.workload.name: gate.compare_measurement(cur, base, CFG)}
    dirty = judge.contaminated_regressions(comps, [cur])
    assert dirty == {cur.workload.name: pytest.approx(0.6)}
    notes = judge.distrust(comps, dirty)
    tg = by_metric(comps[cur.workload.name])["tg_tps"]
    assert tg.verdict == "inconclusive"
    assert tg.reason.startswith("not judged: 60% of the repetitions ran while other processes")
    assert notes == [
        "tg32: tg_tps, itl_p95_ms, tpot_ms, itl_p50_ms, e2e_ms measured slower only while other "
        "processes competed "
        "for the CPU (60% of the repetitions, after re-measuring): not judged; measure on a "
        "quiet machine"
    ]
    verdict = judge.judge("t", comps, judge.Policy(), has_entry=True)
    assert (verdict.verdict, verdict.outcome) == ("inconclusive", "pass")


def test_the_machine_counts_as_slower_only_beyond_the_probes_spread() -> None:
    assert judge.slower_machine(60.0, 100.0) == pytest.approx(0.4)
    assert judge.slower_machine(75.0, 100.0) == pytest.approx(0.25)
    assert judge.slower_machine(80.0, 100.0) is None  # within the probe's own spread
    assert judge.slower_machine(150.0, 100.0) is None  # faster
    # a baseline of an older version has no probe; a broken one counts as none
    assert judge.slower_machine(60.0, None) is None
    assert judge.slower_machine(None, 100.0) is None
    assert judge.slower_machine(60.0, 0.0) is None


def test_a_timing_regression_on_a_slower_machine_is_not_judged() -> None:
    base = from_rates([100.0, 101.0, 99.0, 100.5, 99.5])
    cur = from_rates([50.0, 51.0, 49.0, 50.5, 49.5])
    comps = {cur.workload.name: gate.compare_measurement(cur, base, CFG)}
    rss = MetricComparison("rss_peak_mb", "MB", "lower", 100.0, 150.0, 50.0, "+10%", "regressed")
    limit = MetricComparison("tg_tps", "t/s", "higher", None, 50.0, None, ">= 80", "regressed")
    comps[cur.workload.name].append(rss)
    comps[gate.SLA_KEY] = [limit]
    notes = judge.distrust_slower(comps, 0.5, "40 now against 80")
    tg = by_metric(comps[cur.workload.name])["tg_tps"]
    assert tg.verdict == "inconclusive"
    assert tg.reason.startswith("not judged: the machine ran 50% slower than when the baseline")
    # memory does not depend on speed, and a limit says what the machine does now
    assert rss.verdict == "regressed" and limit.verdict == "regressed"
    assert notes == [
        "tg32: tg_tps, itl_p95_ms, tpot_ms, itl_p50_ms, itl_p99_ms, e2e_ms measured slower "
        "while the whole machine ran 50% slower than when the baseline was recorded "
        "(speed probe 40 now against 80, after re-measuring): not judged; run again when the "
        "machine is back to its usual speed, or re-record the baseline with --perf-accept if "
        "this speed is its usual one now"
    ]
    # nothing to distrust: no note
    assert judge.distrust_slower({"w": [rss]}, 0.5, "x") == []


def test_a_regression_on_mostly_clean_repetitions_stands() -> None:
    base = from_rates([100.0, 101.0, 99.0, 100.5, 99.5])
    cur = _contaminated(from_rates([80.0, 81.0, 79.0, 80.5, 79.5]), 2)
    comps = {cur.workload.name: gate.compare_measurement(cur, base, CFG)}
    assert judge.contaminated_regressions(comps, [cur]) == {}
    assert judge.distrust(comps, {}) == []
    assert by_metric(comps[cur.workload.name])["tg_tps"].verdict == "regressed"
    # and a contaminated workload that did not regress is left as it is
    same = _contaminated(from_rates([100.0, 101.0, 99.0, 100.5, 99.5]), 5)
    comps = {same.workload.name: gate.compare_measurement(same, base, CFG)}
    assert judge.contaminated_regressions(comps, [same]) == {}


def test_3v3_clean_separation_is_detected_at_default_alpha() -> None:
    base = measurement({"tg_tps": [100, 101, 102]})
    cur = measurement({"tg_tps": [80, 81, 82]})
    (tg,) = gate.compare_measurement(cur, base, CFG)
    assert tg.p_value == pytest.approx(0.05)
    assert tg.verdict == "regressed"
    # a stricter alpha cannot be met by 3 samples: beyond threshold, but not proven
    (strict,) = gate.compare_measurement(cur, base, CFG, alpha=0.01)
    assert strict.verdict == "inconclusive"
    assert "p=0.05 > 0.01" in strict.reason


def test_noisy_overlapping_samples_beyond_threshold_do_not_regress() -> None:
    base = measurement({"tg_tps": [100, 70, 104, 96, 75]})
    cur = measurement({"tg_tps": [84, 102, 72, 86, 99]})
    (tg,) = gate.compare_measurement(cur, base, CFG)
    assert tg.change_pct is not None and tg.change_pct < -10  # the medians moved 12.5 %
    assert tg.verdict == "inconclusive"
    assert tg.p_value is not None and tg.p_value > 0.05
    assert "overlap" in tg.reason and "noise" in tg.reason
    assert not judge.needs_remeasure({"w": [tg]})


def test_two_samples_are_inconclusive_not_a_coin_flip() -> None:
    base = measurement({"tg_tps": [100, 101]})
    cur = measurement({"tg_tps": [50, 51]})
    (tg,) = gate.compare_measurement(cur, base, CFG)
    assert tg.verdict == "inconclusive"
    assert tg.p_value is None
    assert "only 2 baseline / 2 current samples" in tg.reason
    assert "need >= 3" in tg.reason
    # min_samples is the caller's to lower
    (low,) = gate.compare_measurement(cur, base, CFG, min_samples=2)
    assert low.verdict == "inconclusive"  # 2 v 2: the exact p is 1/6 > 0.05


def test_few_samples_within_threshold_pass() -> None:
    (tg,) = gate.compare_measurement(
        measurement({"tg_tps": [97]}), measurement({"tg_tps": [100]}), CFG
    )
    assert tg.verdict == "pass"
    assert tg.reason == "within -10%"


def test_within_threshold_passes_even_when_significant() -> None:
    base = measurement({"tg_tps": [100, 100.1, 100.2, 100.3, 100.4]})
    cur = measurement({"tg_tps": [95, 95.1, 95.2, 95.3, 95.4]})
    (tg,) = gate.compare_measurement(cur, base, CFG)
    assert tg.verdict == "pass"
    assert tg.change_pct == pytest.approx(-4.99, abs=0.01)


def test_lower_is_better_metric_and_absolute_allowance() -> None:
    base = measurement({"itl_p95_ms": [10.0, 10.1, 10.2, 10.3, 10.4]})
    cur = measurement({"itl_p95_ms": [13.0, 13.1, 13.2, 13.3, 13.4]})
    (itl,) = gate.compare_measurement(cur, base, CFG)
    assert itl.verdict == "regressed" and itl.better == "lower" and itl.unit == "ms"
    # +40 % of a tiny value, but under the +0.5 ms floor: not a regression
    small_b = measurement({"itl_p95_ms": [1.0, 1.01, 1.02, 1.03, 1.04]})
    small_c = measurement({"itl_p95_ms": [1.4, 1.41, 1.42, 1.43, 1.44]})
    (small,) = gate.compare_measurement(small_c, small_b, CFG)
    assert small.verdict == "pass"


def test_improvement_verdicts() -> None:
    base = measurement({"tg_tps": [100, 101, 102, 103, 104]})
    cur = measurement({"tg_tps": [130, 131, 132, 133, 134]})
    (tg,) = gate.compare_measurement(cur, base, CFG)
    assert tg.verdict == "improved"
    assert "--perf-fail-on-improvement" not in tg.reason
    (tg2,) = gate.compare_measurement(cur, base, CFG, fail_on_improvement=True)
    assert tg2.verdict == "improved"
    assert "fails with --perf-fail-on-improvement" in tg2.reason
    assert worst(c.verdict for c in [tg]) == "improved"
    assert not judge.needs_remeasure({"w": [tg]})
    # an improvement without evidence (too few, or overlapping samples) is a plain pass
    (few,) = gate.compare_measurement(
        measurement({"tg_tps": [130, 131]}), measurement({"tg_tps": [100, 101]}), CFG
    )
    assert few.verdict == "pass"
    (noisy,) = gate.compare_measurement(
        measurement({"tg_tps": [75, 150, 96, 140, 120]}),
        measurement({"tg_tps": [100, 70, 104, 96, 75]}),
        CFG,
    )
    assert noisy.verdict == "pass" and "not significant" in noisy.reason


def test_deterministic_metrics_compare_medians_without_a_test() -> None:
    base = measurement({"vram_mb": [500.0]})
    (worse,) = gate.compare_measurement(measurement({"vram_mb": [560.0]}), base, CFG)
    assert worse.verdict == "regressed"  # one sample is enough: memory does not jitter
    assert worse.p_value is None
    assert "deterministic" in worse.reason
    (same,) = gate.compare_measurement(measurement({"vram_mb": [510.0]}), base, CFG)
    assert same.verdict == "pass"  # +2 % and +10 MB: within +5 % or +16 MB
    (less,) = gate.compare_measurement(measurement({"vram_mb": [400.0]}), base, CFG)
    assert less.verdict == "improved"


def test_informational_and_disabled_metrics_are_shown_not_gated() -> None:
    base = measurement({"llama_tg_tps": [100, 100, 100], "itl_max_ms": [5, 5, 5]})
    cur = measurement({"llama_tg_tps": [10, 10, 10], "itl_max_ms": [50, 50, 50]})
    comps = gate.compare_measurement(cur, base, CFG)
    assert {c.verdict for c in comps} == {"pass"}
    assert {c.reason for c in comps} == {"not gated"}
    assert all(c.threshold == "" for c in comps)
    off = merge_threshold_sources([("marker on t", {"thresholds": {"tg_tps": "off"}})])
    (tg,) = gate.compare_measurement(
        measurement({"tg_tps": [10, 10, 10]}), measurement({"tg_tps": [100, 100, 100]}), off
    )
    assert tg.verdict == "pass" and tg.reason == "not gated"
    assert tg.change_pct == pytest.approx(-90.0)


def test_no_baseline_is_new() -> None:
    comps = gate.compare_measurement(
        measurement({"tg_tps": [80, 81], "llama_tg_tps": [8]}), None, CFG
    )
    assert [c.verdict for c in comps] == ["new", "new"]
    assert comps[0].metric == "tg_tps"  # key metrics first
    assert comps[0].threshold == "-10%" and comps[1].threshold == ""
    assert comps[0].baseline_median is None and comps[0].change_pct is None
    assert worst(c.verdict for c in comps) == "new"
    # absolute limits still apply without a baseline
    limits = gate.check_limits(
        {"tg128": measurement({"tg_tps": [3, 3, 3]})},
        merge_threshold_sources([("y", {"limits": ["tg_tps >= 5"]})]),
    )
    assert worst(c.verdict for c in comps + limits) == "regressed"


def test_absent_metrics_are_informative_not_failing() -> None:
    base = measurement({"tg_tps": [100, 100, 100], "vram_mb": [500], "llama_tg_tps": [99]})
    cur = measurement(
        {"tg_tps": [100, 100, 100], "rss_peak_mb": [300]},
        absent={"vram_mb": "no NVML (no NVIDIA GPU)"},
    )
    comps = by_metric(gate.compare_measurement(cur, base, CFG))
    assert comps["vram_mb"].verdict == "inconclusive"  # gated but could not be checked
    assert comps["vram_mb"].reason.startswith("absent now: no NVML (no NVIDIA GPU)")
    assert comps["vram_mb"].current_median is None
    assert comps["llama_tg_tps"].verdict == "pass"  # not gated
    assert comps["llama_tg_tps"].reason == "absent now: not measured"
    assert comps["rss_peak_mb"].verdict == "pass"  # new now, absent from the baseline
    assert comps["rss_peak_mb"].reason.startswith("absent in baseline: not measured")
    assert comps["rss_peak_mb"].baseline_median is None
    assert comps["tg_tps"].verdict == "pass"
    assert not judge.needs_remeasure({"w": list(comps.values())})
    assert worst(c.verdict for c in list(comps.values())) == "inconclusive"


def test_identical_samples_and_zero_baseline() -> None:
    (tg,) = gate.compare_measurement(
        measurement({"tg_tps": [50, 50, 50]}), measurement({"tg_tps": [50, 50, 50]}), CFG
    )
    assert tg.verdict == "pass" and tg.change_pct == 0.0
    (load,) = gate.compare_measurement(
        measurement({"load_ms": [30, 30, 30]}), measurement({"load_ms": [0, 0, 0]}), CFG
    )
    assert load.change_pct is None  # undefined relative change
    assert load.verdict == "regressed"  # +30 ms is beyond the +20 ms floor, all samples apart


def test_verdicts_are_deterministic() -> None:
    base = measurement({"tg_tps": [100, 98, 103, 99, 101, 97, 102]})
    cur = measurement({"tg_tps": [85, 88, 84, 99, 86, 87, 83]})
    runs = [gate.compare_measurement(cur, base, CFG) for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]


def test_bootstrap_guards_against_a_shift_the_medians_do_not_carry() -> None:
    # four of six samples dropped 15 %, two did not: the ranks say "lower" (p < 0.05), the
    # median moved 15 %, yet resampling often puts the median back at 100
    base = measurement({"tg_tps": [100, 100, 100, 100, 100, 100]})
    cur = measurement({"tg_tps": [85, 85, 85, 85, 100, 100]})
    (with_ci,) = gate.compare_measurement(cur, base, CFG)
    (without,) = gate.compare_measurement(cur, base, CFG, bootstrap=False)
    assert without.p_value is not None and without.p_value <= 0.05
    assert without.verdict == "regressed"
    assert with_ci.verdict == "inconclusive"
    assert "includes 1" in with_ci.reason


def test_bootstrap_ratio_bound() -> None:
    low, high, excl = stats.bootstrap_ratio_bound([80, 81, 82], [100, 101, 102], "less", 0.05)
    assert excl and low < high < 1
    assert stats.bootstrap_ratio_bound([80, 81, 82], [100, 101, 102], "less", 0.05) == (
        low,
        high,
        excl,
    )
    _l, _h, excl2 = stats.bootstrap_ratio_bound([95, 105, 99], [100, 96, 104], "less", 0.05)
    assert not excl2
    # a zero in the baseline falls back to the difference of medians
    _l, _h, excl3 = stats.bootstrap_ratio_bound([5, 6, 7], [0, 0, 0], "greater", 0.05)
    assert excl3


def test_mann_whitney_p_edge_cases() -> None:
    assert stats.mann_whitney_p([], [1.0], "less") == 1.0
    assert stats.mann_whitney_p([1, 1, 1], [1, 1, 1], "less") > 0.5  # all ties: no evidence
    assert stats.mann_whitney_p([1, 2, 3], [4, 5, 6], "less") == pytest.approx(0.05)
    big = stats.mann_whitney_p(list(range(200)), list(range(100, 300)), "less")
    assert 0 < big < 1e-6  # large samples use the normal approximation


def test_false_alarm_rate_under_noise_is_low_and_power_is_high() -> None:
    """Same distribution (CV 8 %): almost never regressed. A 20 % drop with CV 3 %: caught."""
    rng = np.random.default_rng(7)
    false_alarms = 0
    for _ in range(300):
        base = measurement({"tg_tps": list(rng.normal(100, 8, 5))})
        cur = measurement({"tg_tps": list(rng.normal(100, 8, 5))})
        (c,) = gate.compare_measurement(cur, base, CFG)
        false_alarms += c.verdict == "regressed"
    assert false_alarms / 300 < 0.02
    caught = 0
    for _ in range(100):
        base = measurement({"tg_tps": list(rng.normal(100, 3, 5))})
        cur = measurement({"tg_tps": list(rng.normal(80, 3 * 0.8, 5))})
        (c,) = gate.compare_measurement(cur, base, CFG)
        caught += c.verdict == "regressed"
    assert caught >= 95


def test_alpha_is_validated() -> None:
    with pytest.raises(ValueError, match="alpha"):
        gate.compare_measurement(measurement({"tg_tps": [1]}), None, CFG, alpha=0)


# -- limits and SLAs --------------------------------------------------------------------


def limits_cfg(*rules: str, sla: tuple[str, ...] = ()) -> GateRules:
    return merge_threshold_sources([("llmperf.yaml", {"limits": list(rules), "sla": list(sla)})])


def test_absolute_limits() -> None:
    ms = {
        "load": measurement({"load_ms": [12000, 12500, 11800]}, "load"),
        "tg64": measurement({"tg_tps": [5.3, 5.4, 5.2]}, "tg64"),
        "tg512": measurement({"tg_tps": [4.0, 4.1, 3.9]}, "tg512"),
    }
    cfg = limits_cfg("load_ms < 11000", "tg_tps[tg64] >= 5", "tg_tps[pp512] >= 1", "tg_tps > 3")
    comps = gate.check_limits(ms, cfg)
    assert [(c.metric, c.threshold, c.verdict) for c in comps] == [
        ("load_ms[load]", "< 11000", "regressed"),
        ("tg_tps[tg64]", ">= 5", "pass"),
        # the unqualified rule applies to every workload that has the metric
        ("tg_tps[tg64]", "> 3", "pass"),
        ("tg_tps[tg512]", "> 3", "pass"),
    ]  # "tg_tps[pp512] >= 1": pp512 is not measured by this test, so not for it
    load = comps[0]
    assert load.current_median == 12000.0
    assert load.baseline_median is None and load.better == "lower" and load.unit == "ms"
    assert "is not < 11000" in load.reason and "llmperf.yaml" in load.reason
    assert comps[1].better == "higher" and comps[1].current_median == pytest.approx(5.3)
    assert judge.needs_remeasure({"w": comps})


def test_limit_on_absent_metric_is_not_checked() -> None:
    ms = {"tg64": measurement({"tg_tps": [5, 5, 5]}, "tg64", absent={"vram_mb": "no NVML"})}
    comps = gate.check_limits(
        ms, limits_cfg("vram_mb < 100", "tg_tps[tg64] < 100", "rss_peak_mb < 10")
    )
    by = {c.metric: c for c in comps}
    assert by["vram_mb[tg64]"].verdict == "pass"
    assert by["vram_mb[tg64]"].reason == "absent now: no NVML: limit not checked"
    assert by["tg_tps[tg64]"].verdict == "pass"
    assert "rss_peak_mb[tg64]" not in by  # unqualified, never measured here: not for this test


def test_ratio_sla() -> None:
    sla = "itl_p95_ms[tg512] / itl_p95_ms[tg64] <= 1.30"
    ms = {
        "tg64": measurement({"itl_p95_ms": [10, 10.5, 11]}, "tg64"),
        "tg512": measurement({"itl_p95_ms": [15, 15.5, 16]}, "tg512"),
    }
    (c,) = gate.check_limits(ms, limits_cfg(sla=(sla,)))
    assert c.metric == "itl_p95_ms[tg512]/itl_p95_ms[tg64]"
    assert c.verdict == "regressed"
    assert c.threshold == "<= 1.3"
    assert c.current_median == pytest.approx(15.5 / 10.5)
    assert "is not <= 1.3" in c.reason
    # the medians' ratio is beyond the bound, but the repetitions' spread leaves ratios
    # within it possible (14 / 11 = 1.27): judged as the gate judges a change, unsure
    ms["tg512"] = measurement({"itl_p95_ms": [14, 14.5, 15]}, "tg512")
    (unsure,) = gate.check_limits(ms, limits_cfg(sla=(sla,)))
    assert unsure.verdict == "inconclusive"
    assert unsure.current_median == pytest.approx(14.5 / 10.5)
    assert "straddles <= 1.3" in unsure.reason and not judge.needs_remeasure({"w": [unsure]})
    ms["tg512"] = measurement({"itl_p95_ms": [12, 12.5, 13]}, "tg512")
    (ok,) = gate.check_limits(ms, limits_cfg(sla=(sla,)))
    assert ok.verdict == "pass"
    # one workload missing: shown, not checked; both missing: not for this test
    (half,) = gate.check_limits({"tg64": ms["tg64"]}, limits_cfg(sla=(sla,)))
    assert half.verdict == "pass" and "workload tg512 not measured" in half.reason
    assert gate.check_limits({"pp512": measurement({}, "pp512")}, limits_cfg(sla=(sla,))) == []


def test_an_unsure_sla_never_hides_a_first_recording() -> None:
    sla = "itl_p95_ms[tg512] / itl_p95_ms[tg64] <= 1.30"
    ms = {
        "tg64": measurement({"itl_p95_ms": [10, 10.5, 11]}, "tg64"),
        "tg512": measurement({"itl_p95_ms": [14, 14.5, 15]}, "tg512"),
    }
    rules = limits_cfg(sla=(sla,))
    recording = judge.Policy(missing="record")
    # no baseline: every metric new, the SLA unsure: still recorded, still new
    first = judge.compare(list(ms.values()), None, rules)
    verdict = judge.judge("t.py::t", first, recording, has_entry=False)
    assert (verdict.verdict, verdict.accept, verdict.outcome) == ("new", True, "pass")
    # against a baseline that passes: the unsure SLA makes the test inconclusive, not failed
    passed = judge.compare(list(ms.values()), ms, rules)
    verdict = judge.judge("t.py::t", passed, judge.Policy(), has_entry=True)
    assert (verdict.verdict, verdict.outcome) == ("inconclusive", "pass")
    # a violated SLA fails a new test whatever its metrics
    ms["tg512"] = measurement({"itl_p95_ms": [15, 15.5, 16]}, "tg512")
    violated = judge.compare(list(ms.values()), None, rules)
    verdict = judge.judge("t.py::t", violated, judge.Policy(), has_entry=False)
    assert (verdict.verdict, verdict.outcome) == ("regressed", "fail")


def test_ratio_sla_unqualified_applies_per_workload() -> None:
    ms = {
        "tg64": measurement({"e2e_ms": [100, 100, 100], "ttft_ms": [10, 10, 10]}, "tg64"),
        "pp512": measurement({"pp_tps": [500, 500, 500]}, "pp512"),
    }
    comps = gate.check_limits(ms, limits_cfg(sla=("e2e_ms / ttft_ms < 5",)))
    assert [(c.metric, c.verdict) for c in comps] == [("e2e_ms[tg64]/ttft_ms[tg64]", "regressed")]
    zero = {"tg64": measurement({"e2e_ms": [100], "ttft_ms": [0]}, "tg64")}
    (z,) = gate.check_limits(zero, limits_cfg(sla=("e2e_ms / ttft_ms < 5",)))
    assert z.verdict == "inconclusive"


# -- decisions, tables, messages --------------------------------------------------------


def comp(metric: str, verdict: str, **kw: object) -> MetricComparison:
    data: dict[str, object] = {
        "metric": metric,
        "unit": "t/s",
        "better": "higher",
        "baseline_median": 100.0,
        "current_median": 80.0,
        "change_pct": -20.0,
        "threshold": "-10%",
        "verdict": verdict,
        "p_value": 0.004,
        "reason": f"{verdict} because",
    }
    data.update(kw)
    return MetricComparison(**data)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ([], "pass"),
        (["pass", "pass"], "pass"),
        (["new", "new"], "new"),
        (["pass", "inconclusive"], "inconclusive"),
        (["pass", "improved", "inconclusive"], "improved"),
        (["improved", "regressed", "pass"], "regressed"),
        (["new", "pass"], "new"),
    ],
)
def test_decide(verdicts: list[str], expected: str) -> None:
    comps = [comp(f"m{i}", v) for i, v in enumerate(verdicts)]
    assert worst(c.verdict for c in comps) == expected
    assert judge.needs_remeasure({"w": comps}) == ("regressed" in verdicts)


def test_format_table_aligned_and_narrow() -> None:
    comps = [
        comp("tg_tps", "regressed"),
        comp(
            "itl_p95_ms",
            "pass",
            unit="ms",
            better="lower",
            baseline_median=12.3456,
            current_median=12.5,
            change_pct=1.25,
            threshold="+15% or +0.5 ms",
            p_value=None,
        ),
        comp(
            "itl_p95_ms[tg512]/itl_p95_ms[tg64]@d4096-very-long-name",
            "regressed",
            unit="x",
            baseline_median=None,
            change_pct=None,
            threshold="<= 1.3",
            p_value=None,
            reason="ratio 1.5 is not <= 1.3 " * 8,
        ),
        comp("vram_mb", "new", unit="MB", baseline_median=None, change_pct=None, p_value=None),
    ]
    lines = table.format_table(comps)
    assert all(len(line) <= 100 for line in lines)
    header, rule, *rows = lines
    assert header.split() == ["metric", "baseline", "current", "change", "threshold", "verdict"]
    assert rule.startswith("-")
    assert rows[0].split()[:2] == ["tg_tps", "100.0"]
    assert "-20.0%" in rows[0] and "regressed p=0.004" in rows[0]
    assert rows[1].split()[-1] == "pass"
    # columns line up: every verdict starts at the same offset
    starts = {
        line.index(v)
        for line, v in zip(rows[:4], ["regressed", "pass", "regressed", "new"], strict=True)
    }
    assert len(starts) == 1
    # an over-long metric name is cut to the room the other columns leave
    assert rows[2].startswith("itl_p95_ms[tg512]/itl_p95_ms[tg6") and "…" in rows[2]
    # reasons of non-passing rows follow the table (not for "new")
    assert any(line.startswith("  tg_tps: regressed because") for line in lines)
    assert not any("vram_mb: new because" in line for line in lines)


def test_failure_message_ends_with_the_remedy() -> None:
    base = from_rates([100.0, 101.0, 99.0, 100.5, 99.5])
    cur = from_rates([80.0, 81.0, 79.0, 80.5, 79.5])
    comps = {
        "tg32": gate.compare_measurement(cur, base, CFG),
        "sla": gate.check_limits({"tg32": cur}, limits_cfg("tg_tps >= 1")),
    }
    msg = table.failure_message(
        "tests/perf/test_tiny.py::test_tg[moe-mxfp4]",
        comps,
        notes=["suspected regression: re-measured (attempt 2)"],
    )
    lines = msg.splitlines()
    assert lines[0].startswith(
        "tests/perf/test_tiny.py::test_tg[moe-mxfp4]: performance regression: tg_tps -20.0%"
    )
    assert "[tg32]" in lines and "[sla: absolute limits and ratios]" in lines
    assert "suspected regression: re-measured (attempt 2)" in lines
    assert lines[-1] == "re-run with --perf-accept to accept these numbers"
    assert all(len(line) <= 100 for line in lines[1:])
    # informational rows that passed are left out of the failure table
    assert not any(line.startswith("itl_mean_ms") for line in lines)


def test_failure_message_for_limits_only_and_improvements() -> None:
    cur = measurement({"load_ms": [12000, 12000, 12000]}, "load")
    comps = {
        "load": gate.compare_measurement(cur, cur, CFG),
        "sla": gate.check_limits({"load": cur}, limits_cfg("load_ms < 11000")),
    }
    msg = table.failure_message("t.py::test_load", comps)
    assert "performance regression: load_ms[load]" in msg
    assert msg.splitlines()[-1].startswith("absolute limits and SLAs do not follow the baseline")
    improved = {"tg128": [comp("tg_tps", "improved", change_pct=30.0)]}
    msg2 = table.failure_message("t.py::test_fast", improved)
    assert "improved beyond the threshold" in msg2.splitlines()[0]
    assert msg2.splitlines()[-1] == table.REMEDY
