"""What a session shows and writes, as pure functions over its TestResults: the terminal
section, and the report formats of :data:`pytest_llmperf.outputs.formats.FORMATS` (the
report folder: results.json, summary.md, PNG plots, report.html; pytest-benchmark and
Bencher exports; the GitHub job summary). No pytest import; matplotlib only when
plotting."""

from __future__ import annotations

from pytest_llmperf.model.results import Measurement, TestResult
from pytest_llmperf.outputs.interop import (
    benchmark_json,
    bmf_dict,
    write_benchmark_json,
    write_bmf,
)
from pytest_llmperf.outputs.llama_bench import llama_bench_fields
from pytest_llmperf.outputs.markdown import summary_markdown
from pytest_llmperf.outputs.plots import PLOTS_MISSING_NOTE, matplotlib_missing
from pytest_llmperf.outputs.results_json import SCHEMA_VERSION, load_results, results_dict
from pytest_llmperf.outputs.terminal import blind_spot_lines, terminal_lines
from pytest_llmperf.outputs.writer import write_report


def sweep_bench_table(measurements: list[Measurement]) -> list[str]:
    """llama-sweep-bench's table (PP, TG, N_KV, T_PP s, S_PP t/s, T_TG s, S_TG t/s) of
    measurements taken at several KV depths, as Markdown lines."""
    from pytest_llmperf.outputs.doc import table_markdown
    from pytest_llmperf.outputs.markdown import depth_table

    table = depth_table(TestResult(nodeid="depth", measurements=list(measurements)))
    return table_markdown(table) if table is not None else []


__all__ = [
    "PLOTS_MISSING_NOTE",
    "SCHEMA_VERSION",
    "benchmark_json",
    "blind_spot_lines",
    "bmf_dict",
    "llama_bench_fields",
    "load_results",
    "matplotlib_missing",
    "results_dict",
    "summary_markdown",
    "sweep_bench_table",
    "terminal_lines",
    "write_benchmark_json",
    "write_bmf",
    "write_report",
]
