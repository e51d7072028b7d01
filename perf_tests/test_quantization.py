"""Quantization comparison: the same MoE model in Q8_0, Q4_K_M and MXFP4 (speed, file
size, memory). `pytest perf_tests -k mxfp4` selects the MXFP4 cases."""

import pytest
from _suite import MOE, THREADS

from pytest_llmperf import configs


@pytest.mark.smoke
@pytest.mark.parametrize("llmperf_config", configs(MOE, n_threads=THREADS))
def test_quant(llm_perf):
    m = llm_perf.measure("pp128+tg64", repetitions=5)
    assert m.values["model_size_mb"][0] > 0
