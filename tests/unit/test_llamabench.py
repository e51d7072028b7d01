"""The llama-bench backend: the real llama-bench of the vendored llama.cpp tree (built once
into the cache, like the wheel), run through the same marker, gate and baselines; a fork's
unknown flag reaches the binary unchanged.

Split by tier: pure parts in tests/unit/test_llamabench.py and pytest sessions and child
processes in tests/e2e/test_llamabench.py."""

from __future__ import annotations

import pytest

from pytest_llmperf.backends.llamabench import bench_args
from pytest_llmperf.model.params import LoadParams

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def test_load_params_in_llama_bench_syntax() -> None:
    p = LoadParams.from_args("-t 2 -b 256 -ub 64 -fa on -ctk q8_0 -ot exps=CPU --poll 0")
    assert bench_args(p) == [
        "-t", "2", "-b", "256", "-ub", "64", "-fa", "on", "-ctk", "q8_0", "-ot", "exps=CPU",
        "--poll", "0",
    ]  # fmt: skip
    assert bench_args(LoadParams(n_ctx=512, cpu_moe=True, use_mmap=False)) == [
        "-ncmoe", "9999", "-lm", "none",
    ]  # fmt: skip
