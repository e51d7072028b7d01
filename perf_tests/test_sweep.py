"""A sampled parameter sweep (perf_tests/sweeps.yaml): one test per point, ids naming
each variant, e.g. test_sweep[tiny-moe-q8_0-q8_f16-small-t2]."""

import pytest


@pytest.mark.llmperf_sweep(file="sweeps.yaml", name="kv-batch")
def test_sweep(llm_perf):
    llm_perf.measure_all()
