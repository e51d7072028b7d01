"""Paired verdicts: the rule on known rounds, then real interleaved runs of real models
(a candidate several times slower is caught; the same configuration twice is not), the
plugin's reference= and --perf-reference, llmperf ab, and contamination.

Split by tier: pure parts in tests/unit/test_paired.py, real model runs in
tests/integration/test_paired.py and pytest sessions and child processes in
tests/e2e/test_paired.py."""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.integration.test_paired import REGISTRY

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


# -- real rounds -------------------------------------------------------------------------

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
    # the clean rounds: the 3 asked for, or 2 (a round another process took the CPU
    # during is left out, so a busy machine shows fewer); the column is right-aligned and
    # as wide as its widest ratio (another metric's "9.295 [7.078, 11.287]")
    assert re.search(r"\| tg_tps +\|[^\n]*\| +\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] \| +[23] \|", md)


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
        # the summary names each test's least resolved metric (itl_p95_ms as often as tg_tps)
        res.stdout.fnmatch_lines(["*test_tiny_threshold: * undecided: its rounds resolve*"])
