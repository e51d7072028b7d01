"""The measurement engine on real tiny models: timing loop, knobs, metrics, bad input.

Split by tier: pure parts in tests/unit/test_engine.py and real model runs in
tests/integration/test_engine.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llmperf.backends.engine import LoadedModel
from pytest_llmperf.errors import BackendError, ModelFileError, UsageError
from pytest_llmperf.machine import tiny
from pytest_llmperf.model.metrics import per_sample_metrics
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.workloads import Workload

P2 = LoadParams(n_threads=2, n_ctx=1024)


@pytest.fixture(scope="module")
def moe(tiny_model) -> Path:
    return tiny_model("moe-q8_0")


@pytest.fixture(scope="module")
def loaded(moe: Path):
    with LoadedModel(moe, P2) as m:
        yield m


def test_tg_exact_tokens_and_metric_definitions(loaded: LoadedModel) -> None:
    samples = loaded.run(Workload(n_gen=16), repetitions=3, warmup=1)
    assert len(samples) == 3
    s = samples[0]
    assert len(s.token_ns) == 16 and s.prompt_ns is None
    m = s.metrics()
    span = (s.token_ns[-1] - s.token_ns[0]) / 1e9
    assert m["tg_tps"] == pytest.approx(15 / span)
    assert m["tpot_ms"] == pytest.approx(span * 1000 / 15)
    assert m["ttft_ms"] == pytest.approx(s.token_ns[0] / 1e6)
    assert m["e2e_ms"] == pytest.approx(s.token_ns[-1] / 1e6)
    assert m["itl_p50_ms"] <= m["itl_p95_ms"] <= m["itl_p99_ms"] <= m["itl_max_ms"]
    # llama.cpp's counters cross-check the loop: same number of single-token decodes
    assert s.llama["n_eval"] == 16 and s.llama["n_p_eval"] <= 1  # llama.cpp reports >= 1
    assert m["llama_tg_tps"] > 0


def test_pp_pg_and_context_reset(loaded: LoadedModel) -> None:
    [pp] = loaded.run(Workload(n_prompt=100), repetitions=1, warmup=0)
    assert pp.prompt_ns and not pp.token_ns
    assert pp.llama["n_p_eval"] == 100
    samples = loaded.run(Workload(n_prompt=64, n_gen=8), repetitions=2, warmup=1)
    for s in samples:
        # the context is reset before every run: the prompt is evaluated in full each time
        assert s.llama["n_p_eval"] == 64 and len(s.token_ns) == 8
        assert s.prompt_ns is not None and s.token_ns[0] > s.prompt_ns
    values = per_sample_metrics(samples)
    assert set(values) >= {"pp_tps", "tg_tps", "ttft_ms", "itl_p95_ms", "llama_pp_tps"}


def test_depth_prefill_is_untimed(loaded: LoadedModel) -> None:
    [s] = loaded.run(Workload(n_prompt=32, n_depth=256), repetitions=1, warmup=0)
    assert s.n_depth == 256
    assert s.llama["n_p_eval"] == 32  # counters reset after the untimed fill


def test_workload_larger_than_context(loaded: LoadedModel) -> None:
    with pytest.raises(UsageError, match="needs 2001 KV cells but n_ctx=1024"):
        loaded.run(Workload(n_gen=2000), repetitions=1)


def test_cpu_moe_overrides_exactly_the_expert_tensors(moe: Path) -> None:
    with LoadedModel(moe, LoadParams(n_threads=2, cpu_moe=True, n_ctx=256)) as m:
        names = set(m.load.overridden)
        assert len(names) == 3 * tiny.MOE.n_layer
        assert all("_exps" in n for n in names)
        assert all(b.startswith("CPU") for b in m.load.overridden.values())
    with LoadedModel(moe, LoadParams(n_threads=2, n_cpu_moe=2, n_ctx=256)) as m:
        assert {n.split(".")[1] for n in m.load.overridden} == {"0", "1"}
        assert len(m.load.overridden) == 6
    with LoadedModel(moe, LoadParams(n_threads=2, n_ctx=256)) as m:
        assert m.load.overridden == {}


def test_cpu_moe_on_a_dense_model_is_a_warning(tiny_model) -> None:
    with LoadedModel(
        tiny_model("dense-q8_0"), LoadParams(n_threads=2, n_cpu_moe=2, n_ctx=256)
    ) as m:
        assert any("no expert tensors" in w for w in m.warnings)
        assert m.load.overridden == {}


def test_knobs_reach_llama_cpp(moe: Path) -> None:
    p = LoadParams(
        n_threads=1,
        n_ctx=512,
        n_batch=64,
        n_ubatch=32,
        flash_attn="on",
        type_k="q8_0",
        type_v="q8_0",
        use_mmap=False,
    )
    with LoadedModel(moe, p) as m:
        assert m.load.resolved["n_threads"] == 1
        assert m.load.resolved["n_ctx"] == 512
        assert m.load.resolved["flash_attn"] == "on"
        [s] = m.run(Workload(n_prompt=100), repetitions=1, warmup=0)
        assert s.llama["n_p_eval"] == 100


def test_quantized_v_cache_without_flash_attention_is_explained(moe: Path) -> None:
    with pytest.raises(BackendError, match="llama_init_from_model failed") as info:
        LoadedModel(moe, LoadParams(n_threads=1, n_ctx=256, flash_attn="off", type_v="q8_0"))
    assert "flash" in str(info.value).lower()


def test_truncated(tmp_path: Path, moe: Path) -> None:
    data = moe.read_bytes()
    for cut in (100, len(data) // 2, len(data) - 10):
        bad = tmp_path / f"t{cut}.gguf"
        bad.write_bytes(data[:cut])
        with pytest.raises(ModelFileError, match=r"truncated|not a readable GGUF"):
            LoadedModel(bad, P2)


def test_missing_tensor(tmp_path: Path) -> None:
    spec = tiny.TinySpec(n_layer=2, n_embd=256, n_ff=256, n_head=4, n_head_kv=2, n_vocab=512)
    path = tmp_path / "missing.gguf"
    tiny.write_f16(spec, path, omit=frozenset({"blk.1.attn_q.weight"}))
    with pytest.raises(BackendError, match=r"blk\.1\.attn_q\.weight"):
        LoadedModel(path, P2)


def test_model_larger_than_memory_is_refused(moe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    real = psutil.virtual_memory()

    class Tiny:
        available = 1024
        total = real.total

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Tiny())
    with pytest.raises(ModelFileError, match="larger than the memory available"):
        LoadedModel(moe, P2)
