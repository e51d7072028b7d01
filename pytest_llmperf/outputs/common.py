"""Shared, pure helpers of the report package: rows, verdict colours, llama-bench fields,
depth series and sweep groups. No pytest, no matplotlib."""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_llmperf.model.metrics import KEY_METRICS, METRICS
from pytest_llmperf.model.results import Measurement, MetricComparison, TestResult, worst

#: the note written instead of plots when matplotlib is missing
PLOTS_MISSING_NOTE = "matplotlib not installed: pip install pytest-llmperf[plots]"

#: pytest TerminalWriter markup per verdict
VERDICT_MARKUP: dict[str, dict[str, bool]] = {
    "pass": {"green": True},
    "improved": {"green": True, "bold": True},
    "regressed": {"red": True, "bold": True},
    "error": {"red": True, "bold": True},
    "inconclusive": {"yellow": True},
    "new": {"yellow": True},
    "mismatch": {"yellow": True},
}

#: colours of verdicts in plots and HTML (colour-blind friendly where it matters)
VERDICT_COLOR: dict[str, str] = {
    "pass": "#2e7d32",
    "improved": "#00838f",
    "regressed": "#c62828",
    "error": "#6a1b1a",
    "inconclusive": "#e69f00",
    "new": "#7b61a8",
    "mismatch": "#b07800",
}
BASELINE_COLOR = "#8a8a8a"

#: the order in which verdicts are counted in summaries
VERDICT_ORDER: tuple[str, ...] = (
    "pass",
    "improved",
    "new",
    "inconclusive",
    "mismatch",
    "regressed",
    "error",
)


def verdict_color(verdict: str) -> str:
    return VERDICT_COLOR.get(verdict, "#455a64")


def short_name(nodeid: str) -> str:
    """``perf_tests/test_x.py::test_tg[tiny]`` -> ``test_tg[tiny]`` (a class is kept)."""
    _, sep, rest = nodeid.partition("::")
    return rest if sep else nodeid


def function_name(nodeid: str) -> str:
    """The test function of a node id, without its parameter id: ``test_tg``."""
    return short_name(nodeid).split("[", 1)[0]


def ellipsize(text: str, width: int, *, middle: bool = True) -> str:
    """``text`` cut to ``width`` characters with an ellipsis (in the middle by default,
    where parametrized test ids keep their distinguishing end)."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    if width == 1:
        return "…"
    if not middle:
        return text[: width - 1] + "…"
    head = (width - 1) // 2
    tail = width - 1 - head
    return text[:head] + "…" + (text[-tail:] if tail else "")


def slug(text: str, maxlen: int = 60) -> str:
    out = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return (out or "x")[:maxlen]


def fmt_compact(value: float | None) -> str:
    """A number in at most 5 characters, for the terminal table: 0.123, 12.35, 312.4,
    1234, 12.3k, 123k, 1.2M."""
    if value is None or math.isnan(value):
        return "-"
    mag = abs(value)
    sign = "-" if value < 0 else ""
    if mag >= 1e6:
        return f"{sign}{mag / 1e6:.1f}M" if mag < 9.95e6 else f"{sign}{mag / 1e6:.0f}M"
    if mag >= 99_950:
        return f"{sign}{mag / 1e3:.0f}k"
    if mag >= 9_999.5:
        return f"{sign}{mag / 1e3:.1f}k"
    if mag >= 999.95:
        return f"{sign}{mag:.0f}"
    if mag >= 99.995:
        return f"{sign}{mag:.1f}"
    if mag >= 1:
        return f"{sign}{mag:.2f}"
    return f"{sign}{mag:.3f}"


def fmt_pct(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:+.1f}%"


def metric_unit(name: str) -> str:
    return METRICS[name].unit if name in METRICS else ""


def metric_better(name: str) -> str:
    return METRICS[name].better if name in METRICS else ""


def is_informational(name: str) -> bool:
    return name in METRICS and METRICS[name].informational


# -- rows --------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the result tables: one workload of one test (or the whole test when it
    measured nothing, or its workload-independent "sla" comparisons)."""

    report: TestResult
    measurement: Measurement | None
    #: short test name (no file path)
    name: str
    #: workload label when the test measured several workloads, else ""
    workload: str
    comparisons: list[MetricComparison] = field(default_factory=list)
    verdict: str = "pass"

    @property
    def label(self) -> str:
        return f"{self.name} {self.workload}" if self.workload else self.name

    def comparison(self, metric: str) -> MetricComparison | None:
        for c in self.comparisons:
            if c.metric == metric:
                return c
        return None


