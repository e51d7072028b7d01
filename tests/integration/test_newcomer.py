"""What a newcomer meets first: llama.cpp's own batch semantics, clean collection errors, a
quiet set-up, thread counts that fit the machine.

Split by tier: pure parts in tests/unit/test_newcomer.py, real model runs in
tests/integration/test_newcomer.py and pytest sessions and child processes in
tests/e2e/test_newcomer.py."""

from __future__ import annotations

import os

import pytest

from pytest_llmperf.backends.engine import LoadedModel
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.workloads import Workload

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def test_more_threads_than_cpus_are_warned_about(tiny_model: object) -> None:
    cpus = len(os.sched_getaffinity(0))
    path = tiny_model("moe-q8_0")  # type: ignore[operator]
    with LoadedModel(path, LoadParams(n_threads=cpus + 1, n_ctx=256)) as m:
        assert any(f"{cpus + 1} threads on {cpus} CPUs" in w for w in m.warnings), m.warnings
    with LoadedModel(path, LoadParams(n_threads=cpus, n_ctx=256)) as m:
        m.run(Workload.parse("tg4"), 1, 0)
        assert not any("threads on" in w for w in m.warnings)
