"""The llama-bench backend: the real llama-bench of the vendored llama.cpp tree (built once
into the cache, like the wheel), run through the same marker, gate and baselines; a fork's
unknown flag reaches the binary unchanged.

Split by tier: pure parts in tests/unit/test_llamabench.py and pytest sessions and child
processes in tests/e2e/test_llamabench.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_llmperf.machine import builds

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="session")
def llama_bench() -> Path:
    """llama-bench built from llama-cpp-python's vendored llama.cpp (minutes the first time
    on a fresh machine, then reused from the cache)."""
    return builds.build("bench", kind="llama_bench").lib


def _project(pytester: pytest.Pytester, binary: Path, tests: str) -> None:
    pytester.makefile(
        ".yaml", llmperf=f"builds:\n  lb: {{llama_bench: {json.dumps(str(binary))}}}\n"
    )
    pytester.makepyfile(test_perf=tests)


def test_llama_bench_runs_through_the_plugin(pytester: pytest.Pytester, llama_bench: Path) -> None:
    _project(
        pytester,
        llama_bench,
        """
import pytest

@pytest.mark.llmperf(model="tiny-moe-q8_0", n_threads=2, build="lb")
def test_bench(llm_perf):
    tg = llm_perf.measure("tg16", repetitions=2)
    pp = llm_perf.measure("pp32", repetitions=2)
    pg = llm_perf.measure("pp32+tg8", repetitions=2)
    assert len(tg.values["tg_tps"]) == 2 and len(pp.values["pp_tps"]) == 2
    assert pg.values["ttft_ms"] and "itl_p95_ms" not in tg.values
    assert "per-token" in tg.absent["itl_p95_ms"]
    assert tg.resolved["backend_kind"] == "llama-bench"
    assert tg.fingerprint["software"]["llama_bench_version"]
""",
    )
    res = pytester.runpytest("-p", "no:cacheprovider", "--perf-machine=m", "--perf-accept", "-v")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines(["*test_perf.py::test_bench PASSED*"])


def test_a_fork_flag_reaches_the_binary_unchanged(
    pytester: pytest.Pytester, llama_bench: Path
) -> None:
    _project(
        pytester,
        llama_bench,
        """
import pytest

@pytest.mark.llmperf(model="tiny-moe-q8_0", n_threads=2, build="lb", bench_args="-mla 3 -fmoe 1")
def test_fork(llm_perf):
    llm_perf.measure("tg8", repetitions=1)
""",
    )
    res = pytester.runpytest("-p", "no:cacheprovider", "--perf-machine=m")
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    # mainline's llama-bench does not know ik_llama.cpp's -mla: it says so, on our command
    assert "-mla 3 -fmoe 1" in out and "-mla" in out.split("command:", 1)[1]
    assert "llama-bench" in out


def test_bench_args_need_a_llama_bench_build(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_perf="""
import pytest

@pytest.mark.llmperf(model="tiny-moe-q8_0", n_threads=2, bench_args="-mla 3")
def test_x(llm_perf):
    llm_perf.measure("tg8")
"""
    )
    res = pytester.runpytest("-p", "no:cacheprovider", "--perf-machine=m")
    res.assert_outcomes(failed=1)
    assert "is for a llama-bench build" in res.stdout.str()
