"""The GPU check's parts in the package: its judges on figures made by hand (what a GPU
would read), a model's header bytes, device memory through FakeNVML, what a real worker
resolves of the build's devices, and ``llmperf tiny-model``'s spec options for the check's
own MoE model.

Split by tier: pure parts in tests/unit/test_gpu_verdicts.py and real model runs in
tests/integration/test_gpu_verdicts.py."""

from __future__ import annotations

import pytest

from pytest_llmperf.machine import gguf_info
from pytest_llmperf.verdict.gpu_bytes import MB, ModelBytes


def test_model_bytes_of_the_builtin_moe_model(tiny_model) -> None:
    path = tiny_model("moe-q8_0")
    info = gguf_info.inspect(path)
    sizes = {t.name: t.n_bytes or 0 for t in gguf_info.tensor_table(path).tensors}
    m = ModelBytes.of(sizes, info.expert_tensors, info.n_layer, n_embd_kv=256)
    # 8 layers x 3 expert tensors of 8 experts x 512 x 512 in q8_0 (34 bytes / 32 values)
    assert m.expert_tensors == 24
    assert m.expert_mb == pytest.approx(24 * 8 * 512 * 512 * 34 / 32 / MB) == 51.0
    assert sum(m.layer_mb.values()) + m.output_mb < info.file_size / MB


# -- what a worker resolves, and the tiny-model command ---------------------------------


def test_a_worker_resolves_the_builds_devices(tiny_model) -> None:
    from pytest_llmperf.backends.runner import IsolatedRunner
    from pytest_llmperf.model.params import LoadParams

    runner = IsolatedRunner(str(tiny_model("dense-q8_0")), LoadParams(n_threads=1, n_ctx=128))
    runner.close()
    devs = runner.resolved["ggml_devices"]
    assert devs and all(set(d) == {"name", "description", "type"} for d in devs)
    assert any(d["type"] == 0 and d["name"] == "CPU" for d in devs)  # ggml's CPU backend
    gpus = [d for d in devs if d["type"] in (1, 3)]
    assert runner.resolved["supports_gpu_offload"] is bool(gpus)
