"""Short (64) and long (512 tokens) generation after a 64-token prompt: tg_tps, TTFT,
ITL p50/p95, with the SLA itl_p95(long) / itl_p95(short) <= 1.30."""

import pytest
from _suite import PRIMARY, THREADS

SHORT = "pp64+tg64"
LONG = "pp64+tg512"


@pytest.mark.smoke
@pytest.mark.llmperf(
    model=PRIMARY,
    n_threads=THREADS,
    n_ctx=1024,
    sla=[f"itl_p95_ms[{LONG}] / itl_p95_ms[{SHORT}] <= 1.30"],
)
def test_short_and_long_generation(llm_perf):
    short = llm_perf.measure(SHORT, repetitions=5)
    long = llm_perf.measure(LONG, repetitions=3)
    assert len(short.samples[0].token_ns) == 64
    assert len(long.samples[0].token_ns) == 512
