"""What a newcomer meets first: llama.cpp's own batch semantics, clean collection errors, a
quiet set-up, thread counts that fit the machine.

Split by tier: pure parts in tests/unit/test_newcomer.py, real model runs in
tests/integration/test_newcomer.py and pytest sessions and child processes in
tests/e2e/test_newcomer.py."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

RUN = ["-p", "no:cacheprovider", "--perf-machine=m", "--perf-missing=record", "--perf-warmup=0"]
INTERNAL_FRAME = re.compile(r"pytest_llmperf/[\w/]+\.py:\d+")


def test_b_alone_takes_llama_cpps_micro_batch(pytester: pytest.Pytester) -> None:
    """llama-bench accepts -b 128 with its default -ub 512: llama.cpp caps n_ubatch at
    n_batch. So do we; only an explicit -ub above -b is refused."""
    pytester.makepyfile(
        test_perf="""
import pytest
from pytest_llmperf import configs

@pytest.mark.llmperf(model="tiny-moe-q8_0", args="-t 2 -c 256 -b 128")
def test_marker(llm_perf):
    m = llm_perf.measure("pp64", repetitions=1)
    assert m.resolved["n_ubatch"] == 128

@pytest.mark.parametrize("llmperf_config", configs("tiny-moe-q8_0", n_threads=2, n_ctx=1024,
                                                   n_batch=[64, 512]))
def test_configs(llm_perf):
    m = llm_perf.measure("pp32", repetitions=1)
    assert m.resolved["n_ubatch"] == min(512, llm_perf.config.params.n_batch)
"""
    )
    res = pytester.runpytest(*RUN, "--collect-only", "-q")
    res.stdout.fnmatch_lines(["*test_configs[[]tiny-moe-q8_0-c1024-t2-b64[]]*"])
    pytester.runpytest(*RUN).assert_outcomes(passed=3)


def test_a_bad_configs_call_at_import_is_one_clear_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_x="""
import pytest
from pytest_llmperf import configs

@pytest.mark.parametrize("llmperf_config", configs("tiny-moe-mxfp4", n_batch=[128, 512],
                                                   n_ubatch=256))
def test_decode(llm_perf):
    llm_perf.measure("tg8")
"""
    )
    res = pytester.runpytest(*RUN)
    assert res.ret == pytest.ExitCode.INTERRUPTED  # a collection error
    out = res.stdout.str()
    assert (
        "test_x.py: configs('tiny-moe-mxfp4', n_batch=[128, 512], n_ubatch=256): the "
        "combination model='tiny-moe-mxfp4', n_ubatch=256, n_batch=128: n_ubatch=256 is "
        "larger than n_batch=128"
    ) in out
    assert "leave n_ubatch out" in out
    assert not INTERNAL_FRAME.findall(out), out


def test_backend_warnings_reach_the_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_perf="""
import pytest

@pytest.mark.llmperf(model="tiny-dense-q8_0", n_threads=2, n_ctx=256, cpu_moe=True)
def test_dense_with_cpu_moe(llm_perf):
    llm_perf.measure("tg8", repetitions=1)
"""
    )
    res = pytester.runpytest(*RUN, "-v", "--perf-report=rep")
    res.assert_outcomes(passed=1)
    data = (pytester.path / "rep" / "results.json").read_text()
    assert "cpu_moe has no effect" in data and "no expert tensors" in data
