"""Streamed requests: llama-cpp-python's own high-level path on real tiny models, through
real runners (in this process and in a worker process) and real pytest sessions.

Split by tier: pure parts in tests/unit/test_stream.py, real model runs in
tests/integration/test_stream.py and pytest sessions and child processes in
tests/e2e/test_stream.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_llmperf.errors import UsageError
from pytest_llmperf.model.metrics import METRICS, Sample, chunk_gaps_ms
from pytest_llmperf.model.prompts import load_prompts
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

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


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
        ({"prompt": "x", "sampling": {"temperature": object()}}, "temperature=<object"),
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
