"""The GPU check's parts in the package: device memory through FakeNVML, what a real
worker resolves of the build's devices, and ``llmperf tiny-model``'s spec options for the
check's own MoE model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_llmperf.cli.main import main
from pytest_llmperf.machine import devices, gguf_info
from tests.fake_nvml import FakeGPU, FakeNVML

# -- device memory through NVML (FakeNVML) ---------------------------------------------


@pytest.fixture
def two_gpus() -> Iterator[FakeNVML]:
    nv = FakeNVML([FakeGPU(used_mb=500, uuid="GPU-a"), FakeGPU(used_mb=700, uuid="GPU-b")])
    devices.set_nvml_module(nv)
    yield nv
    devices.set_nvml_module(None)


def test_device_used_memory_of_the_visible_gpus(
    two_gpus: FakeNVML, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert devices.device_used_mb() == 1200.0
    two_gpus.gpus[1].processes[4242] = 300  # another process's model counts too
    assert devices.device_used_mb() == 1500.0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-b")
    assert devices.device_used_mb() == 1000.0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert devices.device_used_mb() is None
    devices.set_nvml_module(FakeNVML(fail_init=True))
    assert devices.device_used_mb() is None


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


def test_tiny_model_spec_options_family_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["tiny-model", "--variant", "moe-f16", "--cache-dir", str(tmp_path), "--json"]
    args += ["--family", "my-moe", "--n-layer", "2", "--n-embd", "256", "--n-ff", "256"]
    args += ["--n-head", "4", "--n-head-kv", "1", "--n-expert", "4", "--n-expert-used", "3"]
    args += ["--n-vocab", "512"]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    path = Path(doc["path"])
    assert doc["built"] and doc["family"] == "my-moe" and doc["quant"] == "f16"
    assert path.parent == tmp_path and path.name.startswith("my-moe-f16-")
    meta = gguf_info.tensor_table(path).metadata
    assert meta["llama.attention.head_count"] == 4 == doc["spec"]["n_head"]
    assert meta["llama.attention.head_count_kv"] == 1 and meta["llama.expert_used_count"] == 3
    assert meta["llama.expert_count"] == 4 and gguf_info.inspect(path).n_layer == 2
    assert main(args) == 0  # reused
    again = json.loads(capsys.readouterr().out)
    assert again["path"] == doc["path"] and not again["built"]
    # a family of its own is never taken for a stale built-in file
    assert main(["tiny-model", "--prune", "--cache-dir", str(tmp_path)]) == 0
    assert path.exists()
    assert main(["tiny-model", "--family", "../x", "--cache-dir", str(tmp_path)]) == 2
    assert "--family '../x'" in capsys.readouterr().err
