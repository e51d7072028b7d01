"""Paired verdicts: the rule on known rounds, then real interleaved runs of real models
(a candidate several times slower is caught; the same configuration twice is not), the
plugin's reference= and --perf-reference, llmperf ab, and contamination."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pytest_llmperf.api import config
from pytest_llmperf.cli.main import main
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


# -- real rounds -------------------------------------------------------------------------

REGISTRY = """
models:
  fast: {tiny: {moe: true, n_layer: 4, quant: q8_0}}
  slow: {tiny: {moe: true, n_layer: 24, quant: q8_0}}
"""
RUN = ["-p", "no:cacheprovider", "--perf-machine=m", "--perf-warmup=1", "--perf-rounds=3"]


def test_reference_marker_catches_a_slower_candidate(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", llmperf=REGISTRY)
    pytester.makepyfile(
        test_perf="""
import pytest

@pytest.mark.llmperf(model="slow", n_threads=2, n_ctx=256, reference={"model": "fast"})
def test_slow_candidate(llm_perf):
    llm_perf.measure("tg16")

@pytest.mark.llmperf(model="fast", n_threads=2, n_ctx=256, reference={"model": "slow"})
def test_fast_candidate(llm_perf):
    llm_perf.measure("tg16")
"""
    )
    res = pytester.runpytest(*RUN, "-rf", "--perf-report=out")
    res.assert_outcomes(failed=1, passed=1)
    res.stdout.fnmatch_lines(
        [
            "*metric*reference*candidate*ratio [[]interval[]]*threshold*verdict*",
            "*tg_tps*regressed*",
            "*judged against the reference fast-c256-t2*",
            "FAILED test_perf.py::test_slow_candidate*",
        ]
    )
    # nothing was stored: a paired test does not use the baseline files
    assert not (pytester.path / "baselines").exists()
    # summary.md says what the verdict rests on: the reference, the ratio's interval, rounds
    md = (pytester.path / "out" / "summary.md").read_text(encoding="utf-8")
    assert "Paired against fast-c256-t2, side by side" in md
    assert re.search(
        r"\| reference \| candidate \| +change \| +ratio \[interval\] \| rounds \|", md
    )
    assert re.search(r"\| tg_tps +\|[^\n]*\| \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] \| +[3-9] \|", md)


def test_session_reference_on_the_same_configuration_is_refused(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", llmperf=REGISTRY)
    pytester.makepyfile(
        test_perf="""
import pytest

@pytest.mark.llmperf(model="fast", n_threads=2, n_ctx=256)
def test_x(llm_perf):
    llm_perf.measure("tg8")
"""
    )
    res = pytester.runpytest(*RUN, "--perf-reference=n_threads:2")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert "is the test's own configuration" in res.stderr.str()
    res = pytester.runpytest(*RUN, "--perf-reference=model:slow")
    res.assert_outcomes(passed=1)  # the candidate is much faster than its reference
    res.stdout.fnmatch_lines(["*improved*"])


def test_llmperf_ab(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "llmperf.yaml").write_text(REGISTRY)
    code = main(
        [
            "ab",
            "--model",
            "fast",
            "--model-b",
            "slow",
            "--args",
            "-t 2 -c 256",
            "-n",
            "16",
            "--rounds",
            "3",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "| tg16 | tg_tps |" in out and "regressed" in out
    code = main(
        [
            "ab",
            "--model",
            "fast",
            "--model-b",
            "slow",
            "--args",
            "-t 2 -c 256",
            "-p",
            "32",
            "--rounds",
            "3",
            "-o",
            "json",
        ]
    )
    data = json.loads(capsys.readouterr().out)
    assert code == 1 and data["results"][0]["test"] == "pp32" and data["results"][0]["rounds_data"]
    assert main(["ab", "--model", "fast", "--args", "-t 2", "-n", "8"]) == 2
    assert "A and B are the same configuration" in capsys.readouterr().err


# -- contamination ------------------------------------------------------------------------

HOG = "import sys, time\nend = time.time() + float(sys.argv[1])\nwhile time.time() < end: pass\n"


def test_a_busy_neighbour_marks_repetitions_contaminated(tiny_model: object) -> None:
    from pytest_llmperf.backends.runner import IsolatedRunner
    from pytest_llmperf.model.params import LoadParams
    from pytest_llmperf.model.workloads import Workload

    model = tiny_model("moe-q8_0")  # type: ignore[operator]
    runner = IsolatedRunner(str(model), LoadParams(n_threads=1, n_ctx=256), "m")
    hogs = [subprocess.Popen([sys.executable, "-c", HOG, "20"]) for _ in range(os.cpu_count() or 2)]
    try:
        time.sleep(0.5)
        m = runner.measure(Workload.parse("tg64"), repetitions=3, warmup=0)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
        runner.close()
    assert all(s.contaminated for s in m.samples), [s.contention for s in m.samples]
    assert max(s.contention["others_cpu"] for s in m.samples) > 0.3


def test_xdist_workers_times_threads_beyond_the_cores_is_warned_loudly(
    pytester: pytest.Pytester,
) -> None:
    pytest.importorskip("xdist")
    from pytest_llmperf.session.perf_session import oversubscription

    assert oversubscription(2, 1, cores=2) == ""
    assert "2 pytest-xdist workers x 2 llama.cpp threads = 4 > 2 cores" in oversubscription(
        2, 2, cores=2
    )
    cores = os.cpu_count() or 1
    pytester.makefile(".yaml", llmperf=REGISTRY)
    pytester.makepyfile(
        test_perf="".join(
            f"""
