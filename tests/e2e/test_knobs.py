"""llama-bench's knobs through the engine: each one parsed, applied through llama.cpp's API,
seen to reach llama.cpp (its log, a resolved value, the compute threads' placement), and
said to have no effect where this build or machine ignores it.

Split by tier: pure parts in tests/unit/test_knobs.py, real model runs in
tests/integration/test_knobs.py and pytest sessions and child processes in
tests/e2e/test_knobs.py."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def test_a_sweep_over_override_patterns_and_poll(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".yaml",
        sweeps="""
models: [tiny-moe-q8_0]
workloads: [tg8]
repetitions: 1
base: "-c 256 -t 2"
axes:
  overrides:
    - {name: none, args: ""}
    - {name: experts, args: "-ot exps=CPU"}
    - {name: layer0, args: "-ot blk\\\\.0\\\\.=CPU"}
  poll: [0, 50]
""",
    )
    pytester.makepyfile(
        """
import pytest

@pytest.mark.llmperf_sweep(file="sweeps.yaml")
def test_sweep(llm_perf):
    llm_perf.measure_all()
"""
    )
    res = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--perf-machine=m",
        "--perf-missing=record",
        "--perf-warmup=0",
        "-q",
    )
    res.assert_outcomes(passed=6)


def test_marker_run_flags(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest

@pytest.mark.llmperf(model="tiny-moe-q8_0", args="-t 2 -c 256 -r 2 --no-warmup")
def test_x(llm_perf):
    m = llm_perf.measure("tg8")
    assert m.repetitions == 2 and m.warmup == 0
"""
    )
    res = pytester.runpytest("-p", "no:cacheprovider", "--perf-machine=m", "--perf-missing=record")
    res.assert_outcomes(passed=1)
