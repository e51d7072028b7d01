"""The built-in tiny models: build, cache, quantize, run.

Split by tier: pure parts in tests/unit/test_tiny.py, real model runs in
tests/integration/test_tiny.py and pytest sessions and child processes in
tests/e2e/test_tiny.py.
"""

from __future__ import annotations

import hashlib
import multiprocessing
from pathlib import Path

import pytest

from pytest_llmperf.backends.engine import LoadedModel
from pytest_llmperf.machine import gguf_info, tiny
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.workloads import Workload

SMALL = tiny.TinySpec(n_layer=2, n_embd=256, n_ff=256, n_head=4, n_head_kv=2, n_vocab=512)
SMALL_MOE = tiny.TinySpec(
    n_layer=2, n_embd=256, n_ff=256, n_head=4, n_head_kv=2, n_vocab=512, n_expert=4, n_expert_used=2
)


@pytest.mark.parametrize("variant", tiny.variant_names())
def test_every_variant_loads_and_generates_exactly_n_tokens(tiny_model, variant: str) -> None:
    path = tiny_model(variant)
    with LoadedModel(path, LoadParams(n_threads=2, n_ctx=256)) as m:
        [sample] = m.run(Workload(n_gen=37), repetitions=1, warmup=0)
        assert len(sample.token_ns) == 37
        assert sample.token_ns == sorted(sample.token_ns)
        # llama.cpp's own counter: the start token and 36 single-token decodes
        assert sample.llama["n_eval"] == 37


def test_moe_expert_tensors_and_mxfp4_storage(tiny_model) -> None:
    info = gguf_info.inspect(tiny_model("moe-mxfp4"))
    assert info.n_expert == tiny.MOE.n_expert
    assert len(info.expert_tensors) == 3 * tiny.MOE.n_layer
    types = gguf_info.tensor_types(info.path)
    assert {types[n] for n in info.expert_tensors} == {"MXFP4"}
    assert types["blk.0.attn_q.weight"] == "Q8_0"
    dense = gguf_info.tensor_types(tiny_model("dense-mxfp4"))
    assert dense["blk.0.ffn_up.weight"] == "MXFP4"
    q4 = gguf_info.inspect(tiny_model("moe-q4_k_m"))
    assert q4.quant == "Q4_K_M"


def test_cache_is_reused_and_rebuilt_when_the_spec_changes(tmp_path: Path) -> None:
    first = tiny.ensure_model(SMALL, "q8_0", tmp_path)
    assert first.built and first.path.is_file()
    again = tiny.ensure_model(SMALL, "q8_0", tmp_path)
    assert not again.built and again.path == first.path
    changed = tiny.ensure_model(tiny.TinySpec(**{**SMALL.__dict__, "n_layer": 3}), "q8_0", tmp_path)
    assert changed.built and changed.path != first.path
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_build_is_deterministic(tmp_path: Path) -> None:
    a = tiny.ensure_model(SMALL_MOE, "q4_k_m", tmp_path / "a").path
    b = tiny.ensure_model(SMALL_MOE, "q4_k_m", tmp_path / "b").path
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()


def _build(directory: str) -> str:
    return str(tiny.ensure_model(SMALL_MOE, "mxfp4", directory).path)


def test_concurrent_builders_do_not_corrupt_the_cache(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        paths = pool.map(_build, [str(tmp_path)] * 3)
    assert len(set(paths)) == 1
    gguf_info.inspect(paths[0])  # a complete, readable file
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_large_vocab_option(tmp_path: Path) -> None:
    spec = tiny.TinySpec(n_layer=1, n_embd=256, n_ff=256, n_head=4, n_head_kv=2, n_vocab=64_000)
    path = tiny.ensure_model(spec, "q8_0", tmp_path).path
    assert gguf_info.inspect(path).n_vocab == 64_000