def measurement_label(report: TestResult, m: Measurement) -> str:
    """The workload label of ``m`` inside ``report``: the workload name, with the params id
    when the test measured the same workload under several params."""
    same = [x for x in report.measurements if x.workload.name == m.workload.name]
    if len(same) > 1:
        return f"{m.params.short_id()} {m.workload.name}"
    return m.workload.name


def report_rows(report: TestResult) -> list[Row]:
    name = short_name(report.nodeid)
    ms = report.measurements
    if not ms:
        return [Row(report, None, name, "", report.all_comparisons(), report.verdict)]
    if len(ms) == 1:
        return [Row(report, ms[0], name, "", report.all_comparisons(), report.verdict)]
    rows: list[Row] = []
    used: set[str] = set()
    for m in ms:
        comps = report.comparisons.get(m.workload.name, [])
        used.add(m.workload.name)
        if comps:
            verdict = worst([c.verdict for c in comps])
        elif report.verdict in ("new", "mismatch", "error"):
            verdict = report.verdict
        else:
            verdict = "pass"
        rows.append(Row(report, m, name, measurement_label(report, m), list(comps), verdict))
    rest = [c for key, comps in report.comparisons.items() if key not in used for c in comps]
    if rest:
        keys = [k for k in report.comparisons if k not in used]
        rows.append(Row(report, None, name, "/".join(keys), rest, worst([c.verdict for c in rest])))
    return rows


def all_rows(reports: Sequence[TestResult]) -> list[Row]:
    return [row for r in reports for row in report_rows(r)]


def headline_change(comps: Sequence[MetricComparison]) -> MetricComparison | None:
    """The change a reader should see first: the largest-magnitude change among regressed
    metrics, else among all gated (non-informational) metrics."""
    gated = [
        c
        for c in comps
        if c.change_pct is not None
        and not is_informational(c.metric)
        and not (c.reason or "").startswith("not gated")
        and not math.isnan(c.change_pct)
    ]
    if not gated:
        return None
    regressed = [c for c in gated if c.verdict == "regressed"]
    notable = [c for c in gated if c.verdict in ("improved", "inconclusive")]
    pool = regressed or notable or gated
    if regressed:  # name the headline metric people read first (tg_tps before itl_p99_ms)
        key = [c for c in regressed if c.metric in KEY_METRICS]
        if key:
            return min(key, key=lambda c: KEY_METRICS.index(c.metric))
    return max(pool, key=lambda c: abs(c.change_pct or 0.0))


