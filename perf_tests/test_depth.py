"""Context depth: pp and tg at growing depths; prints llama-sweep-bench's table."""

import pytest
from _suite import PRIMARY, THREADS

from pytest_llmperf.outputs import sweep_bench_table

DEPTHS = (0, 256, 1024)


@pytest.mark.smoke
@pytest.mark.llmperf(model=PRIMARY, n_threads=THREADS, n_ctx=2048)
def test_depth_sweep(llm_perf):
    results = []
    for depth in DEPTHS:
        results.append(llm_perf.measure(f"pp128@d{depth}", repetitions=3))
        results.append(llm_perf.measure(f"tg32@d{depth}", repetitions=3))
    print("\n" + "\n".join(sweep_bench_table(results)))
