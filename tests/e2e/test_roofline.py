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

import json
from pathlib import Path

import pytest

from pytest_llmperf.errors import UsageError
from pytest_llmperf.machine import devices, gguf_info, limits, traffic
from pytest_llmperf.machine import fingerprint as fp_mod
from pytest_llmperf.model import ownership
from pytest_llmperf.model.metrics import METRICS
from pytest_llmperf.model.results import Measurement, TestResult
from pytest_llmperf.outputs.terminal import terminal_lines
from pytest_llmperf.session import roofline
from tests.fake_nvml import FakeGPU, FakeNVML
from tests.integration.test_roofline import _measured

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


# -- the metrics on real measurements -----------------------------------------------------------


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
