"""summary.md's roofline section: per measurement, the bytes a generated token reads, the
effective bandwidth, the machine's measured limits (with their spread) and the share of
them the workload reached (session/roofline.py computes the metrics)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pytest_llmperf.model.metrics import METRICS, fmt_value
from pytest_llmperf.model.results import Measurement, TestResult
from pytest_llmperf.outputs.doc import Align, Block, Para, Table
from pytest_llmperf.outputs.rows import measurement_label, short_name

NOTE = (
    "bytes/token: what one generated token reads (the weights it uses, an MoE's active "
    "experts only, one row of the token embedding, the KV cache at the workload's mean "
    "depth), host + GPU; GB/s: bytes/token x tg t/s; roofline: the share of each token's "
    "time its bytes need at the measured read bandwidth (memory-bound decode: 100% is the "
    "machine's limit); prompt: FLOPs per prompt token x pp t/s over the measured f32 GEMM "
    "rate (llama.cpp's int8 kernels can exceed it). Limits: `llmperf machine --measure`, "
    "median [min, max] of its passes. A model that fits in the last-level cache reads from "
    "the cache, not memory: its share can pass 100%."
)


def _spread(doc: Any, digits: int = 1) -> str:
    if not isinstance(doc, dict) or "median" not in doc:
        return "-"
    return f"{doc['median']:.{digits}f} [{doc['min']:.{digits}f}, {doc['max']:.{digits}f}]"


def _mb(value: float) -> str:
    return fmt_value(value / 1e6)


def _pct(m: Measurement, name: str) -> str:
    value = m.median(name)
    if value is not None:
        return f"{value:.1f}%"
    return "-" if name not in m.absent else "absent"


def _row(r: TestResult, m: Measurement) -> list[str] | None:
    doc = m.resolved.get("roofline")
    if not isinstance(doc, dict):
        return None
    tb = doc.get("bytes_per_token") or {}
    host = float(tb.get("weights_host", 0)) + float(tb.get("kv_host", 0))
    gpu = float(tb.get("weights_gpu", 0)) + float(tb.get("kv_gpu", 0))
    gpu_bw = doc.get("gpu_bandwidth_gbs")
    limit = _spread(doc.get("bandwidth_gbs"))
    if isinstance(gpu_bw, int | float):
        limit += f"; GPU {gpu_bw:,.0f}"
    return [
        short_name(r.nodeid),
        measurement_label(r, m) or m.workload.name,
        str(doc.get("threads", "-")),
        _mb(host) + (f" + {_mb(gpu)}" if gpu else "") if tb else "-",
        fmt_value(float(tb["kv_positions"]), "") if "kv_positions" in tb else "-",
        fmt_value(m.median("tg_tps")),
        fmt_value(m.median("tg_bw_gbs")),
        limit,
        _pct(m, "tg_roofline_pct"),
        _spread(doc.get("gflops"), 0),
        _pct(m, "pp_roofline_pct"),
    ]


def roofline_table(reports: Sequence[TestResult]) -> Table | None:
    """One row per measurement that has roofline figures; None when none has."""
    headers = [
        "test",
        "workload",
        "threads",
        "MB/token",
        "KV depth",
        "tg t/s",
        METRICS["tg_bw_gbs"].unit,
        "measured GB/s",
        "decode roofline",
        "f32 GFLOP/s",
        "prompt roofline",
    ]
    right: list[Align] = ["right"] * 9
    align: list[Align] = ["left", "left", *right]
    rows = [row for r in reports for m in r.measurements if (row := _row(r, m)) is not None]
    if not rows:
        return None
    return Table(headers, rows, align)


def roofline_blocks(reports: Sequence[TestResult]) -> list[Block]:
    """The section's table and its note (nothing when no measurement has figures)."""
    table = roofline_table(reports)
    return [] if table is None else [table, Para(NOTE, "note")]
