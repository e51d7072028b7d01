"""Cold load time (the seed methodology's load_ms < 11000 SLA for the primary model)."""

import pytest
from _suite import PRIMARY, THREADS


@pytest.mark.smoke
@pytest.mark.llmperf(model=PRIMARY, n_threads=THREADS, limits=["load_ms < 11000"])
def test_cold_load(llm_perf):
    m = llm_perf.measure_load(repetitions=5)
    # side by side (--perf-reference) the rounds are loads, as many as the verdict needs
    assert len(m.values["load_ms"]) >= 5