import pytest

@pytest.mark.llmperf(model="fast", n_threads={cores}, n_ctx=256)
def test_{i}(llm_perf):
    llm_perf.measure("tg8", repetitions=1)
"""
            for i in range(2)
        )
    )
    res = pytester.runpytest(*RUN, "-n", "2", "--perf-missing=record")
    res.assert_outcomes(passed=2)
    res.stdout.fnmatch_lines([f"*WARNING: oversubscribed: 2 pytest-xdist workers x {cores}*"])


def test_the_sides_resolved_facts_are_compared_field_by_field(tiny_model: object) -> None:
    """Real workers: what each resolved (flash attention as llama.cpp decided it, threads,
    the environment it sees) must match unless the pair varies it."""
    from pytest_llmperf.backends.runner import IsolatedRunner
    from pytest_llmperf.model.params import LoadParams

    path = str(tiny_model("moe-q8_0"))  # type: ignore[operator]
    base = LoadParams.from_args("-t 2 -c 256 -fa off")
    a = IsolatedRunner(path, base, "m")
    b = IsolatedRunner(path, base.merged("-fa on"), "m", launcher=("env", "OMP_WAIT_POLICY=active"))
    try:
        fa, fb = alike.facts(a), alike.facts(b)
    finally:
        a.close()
        b.close()
    assert alike.differences(fa, fa, ()) == []  # one worker against itself: alike
    named = {d.split(":")[0] for d in alike.differences(fa, fb, ("cpu_moe",))}
    assert named == {"resolved.flash_attn", "env.OMP_WAIT_POLICY"}
    # varying flash attention and the launcher explains both
    assert alike.differences(fa, fb, ("flash_attn", "launcher")) == []


def test_the_tests_of_one_pair_share_their_loads(pytester: pytest.Pytester) -> None:
    """Two tests comparing the same reference and candidate run on the same workers: each
    side is loaded once per load pair for the session, not once per test."""
    pytester.makefile(".yaml", llmperf=REGISTRY)
    pytester.makepyfile(
        test_perf="""
import pytest

MARK = dict(model="fast", n_threads=2, n_ctx=256, reference={"model": "fast2"})

@pytest.mark.llmperf(**MARK)
def test_one(llm_perf):
    llm_perf.measure("tg8")

@pytest.mark.llmperf(**MARK)
def test_two(llm_perf):
    llm_perf.measure("pp16")
    llm_perf.measure("tg8")
"""
    )
    (pytester.path / "llmperf.yaml").write_text(
        REGISTRY + "  fast2: {tiny: {moe: true, n_layer: 4, quant: q8_0}}\n"
    )
    res = pytester.runpytest(*RUN, "--perf-report=out")
    assert res.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
    doc = json.loads((pytester.path / "out" / "results.json").read_text())
    pids: dict[str, set[tuple[int, int]]] = {}
    for test in doc["tests"]:
        for m in test["measurements"]:
            for rec in m["resolved"]["paired"]["loads_records"]:
                pids.setdefault(test["nodeid"], set()).add((rec["pids"]["a"], rec["pids"]["b"]))
    one, two = pids["test_perf.py::test_one"], pids["test_perf.py::test_two"]
    assert one <= two  # the second test ran on the first one's workers (and maybe more)


def test_a_budget_leaves_undecided_metrics_saying_what_they_could_see(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".yaml", llmperf=REGISTRY)
    pytester.makepyfile(
        test_perf="""
import pytest

@pytest.mark.llmperf(model="fast", n_threads=2, n_ctx=256, reference={"model": "fast2"},
                     paired={"tg_tps": "-0.1%"})
def test_tiny_threshold(llm_perf):
    llm_perf.measure("tg8")
"""
    )
    (pytester.path / "llmperf.yaml").write_text(
        REGISTRY + "  fast2: {tiny: {moe: true, n_layer: 4, quant: q8_0}}\n"
    )
    # a threshold of 0.1% is never decided in the few rounds a 1-second budget leaves
    res = pytester.runpytest(*RUN[:-1], "--perf-budget=1", "--perf-report=out")
    assert res.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
    doc = json.loads((pytester.path / "out" / "results.json").read_text())
    [test] = doc["tests"]
    [m] = test["measurements"]
    assert m["resolved"]["paired"]["stopped"] in ("budget", "regressed", "hopeless")
    [tg] = [c for c in test["comparisons"]["tg8"] if c["metric"] == "tg_tps"]
    if tg["verdict"] == "inconclusive" and "contaminated" not in tg["reason"]:
        # (a busy machine can leave every round contaminated: then nothing is compared)
        assert tg["detectable_pct"] is not None, tg["reason"]
        assert "these rounds resolve changes beyond" in tg["reason"]
        res.stdout.fnmatch_lines(["*tg_tps undecided: its rounds resolve*"])
