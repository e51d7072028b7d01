"""Exports for other tools: pytest-benchmark's saved-run JSON (read by
``pytest-benchmark compare`` and github-action-benchmark's "pytest" tool) and Bencher's
Metric Format (BMF)."""

from __future__ import annotations

import math
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest_benchmark
from pytest_benchmark.stats import Stats

from pytest_llmperf.model.results import Measurement, TestResult
from pytest_llmperf.outputs.llama_bench import rate_samples
from pytest_llmperf.outputs.results_json import now_iso
from pytest_llmperf.outputs.rows import measurement_label, short_name


def benchmark_stats(data: Sequence[float]) -> dict[str, Any]:
    """pytest-benchmark's ``stats`` object for per-round durations ``data`` (seconds), as
    pytest-benchmark computes and saves it (its own :class:`~pytest_benchmark.stats.Stats`:
    min, max, mean, stddev, quartiles, iqr, outliers, ops, ...), with the rounds' data and
    one iteration a round."""
    if not data:
        raise ValueError("benchmark_stats() needs at least one value")
    stats = Stats()  # type: ignore[no-untyped-call]
    for x in data:
        stats.update(float(x))  # type: ignore[no-untyped-call]
    out: dict[str, Any] = stats.as_dict()  # type: ignore[no-untyped-call]
    return {**out, "data": list(stats.data), "iterations": 1}


def primary_rate(m: Measurement) -> tuple[str, list[float], str]:
    """(what, per-repetition seconds per unit, unit) the benchmark entry times:
    tg: 1 / tg_tps, pp: 1 / pp_tps, pg: llama-bench's combined rate, load: seconds."""
    kind = m.workload.kind
    if kind == "load":
        return "load_ms", [v / 1000 for v in m.values.get("load_ms", [])], "s/load"
    if kind == "tg" and m.values.get("tg_tps"):
        return "tg_tps", [1 / v for v in m.values["tg_tps"] if v > 0], "s/token"
    if kind == "pp" and m.values.get("pp_tps"):
        return "pp_tps", [1 / v for v in m.values["pp_tps"] if v > 0], "s/token"
    _, ts = rate_samples(m)
    return "avg_ts", [1 / v for v in ts if v > 0], "s/token"


def _bench_name(report: TestResult, m: Measurement) -> tuple[str, str]:
    label = measurement_label(report, m)
    return f"{short_name(report.nodeid)} {label}", f"{report.nodeid} {label}"


def _machine_info(reports: Sequence[TestResult]) -> dict[str, Any]:
    fp: dict[str, Any] = next(
        (m.fingerprint for r in reports for m in r.measurements if m.fingerprint), {}
    )
    mach = fp.get("machine", {})
    soft = fp.get("software", {})
    python_version = str(soft.get("python") or platform.python_version())
    return {
        "node": platform.node(),
        "processor": str(mach.get("cpu") or platform.processor()),
        "machine": str(mach.get("arch") or platform.machine()),
        "python_compiler": platform.python_compiler(),
        "python_implementation": platform.python_implementation(),
        "python_implementation_version": python_version,
        "python_version": python_version,
        "python_build": list(platform.python_build()),
        "release": platform.release(),
        "system": platform.system(),
        "cpu": {"brand_raw": mach.get("cpu"), "count": mach.get("cores"), "arch": mach.get("arch")},
        "llmperf": {"machine": mach, "software": soft},
    }


def benchmark_json(
    reports: Sequence[TestResult],
    *,
    generated_at: str | None = None,
    commit_info: Mapping[str, Any] | None = None,
    machine_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The pytest-benchmark saved-run structure: one benchmark per (test, workload), stats
    in seconds per token (so ``ops`` is tokens/s), every metric median in ``extra_info``."""
    benchmarks: list[dict[str, Any]] = []
    for r in reports:
        for m in r.measurements:
            what, data, unit = primary_rate(m)
            if not data:
                continue
            name, fullname = _bench_name(r, m)
            label = measurement_label(r, m)
            extra: dict[str, Any] = {name_: s.median for name_, s in sorted(m.summaries().items())}
            extra.update(
                {
                    "unit": unit,
                    "timed": what,
                    "model": m.model,
                    "workload": m.workload.name,
                    "params": m.params.to_args(),
                    "verdict": r.verdict,
                }
            )
            benchmarks.append(
                {
                    "group": label,
                    "name": name,
                    "fullname": fullname,
                    "params": {
                        "model": m.model,
                        "params": m.params.short_id(),
                        "workload": m.workload.name,
                    },
                    "param": f"{m.model}-{m.params.short_id()}-{m.workload.name}",
                    "extra_info": extra,
                    "options": {
                        "disable_gc": False,
                        "timer": "perf_counter_ns",
                        "min_rounds": m.repetitions or len(data),
                        "max_time": 0,
                        "min_time": 0,
                        "warmup": bool(m.warmup),
                    },
                    "stats": benchmark_stats(data),
                }
            )
    return {
        "machine_info": dict(machine_info) if machine_info else _machine_info(reports),
        "commit_info": dict(commit_info)
        if commit_info
        else {
            "id": None,
            "time": None,
            "author_time": None,
            "dirty": False,
            "project": "pytest-llmperf",
            "branch": None,
        },
        "benchmarks": benchmarks,
        "datetime": generated_at or now_iso(),
        "version": pytest_benchmark.__version__,
    }


def write_benchmark_json(
    reports: Sequence[TestResult],
    path: str | Path,
    *,
    commit_info: Mapping[str, Any] | None = None,
    machine_info: Mapping[str, Any] | None = None,
    what: str = "pytest-benchmark JSON",
) -> Path:
    """Write :func:`benchmark_json` to ``path`` (atomically); returns the path. An
    existing file that is not such a file of ours is a UsageError naming it (``what``:
    the option), and is left alone."""
    from pytest_llmperf.outputs.files import write_json

    data = benchmark_json(reports, commit_info=commit_info, machine_info=machine_info)
    if machine_info is not None and "llmperf" not in data["machine_info"]:
        data["machine_info"]["llmperf"] = {}  # what tells the file as ours next time
    return write_json(Path(path), data, "benchmark-json", what)


def measure_slug(metric: str) -> str:
    """``tg_tps`` -> ``tg-tps`` (Bencher measure slugs)."""
    return metric.replace("_", "-").lower()


def bmf_dict(reports: Sequence[TestResult]) -> dict[str, dict[str, dict[str, float]]]:
    """Bencher Metric Format: ``{benchmark: {measure: {value, lower_value, upper_value}}}``
    with the median as value and the min and max of the repetitions as bounds."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in reports:
        for m in r.measurements:
            name, _ = _bench_name(r, m)
            measures: dict[str, dict[str, float]] = {}
            for metric, s in sorted(m.summaries().items()):
                if not all(math.isfinite(x) for x in (s.median, s.min, s.max)):
                    continue
                measures[measure_slug(metric)] = {
                    "value": s.median,
                    "lower_value": s.min,
                    "upper_value": s.max,
                }
            if measures:
                out[name] = measures
    return out


def write_bmf(
    reports: Sequence[TestResult], path: str | Path, what: str = "Bencher Metric Format"
) -> Path:
    """Write :func:`bmf_dict` to ``path`` (atomically); returns the path. An existing file
    that is not such a file of ours is a UsageError naming it (``what``: the option), and
    is left alone."""
    from pytest_llmperf.outputs.files import write_json

    return write_json(Path(path), bmf_dict(reports), "bmf", what)
