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

from pytest_llmperf.machine import gguf_info, tiny, traffic
from pytest_llmperf.model import ownership
from pytest_llmperf.model.metrics import METRICS
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.results import Measurement, TestResult
from pytest_llmperf.model.workloads import Workload


def table(variant: str) -> gguf_info.TensorTable:
    return gguf_info.tensor_table(tiny.ensure_variant(variant))


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