def verdict_counts(reports: Sequence[TestResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in reports:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    order = {v: i for i, v in enumerate(VERDICT_ORDER)}
    return dict(sorted(counts.items(), key=lambda kv: order.get(kv[0], 99)))


def counts_text(reports: Sequence[TestResult]) -> str:
    counts = verdict_counts(reports)
    n = len(reports)
    detail = ", ".join(f"{c} {v}" for v, c in counts.items())
    return f"{n} test{'s' if n != 1 else ''}: {detail}" if n else "no performance tests"


# -- baselines ---------------------------------------------------------------------------

BaselineIndex = dict[tuple[str, str], Measurement]


def baseline_index(baseline_reports: Sequence[TestResult] | None) -> BaselineIndex:
    """(nodeid, workload label) -> the baseline run's measurement."""
    out: BaselineIndex = {}
    for r in baseline_reports or []:
        for m in r.measurements:
            out[(r.nodeid, measurement_label(r, m))] = m
    return out


def baseline_for(index: BaselineIndex, report: TestResult, m: Measurement) -> Measurement | None:
    return index.get((report.nodeid, measurement_label(report, m)))


# -- llama-bench compatibility ----------------------------------------------------------


def headline_median(m: Measurement, metric: str) -> float | None:
    """The median of ``metric``, or of its ``stream_*`` counterpart for a streamed
    request (whose metrics are named apart from the engine's)."""
    if m.workload.kind == "stream":
        spec = METRICS.get(metric)
        metric = spec.stream if spec is not None and spec.stream else metric
    return m.median(metric)


def headline_rate(m: Measurement) -> float | None:
    """t/s of a table row: tg (pp for prompt-only workloads; the stream's for streamed)."""
    if m.workload.kind == "stream":
        return m.median("stream_tps")
    return m.median("tg_tps") if m.values.get("tg_tps") else m.median("pp_tps")


def rate_samples(m: Measurement) -> tuple[list[int], list[float]]:
    """Per repetition, llama-bench's way: the duration of the whole test in ns (pp: the
    prompt eval; tg and pg: start to the last token) and (n_prompt + n_gen) / duration.
    None for a streamed request (not llama-bench's kind of test)."""
    if m.workload.kind == "stream":
        return [], []
    n_tokens = m.workload.n_prompt + m.workload.n_gen
    ns: list[int] = []
    for s in m.samples:
        if m.workload.n_gen == 0:
            dur = s.prompt_ns
        else:
            dur = s.end_ns if s.end_ns else (s.token_ns[-1] if s.token_ns else None)
        if dur and dur > 0:
            ns.append(int(dur))
    if not n_tokens:
        return [], []
    return ns, [n_tokens / (d / 1e9) for d in ns]


def resolved_flash_attn(m: Measurement) -> str:
    return str(m.resolved.get("flash_attn") or m.params.flash_attn)


def resolved_threads(m: Measurement) -> int | None:
    value = m.resolved.get("n_threads", m.params.n_threads)
    return int(value) if isinstance(value, int | float) else None


def model_size_bytes(m: Measurement) -> int | None:
    size = m.fingerprint.get("model", {}).get("file_size")
    if isinstance(size, int | float) and size > 0:
        return int(size)
    mb = m.median("model_size_mb")
    return int(mb * 1024 * 1024) if mb else None


def model_n_params(m: Measurement) -> int | None:
    for source in (m.resolved, m.fingerprint.get("model", {})):
        value = source.get("n_params")
        if isinstance(value, int | float) and value > 0:
            return int(value)
    return None


def backend_name(m: Measurement) -> str:
    explicit = m.resolved.get("backend")
    if isinstance(explicit, str) and explicit:
        return explicit
    info = str(m.fingerprint.get("software", {}).get("llama_system_info", ""))
    if m.params.n_gpu_layers != 0:
        for name in ("CUDA", "Metal", "Vulkan", "ROCm", "HIP", "SYCL"):
            if name.lower() in info.lower():
                return name
        if m.fingerprint.get("machine", {}).get("gpu"):
            return "GPU"
    return "CPU"


def llama_bench_fields(m: Measurement) -> dict[str, Any]:
    """The fields of llama-bench's JSON output (``-o json``) this measurement defines.

    ``avg_ts``/``samples_ts`` follow llama-bench: (n_prompt + n_gen) / duration of each
    repetition (for tg this includes the first token, unlike ``tg_tps``).
    """
    fa = resolved_flash_attn(m)
    machine = m.fingerprint.get("machine", {})
    out: dict[str, Any] = {
        "model_filename": m.model_path,
        "model_type": m.model,
        "model_size": model_size_bytes(m),
        "model_n_params": model_n_params(m),
        "backends": backend_name(m),
        "cpu_info": machine.get("cpu"),
        "gpu_info": machine.get("gpu"),
        "n_threads": resolved_threads(m),
        "n_batch": m.params.n_batch,
        "n_ubatch": m.resolved.get("n_ubatch", m.params.ubatch),
        "n_gpu_layers": m.params.n_gpu_layers,
        "type_k": m.params.type_k,
        "type_v": m.params.type_v,
        "flash_attn": {"on": True, "off": False}.get(fa),
        "use_mmap": m.params.use_mmap,
        "n_prompt": m.workload.n_prompt,
        "n_gen": m.workload.n_gen,
        "n_depth": m.workload.n_depth,
        "test_time": m.started_at,
    }
    ns, ts = rate_samples(m)
    if ns:
        out.update(
            {
                "avg_ns": int(statistics.fmean(ns)),
                "stddev_ns": int(statistics.stdev(ns)) if len(ns) > 1 else 0,
                "avg_ts": statistics.fmean(ts),
                "stddev_ts": statistics.stdev(ts) if len(ts) > 1 else 0.0,
                "samples_ns": ns,
                "samples_ts": ts,
            }
        )
    return out


def fmt_size(nbytes: int | None) -> str:
    """llama-bench's size column: ``226.00 GiB``, ``93.75 MiB``."""
    if not nbytes:
        return "-"
    gib = nbytes / 1024**3
    if gib >= 1:
        return f"{gib:.2f} GiB"
    return f"{nbytes / 1024**2:.2f} MiB"


def fmt_n_params(n: int | None) -> str:
    """llama-bench's params column: ``672.05 B``, ``6.74 B``, ``23.45 M``."""
    if not n:
        return "-"
    if n >= 1e9:
        return f"{n / 1e9:.2f} B"
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    return f"{n / 1e3:.2f} K"


# -- depth series ------------------------------------------------------------------------


@dataclass
class DepthPoint:
    """One llama-sweep-bench row: the prompt and generation rates at KV depth ``n_kv``."""

    n_kv: int
    pp: int = 0
    tg: int = 0
    s_pp: list[float] = field(default_factory=list)  # per-repetition t/s
    s_tg: list[float] = field(default_factory=list)

    @staticmethod
    def _median(values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    @property
    def s_pp_median(self) -> float | None:
        return self._median(self.s_pp)

    @property
    def s_tg_median(self) -> float | None:
        return self._median(self.s_tg)

    @property
    def t_pp_s(self) -> float | None:
        s = self.s_pp_median
        return self.pp / s if s and self.pp else None

    @property
    def t_tg_s(self) -> float | None:
        s = self.s_tg_median
        return self.tg / s if s and self.tg else None


def depth_series(report: TestResult) -> list[DepthPoint]:
    """The test's measurements by KV depth when it measured at least two depths (one
    point per depth, pp and tg rates merged), else []."""
    engine = [m for m in report.measurements if m.workload.kind not in ("load", "stream")]
    depths = {m.workload.n_depth for m in engine}
    if len(depths) < 2:
        return []
    points: dict[int, DepthPoint] = {}
    for m in engine:
        p = points.setdefault(m.workload.n_depth, DepthPoint(m.workload.n_depth))
        if m.workload.n_prompt and m.values.get("pp_tps") and not p.s_pp:
            p.pp = m.workload.n_prompt
            p.s_pp = list(m.values["pp_tps"])
        if m.workload.n_gen and m.values.get("tg_tps") and not p.s_tg:
            p.tg = m.workload.n_gen
            p.s_tg = list(m.values["tg_tps"])
    return [points[d] for d in sorted(points)]


# -- sweeps ------------------------------------------------------------------------------


def sweep_axes(m: Measurement) -> dict[str, Any]:
    axes = m.resolved.get("sweep_axes")
    return dict(axes) if isinstance(axes, dict) else {}


@dataclass
class SweepGroup:
    """Measurements of one sweep (same test function and workload) with their axes."""

    function: str
    workload: str
    axes: list[str]
    points: list[tuple[TestResult, Measurement, dict[str, Any]]]

    @property
    def title(self) -> str:
        return f"{self.function} {self.workload}"

    def metric(self) -> str | None:
        """The metric this sweep is judged by: the first key metric its points measured
        (tg_tps, else pp_tps, ..., load_ms for cold loads)."""
        measured = {name for _, m, _ in self.points for name, v in m.values.items() if v}
        return next((name for name in KEY_METRICS if name in measured), None)

    def variants(self, axis: str) -> list[Any]:
        seen: list[Any] = []
        for _, _, axes in self.points:
            if axis in axes and axes[axis] not in seen:
                seen.append(axes[axis])
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in seen):
            return sorted(seen)
        return seen


def sweep_groups(reports: Sequence[TestResult]) -> list[SweepGroup]:
    groups: dict[tuple[str, str], SweepGroup] = {}
    for r in reports:
        for m in r.measurements:
            axes = sweep_axes(m)
            if not axes:
                continue
            key = (function_name(r.nodeid), m.workload.name)
            g = groups.setdefault(key, SweepGroup(key[0], key[1], [], []))
            for axis in axes:
                if axis not in g.axes:
                    g.axes.append(axis)
            g.points.append((r, m, axes))
    return list(groups.values())
