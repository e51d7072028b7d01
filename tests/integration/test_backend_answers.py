"""What a backend answers is checked against what it was asked (issue 26, round three):
every row and number from a backend (the engine, a worker, llama-bench) before it is
gated, stored or shown (pytest_llmperf.backends.answers).

llama-bench is a fork's binary here, which cannot be assumed on this machine: the tests
of its answers run a **fake llama-bench**, a small script that answers the flags it is
given the way llama-bench's ``-o jsonl`` does, wrong in one way per case (a row of
another test, no samples, a 0 or a word among them, too few samples, a test twice). The
real llama-bench of the vendored llama.cpp runs in tests/e2e/test_llamabench.py.

Split by tier: pure parts in tests/unit/test_backend_answers.py, real model runs in
tests/integration/test_backend_answers.py and pytest sessions and child processes in
tests/e2e/test_backend_answers.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.workloads import Workload

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def test_the_engine_and_the_worker_answer_through_the_check(model: Path) -> None:
    """The real engine, isolated and in this process, answers what was asked."""
    from pytest_llmperf.backends.factory import start_runner

    for isolate in (False, True):
        runner = start_runner(str(model), LoadParams(n_threads=2, n_ctx=256), isolate=isolate)
        try:
            m = runner.measure(Workload.parse("tg8"), repetitions=2, warmup=0)
            assert len(m.samples) == 2 and all(v > 0 for v in m.values["tg_tps"])
            load = runner.measure_load(2)
            assert len(load.values["load_ms"]) == 2
        finally:
            runner.close()
