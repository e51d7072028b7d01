"""CPU tuning: n_threads x n_batch, as in the seed methodology's sweep."""

import pytest
from _suite import DENSE

from pytest_llmperf import configs


@pytest.mark.parametrize(
    "llmperf_config", configs(DENSE, n_threads=[1, 2], n_batch=[128, 256, 512], n_ubatch=128)
)
def test_threads_x_batch(llm_perf):
    llm_perf.measure("pp256")
    llm_perf.measure("tg64")
