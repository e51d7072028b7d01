"""The GPU check's parts in the package: its judges on figures made by hand (what a GPU
would read), a model's header bytes, device memory through FakeNVML, what a real worker
resolves of the build's devices, and ``llmperf tiny-model``'s spec options for the check's
own MoE model.

Split by tier: pure parts in tests/unit/test_gpu_verdicts.py and real model runs in
tests/integration/test_gpu_verdicts.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_llmperf.cli.main import main
from pytest_llmperf.machine import devices, gguf_info
from pytest_llmperf.verdict import gpu
from pytest_llmperf.verdict.gpu_bytes import MB, ModelBytes
from tests.fake_nvml import FakeGPU, FakeNVML

# -- the judges, on made-up GPU figures ------------------------------------------------


def test_vram_against_nvidia_smi() -> None:
    close = {"a": {"vram_mb": 1000.0, "smi_mb": 1010.0}, "b": {"vram_mb": 0.0, "smi_mb": None}}
    assert gpu.judge_smi(close)[0] == "pass"
    # the same offset everywhere: what the worker held before the load (a CUDA context)
    offset = {
        "a": {"vram_mb": 1000.0, "smi_mb": 1500.0},
        "b": {"vram_mb": 2000.0, "smi_mb": 2500.0},
    }
    status, figs, note = gpu.judge_smi(offset)
    assert status == "pass" and figs["constant_offset_mb"] == -500.0 and "CUDA context" in note
    apart = {
        "a": {"vram_mb": 1000.0, "smi_mb": 1500.0},
        "b": {"vram_mb": 2000.0, "smi_mb": 2100.0},
    }
    assert gpu.judge_smi(apart)[0] == "fail"
    assert gpu.judge_smi({"a": {"vram_mb": None, "smi_mb": 1.0}})[0] == "fail"


def test_saving_scaling_release() -> None:
    assert gpu.judge_saving(1500.0, 1100.0, 408.0)[0] == "pass"
    assert gpu.judge_saving(1500.0, 1400.0, 408.0)[0] == "fail"
    assert gpu.judge_saving(None, 1400.0, 408.0)[0] == "fail"
    # short by one layer's experts (copied to the GPU for large batches): explained
    status, figs, note = gpu.judge_saving(1500.0, 1145.0, 408.0, 51.0)
    assert status == "pass" and figs["op_offload_allowance_mb"] == 51.0 and "op offload" in note
    assert gpu.judge_saving(1500.0, 1200.0, 408.0, 51.0)[0] == "fail"
    expected = {2: 120.0, 4: 240.0, 8: 480.0}
    assert gpu.judge_scaling({0: 500.0, 2: 620.0, 4: 745.0, 8: 990.0}, expected)[0] == "pass"
    assert gpu.judge_scaling({0: 500.0, 2: 620.0, 4: 600.0, 8: 990.0}, expected)[0] == "fail"
    assert gpu.judge_scaling({0: None, 2: 620.0}, expected)[0] == "fail"
    assert gpu.judge_release([("a", 500.0, 500.0), ("b", 502.0, 501.0)])[0] == "pass"
    assert gpu.judge_release([("a", 500.0, 500.0), ("b", 500.0, 900.0)])[0] == "fail"


def test_parsers() -> None:
    assert gpu.parse_smi_apps("1234, 812\n99, 10\nNo running processes found\n") == {
        1234: 812.0,
        99: 10.0,
    }
    out = "....\n=== 4 passed, 2 skipped, 3 deselected in 12.31s ===\n"
    assert gpu.parse_pytest_counts(out) == {"passed": 4, "skipped": 2, "deselected": 3}


def _moe(n_layer: int = 4, expert_mib: int = 10) -> ModelBytes:
    """A made-up MoE model: per layer 3 expert tensors of ``expert_mib`` and 2 MiB else."""
    sizes = {"token_embd.weight": 8 * MB, "output.weight": 6 * MB, "output_norm.weight": MB}
    experts = []
    for i in range(n_layer):
        sizes[f"blk.{i}.attn_q.weight"] = 2 * MB
        for part in ("gate", "up", "down"):
            name = f"blk.{i}.ffn_{part}_exps.weight"
            sizes[name] = expert_mib * MB
            experts.append(name)
    return ModelBytes.of(sizes, experts, n_layer, n_embd_kv=256)


def test_model_bytes_from_the_tensor_table() -> None:
    m = _moe()
    assert m.layer_mb == {i: 32.0 for i in range(4)} and m.expert_mb == 120.0
    assert m.expert_tensors == 12 and m.output_mb == 7.0
    assert m.kv_mb_per_layer == 4096 * 256 * 4 / MB == 4.0  # f16 K and V at n_ctx 4096
    assert m.first_layers_mb(2) == 2 * 32.0 + 2 * 4.0
    assert m.weights_on_gpu_mb == 4 * 32.0 + 7.0  # token_embd stays on the CPU
    assert m.all_layers_mb == 4 * 32.0 + 7.0 + 4 * 4.0
    assert m.cpu_experts(None) == (120.0, 12) and m.cpu_experts(1) == (30.0, 3)


def test_cpu_moe_judges_tensors_then_the_saving() -> None:
    m = _moe()
    off = {"vram_mb": 400.0, "tg_tps": 50.0}
    on = {"vram_mb": 282.0, "tg_tps": 30.0, "cpu_moe_tensors": 12}
    status, figs, note = gpu.judge_cpu_moe(off, on, m, None, gpu=True)
    assert status == "pass" and figs["saving_mb"] == 118.0 and figs["tg_tps_on"] == 30.0
    # the right saving, but a tensor missing from the override
    status, _figs, note = gpu.judge_cpu_moe(off, {**on, "cpu_moe_tensors": 11}, m, None, True)
    assert status == "fail" and "11 tensors overridden, expected 12" in note
    # n_cpu_moe=2: two layers' experts
    half = {"vram_mb": 340.0, "cpu_moe_tensors": 6}
    status, figs, _ = gpu.judge_cpu_moe(off, half, m, 2, gpu=True)
    assert status == "pass" and figs["expected_mb"] == 60.0 and figs["expected_cpu_tensors"] == 6
    # no GPU: the tensors alone decide between skipped and fail
    assert gpu.judge_cpu_moe({}, {"cpu_moe_tensors": 12}, m, None, gpu=False)[0] == "skipped"
    assert gpu.judge_cpu_moe({}, {"cpu_moe_tensors": 0}, m, None, gpu=False)[0] == "fail"


def test_dense_offload_and_a_measured_configuration() -> None:
    assert gpu.judge_dense(500.0, 700.0, 190.0) == (
        "pass",
        {"delta_mb": 200.0, "expected_mb": 190.0},
        "all layers + output vs none",
    )
    assert gpu.judge_dense(500.0, 1000.0, 190.0)[0] == "fail"
    assert gpu.judge_dense(None, 1000.0, 190.0)[0] == "fail"
    cuda = {"vram_mb": 800.0, "backend": "CUDA"}
    assert gpu.judge_measured(cuda, -1) == ("pass", cuda, "")
    status, _, note = gpu.judge_measured({"vram_mb": 800.0, "backend": "CPU"}, 4)
    assert status == "fail" and "no CUDA device holds layers" in note
    status, _, note = gpu.judge_measured({"vram_mb": None, "vram_absent": "no NVML"}, 0)
    assert status == "fail" and "no NVML" in note


def test_release_in_one_process() -> None:
    levels = {"before": 500.0, "loaded": 1400.0, "reloaded": 1405.0, "after": 500.0}
    status, figs, note = gpu.judge_release_in_process(levels, 800.0, 2)
    assert status == "pass" and figs["freed_mb"] == 905.0 and figs["cycle_drift_mb"] == 5.0
    assert "2 load/close cycles" in note
    # each close leaves the weights behind
    leak = dict(levels, reloaded=2200.0)
    status, _, note = gpu.judge_release_in_process(leak, 800.0, 2)
    assert status == "fail" and "did not free what its load took" in note
    # the weights were not on the GPU to begin with
    status, _, note = gpu.judge_release_in_process(dict(levels, after=1000.0), 800.0, 2)
    assert status == "fail" and "less than the 800 MB" in note
    assert gpu.judge_release_in_process(dict(levels, after=None), 800.0, 2)[0] == "fail"


def test_flash_attention_and_the_pytest_runs() -> None:
    resolved = {"fa_off_flash_attn": "off", "fa_on_flash_attn": "on"}
    assert gpu.judge_flash_attn(resolved, [], fa_built=True)[0] == "pass"
    assert gpu.judge_flash_attn(resolved, ["fa=on: BackendError"], True)[0] == "fail"
    assert gpu.judge_flash_attn({**resolved, "fa_on_flash_attn": "off"}, [], True)[0] == "fail"
    status, _, note = gpu.judge_flash_attn(resolved, [], fa_built=False)
    assert status == "skipped" and "GPU_CHECK_FA=on" in note
    ok = "...\n4 passed in 3.10s\n"
    skipped = "SKIPPED [1] perf_tests/test_gpu.py:12: no GPU\n1 passed, 1 skipped in 2s\n"
    assert gpu.judge_pytest(0, ok, "tests", True, "no GPU", 60) == (
        "pass",
        {"exit": 0, "passed": 4},
        "",
    )
    status, _, note = gpu.judge_pytest(0, skipped, "perf_tests", True, "no GPU", 60)
    assert status == "fail" and note == "tests skipped on a GPU: no GPU"
    status, _, note = gpu.judge_pytest(0, skipped, "perf_tests", False, "no GPU (--cpu)", 60)
    assert status == "skipped" and note == "no GPU (--cpu): no GPU"
    assert gpu.judge_pytest(5, "", "tests", True, "", 60)[2] == "no test in tests/ is marked gpu"
    assert gpu.judge_pytest(1, "1 failed in 2s", "tests", True, "", 60)[0] == "fail"
    assert gpu.judge_pytest(-1, "", "tests", True, "", 60)[2].startswith("timed out after 60 s")


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
