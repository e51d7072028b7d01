"""Streamed requests: llama-cpp-python's own high-level path on real tiny models, through
real runners (in this process and in a worker process) and real pytest sessions.

Split by tier: pure parts in tests/unit/test_stream.py, real model runs in
tests/integration/test_stream.py and pytest sessions and child processes in
tests/e2e/test_stream.py."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


# -- through pytest ---------------------------------------------------------------------

TEST_STREAM = """
import pytest

@pytest.mark.llmperf(
    model="tiny-moe-mxfp4", n_threads=2, n_ctx=512,
    sla=["stream_itl_p95_ms[chat-short+tg6] / stream_itl_p95_ms[a+tg6] <= 1000000"],
    limits=["stream_overhead[a+tg6] < 1000000"],
)
def test_stream(llm_perf):
    a = llm_perf.measure_stream(prompt="Tell me a story.", max_tokens=6, name="a",
                                sampling={"temperature": 0.0})
    b = llm_perf.measure("stream:chat-short+tg6")
    assert a.workload.name == "stream:a+tg6" and b.workload.name == "stream:chat-short+tg6"
    assert len(a.samples) == 2

@pytest.mark.llmperf(model="tiny-moe-mxfp4", n_threads=2, n_ctx=512)
def test_same_name_twice(llm_perf):
    llm_perf.measure_stream(prompt="one", max_tokens=4, name="x")
    llm_perf.measure_stream(prompt="two", max_tokens=4, name="x")

@pytest.mark.llmperf(model="tiny-moe-mxfp4", n_threads=2, n_ctx=512)
def test_bad_messages(llm_perf):
    llm_perf.measure_stream(messages=[{"role": "user", "text": "hi"}])
"""


def test_measure_stream_in_a_pytest_session(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_perf=TEST_STREAM)
    res = pytester.runpytest(
        "--perf-in-process",
        "--perf-repetitions=2",
        "--perf-warmup=0",
        "--perf-machine=m",
        "--perf-accept",
        "--perf-report=rep",
        "-p",
        "no:cacheprovider",
    )
    res.assert_outcomes(passed=1, failed=2)
    res.stdout.fnmatch_lines(
        [
            "*test_same_name_twice*two different requests are both named stream:x+tg4*name=*",
            "*test_bad_messages*message 1 has keys *'role', 'text'*needs exactly*",
        ]
    )
    rep = pytester.path / "rep"
    summary = (rep / "summary.md").read_text()
    assert "## Streaming: engine vs application path" in summary
    assert "stream:chat-short+tg6" in summary and "create_chat_completion" in summary
    assert (rep / "itl.png").exists()
    data = json.loads((rep / "results.json").read_text())
    (test,) = [t for t in data["tests"] if t["nodeid"].endswith("test_stream")]
    names = {m["workload"]["name"] for m in test["measurements"]}
    assert names == {"stream:a+tg6", "stream:chat-short+tg6"}
    sample = test["measurements"][0]["samples"][0]
    assert sample["stream"] and sample["chunk_ns"] and sample["engine"]["tg_tps"] > 0
    sla = test["comparisons"]["sla"]
    assert sorted(c["metric"] for c in sla) == [
        "stream_itl_p95_ms[stream:chat-short+tg6]/stream_itl_p95_ms[stream:a+tg6]",
        "stream_overhead[stream:a+tg6]",
    ]
    assert all(c["verdict"] == "pass" and c["current_median"] for c in sla)
    stored = list((pytester.path / "baselines").rglob("*.json"))
    assert any("stream:a+tg6" in p.read_text() for p in stored)
