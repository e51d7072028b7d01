"""The report as a document: llama-bench style tables, baseline comparisons, depth and
sweep tables. Rendered to summary.md and (with the plots) to report.html."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from pytest_llmperf.model.metrics import fmt_value
from pytest_llmperf.model.params import KNOBS
from pytest_llmperf.model.results import MetricComparison, TestResult
from pytest_llmperf.outputs.depth import depth_series
from pytest_llmperf.outputs.doc import (
    Align,
    Block,
    BulletList,
    Heading,
    Image,
    Link,
    Para,
    Table,
    render_markdown,
)
from pytest_llmperf.outputs.llama_bench import (
    backend_name,
    fmt_n_params,
    fmt_size,
    model_n_params,
    model_size_bytes,
    rate_samples,
    resolved_flash_attn,
    resolved_threads,
)
from pytest_llmperf.outputs.roofline import roofline_blocks
from pytest_llmperf.outputs.rows import (
    Row,
    all_rows,
    counts_text,
    decision,
    headline_change,
    headline_median,
    headline_rate,
    measurement_label,
    short_name,
)
from pytest_llmperf.outputs.sweep_groups import sweep_groups
from pytest_llmperf.outputs.text import fmt_pct, metric_unit

#: plot kinds, in the order their sections appear
PLOT_KINDS: tuple[str, ...] = ("metrics", "itl", "depth", "sweep")


def _fmt(value: float | None, unit: str = "") -> str:
    return fmt_value(value, unit)


def _mem(row: Row) -> str:
    m = row.measurement
    if m is None:
        return "-"
    vram = m.median("vram_mb")
    if vram is not None:
        return f"{fmt_value(vram)} (vram)"
    rss = m.median("rss_peak_mb")
    return f"{fmt_value(rss)} (rss)" if rss is not None else "-"


def overview_table(reports: Sequence[TestResult]) -> Table:
    headers = [
        "test",
        "model",
        "params",
        "workload",
        "t/s",
        "ttft ms",
        "itl p95 ms",
        "load ms",
        "mem MB",
        "change",
        "verdict",
    ]
    align: list[Align] = [
        "left",
        "left",
        "left",
        "left",
        "right",
        "right",
        "right",
        "right",
        "right",
        "right",
        "left",
    ]
    rows: list[list[str]] = []
    classes: list[str] = []
    for row in all_rows(reports):
        m = row.measurement
        change = headline_change(row.comparisons)
        rate = headline_rate(m) if m is not None else None
        rows.append(
            [
                row.name,
                m.model if m else "-",
                m.params.short_id() if m else "-",
                (measurement_label(row.result, m) if m else row.workload) or "-",
                _fmt(rate),
                _fmt(headline_median(m, "ttft_ms") if m else None),
                _fmt(headline_median(m, "itl_p95_ms") if m else None),
                _fmt(m.median("load_ms") if m else None),
                _mem(row),
                f"{fmt_pct(change.change_pct)} {change.metric}" if change else "-",
                row.verdict,
            ]
        )
        classes.append(row.verdict)
    return Table(headers, rows, align, classes)


def _bench_columns(reports: Sequence[TestResult]) -> list[tuple[str, str]]:
    """(header, LoadParams field) of the optional llama-bench columns: like llama-bench,
    a parameter gets a column when some measurement sets it away from the default."""
    ms = [m for r in reports for m in r.measurements]
    return [
        (k.bench_md or k.bench, name)
        for name, k in KNOBS.items()
        if k.bench and k.bench_optional and any(k.shown(getattr(m.params, name)) for m in ms)
    ]


def llama_bench_table(reports: Sequence[TestResult]) -> Table | None:
    """``llama-bench -o md``: | model | size | params | backend | threads | n_batch | fa |
    test | t/s |, t/s as mean ± stddev over repetitions, plus the pytest test."""
    extra = _bench_columns(reports)
    headers = [
        "model",
        "size",
        "params",
        "backend",
        "threads",
        "n_batch",
        *[h for h, _ in extra],
        "fa",
        "test",
        "t/s",
        "pytest",
    ]
    extra_align: list[Align] = ["right" for _ in extra]
    align: list[Align] = [
        "left",
        "right",
        "right",
        "left",
        "right",
        "right",
        *extra_align,
        "right",
        "right",
        "right",
        "left",
    ]
    rows: list[list[str]] = []
    classes: list[str] = []
    for r in reports:
        for m in r.measurements:
            _, ts = rate_samples(m)
            if not ts:
                continue
            mean = statistics.fmean(ts)
            sd = statistics.stdev(ts) if len(ts) > 1 else 0.0
            threads = resolved_threads(m)
            fa = resolved_flash_attn(m)
            extra_cells = []
            for _, name in extra:
                value = getattr(m.params, name)
                extra_cells.append(str(int(value) if isinstance(value, bool) else value))
            rows.append(
                [
                    m.model,
                    fmt_size(model_size_bytes(m)),
                    fmt_n_params(model_n_params(m)),
                    backend_name(m),
                    str(threads) if threads else "-",
                    str(m.params.n_batch),
                    *extra_cells,
                    {"on": "1", "off": "0"}.get(fa, fa),
                    m.workload.name.replace("@", " @ "),
                    f"{mean:.2f} ± {sd:.2f}",
                    short_name(r.nodeid),
                ]
            )
            classes.append("")
    if not rows:
        return None
    return Table(headers, rows, align, classes)


def streaming_table(reports: Sequence[TestResult]) -> Table | None:
    """Each streamed request beside the engine on the same model, params and token counts
    (medians over the repetitions, the engine's run after each streamed one)."""
    headers = [
        "test",
        "workload",
        "api",
        "prompt tok",
        "tokens",
        "ttft ms engine",
        "ttft ms stream",
        "p95 ms engine",
        "p95 ms chunks",
        "t/s engine",
        "t/s stream",
        "overhead",
        "empty chunks",
    ]
    right: list[Align] = ["right"] * 10
    align: list[Align] = ["left", "left", "left", *right]
    rows: list[list[str]] = []
    for r in reports:
        for m in r.measurements:
            if m.workload.kind != "stream":
                continue
            info = m.resolved.get("stream") or {}
            api = str(info.get("api", "-")).replace("Llama.", "").replace("(stream=True)", "")
            overhead = m.median("stream_overhead")
            tokens = sorted({s.n_gen for s in m.samples})
            rows.append(
                [
                    short_name(r.nodeid),
                    measurement_label(r, m),
                    api,
                    str(info.get("n_prompt", "-")),
                    "/".join(map(str, tokens)) if tokens else str(m.workload.n_gen),
                    _fmt(m.median("engine_ttft_ms")),
                    _fmt(m.median("stream_ttft_ms")),
                    _fmt(m.median("engine_itl_p95_ms")),
                    _fmt(m.median("stream_itl_p95_ms")),
                    _fmt(m.median("engine_tg_tps")),
                    _fmt(m.median("stream_tps")),
                    "-" if overhead is None else f"{overhead:.2f}x",
                    _fmt(statistics.median(s.chunk_chars.count(0) for s in m.samples))
                    if m.samples
                    else "-",
                ]
            )
    if not rows:
        return None
    return Table(headers, rows, align)


def _ratio(c: MetricComparison) -> str:
    if c.ratio is None:
        return "-"
    if c.ratio_low is None or c.ratio_high is None:
        return f"{c.ratio:.3f}"
    return f"{c.ratio:.3f} [{c.ratio_low:.3f}, {c.ratio_high:.3f}]"


def comparison_table(report: TestResult) -> Table | None:
    comps = [(key, c) for key, cs in report.comparisons.items() for c in cs]
    if not comps:
        return None
    several = len(report.comparisons) > 1
    show_p = any(c.p_value is not None for _, c in comps)
    # a paired verdict (--perf-reference, reference=): the reference ran beside the
    # candidate; the ratio's interval and the clean rounds are what the verdict rests on
    paired = any(c.ratio is not None for _, c in comps)
    headers = [
        *(["workload"] if several else []),
        "metric",
        "reference" if paired else "baseline",
        "candidate" if paired else "current",
        "change",
        *(["ratio [interval]", "rounds"] if paired else []),
        "threshold",
        *(["p"] if show_p else []),
        "verdict",
    ]
    wl_align: list[Align] = ["left"] if several else []
    p_align: list[Align] = ["right"] if show_p else []
    pair_align: list[Align] = ["right", "right"] if paired else []
    align: list[Align] = [
        *wl_align,
        "left",
        "right",
        "right",
        "right",
        *pair_align,
        "left",
        *p_align,
        "left",
    ]
    rows: list[list[str]] = []
    classes: list[str] = []
    for key, c in comps:
        p = "-" if c.p_value is None else f"{c.p_value:.3g}"
        rows.append(
            [
                *([key] if several else []),
                c.metric,
                _fmt(c.baseline_median, c.unit),
                _fmt(c.current_median, c.unit),
                fmt_pct(c.change_pct),
                *([_ratio(c), "-" if c.rounds is None else str(c.rounds)] if paired else []),
                c.threshold or "-",
                *([p] if show_p else []),
                c.verdict,
            ]
        )
        classes.append(c.verdict)
    return Table(headers, rows, align, classes)


def depth_table(report: TestResult) -> Table | None:
    """llama-sweep-bench's table: | PP | TG | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s |
    (medians over repetitions; T = tokens / S)."""
    points = depth_series(report)
    if not points:
        return None

    def num(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    rows = [
        [
            str(p.pp) if p.pp else "-",
            str(p.tg) if p.tg else "-",
            str(p.n_kv),
            num(p.t_pp_s, 3),
            num(p.s_pp_median, 2),
            num(p.t_tg_s, 3),
            num(p.s_tg_median, 2),
        ]
        for p in points
    ]
    headers = ["PP", "TG", "N_KV", "T_PP s", "S_PP t/s", "T_TG s", "S_TG t/s"]
    return Table(headers, rows, ["right"] * 7)


def sweep_tables(reports: Sequence[TestResult]) -> list[tuple[str, Table]]:
    out: list[tuple[str, Table]] = []
    for group in sweep_groups(reports):
        metric = group.metric()
        metrics = [x for x in (metric, "ttft_ms") if x] + group.extra_metrics()
        headers = [
            *group.axes,
            *[f"{x} ({metric_unit(x)})" for x in metrics],
            "n",
            "verdict",
            "test",
        ]
        num_align: list[Align] = ["right"] * (len(group.axes) + len(metrics) + 1)
        align: list[Align] = [*num_align, "left", "left"]
        rows: list[list[str]] = []
        classes: list[str] = []
        for r, m, axes in group.points:
            cells = [str(axes.get(a, "-")) for a in group.axes]
            for x in metrics:
                s = m.summary(x)
                cells.append("-" if s is None else f"{fmt_value(s.median)} ± {fmt_value(s.stddev)}")
            s0 = m.summary(metric) if metric else None
            cells += [str(s0.n) if s0 else "-", r.verdict, short_name(r.nodeid)]
            rows.append(cells)
            classes.append(r.verdict)
        out.append((group.title, Table(headers, rows, align, classes)))
    return out


def _test_details(report: TestResult) -> list[str]:
    items: list[str] = []
    # the same metric absent for the same reason in every workload: said once
    absent: dict[tuple[str, str], list[str]] = {}
    for m in report.measurements:
        for metric, reason in m.absent.items():
            absent.setdefault((metric, reason), []).append(measurement_label(report, m))
    for (metric, reason), labels in absent.items():
        partial = len(labels) < len(report.measurements)
        prefix = f"{', '.join(labels)}: " if partial else ""
        items.append(f"{prefix}{metric} not measured: {reason}")
    for c in report.all_comparisons():
        if c.reason:
            items.append(f"{c.metric}: {c.reason}")
    items += [f"note: {n}" for n in report.notes]
    return items


def build_document(
    reports: Sequence[TestResult],
    *,
    generated_at: str,
    plots: Mapping[str, Sequence[Image]] | None = None,
    plot_notes: Sequence[str] = (),
    history: bool = False,
) -> list[Block]:
    """The report's blocks. ``plots`` maps a plot kind (:data:`PLOT_KINDS`) to its images;
    ``plot_notes`` say why plots are missing; ``history``: history.md / history.html were
    written beside (linked from the baseline section)."""
    plots = plots or {}
    blocks: list[Block] = [
        Heading(1, "llmperf report"),
        Para(f"Generated {generated_at}. {counts_text(reports)}."),
    ]
    if not reports:
        return blocks

    blocks += [
        Heading(2, "Overview", "overview"),
        overview_table(reports),
        Para(
            "t/s: median generation rate (prompt rate for prompt-only workloads); "
            "times are medians over repetitions; change: the largest change vs "
            "the baseline (regressed metrics first).",
            "note",
        ),
    ]

    bench = llama_bench_table(reports)
    if bench is not None:
        blocks += [
            Heading(2, "llama-bench", "llama-bench"),
            bench,
            Para(
                "t/s as llama-bench computes it: (n_prompt + n_gen) / duration of each "
                "repetition, mean ± stddev.",
                "note",
            ),
        ]

    roof = roofline_blocks(reports)
    if roof:
        blocks += [Heading(2, "How close to the machine's limit", "roofline"), *roof]

    streaming = streaming_table(reports)
    if streaming is not None:
        blocks += [
            Heading(2, "Streaming: engine vs application path", "streaming"),
            streaming,
            Para(
                "stream: llama-cpp-python's create_completion / create_chat_completion with "
                "stream=True, timed from the call (template and tokenization included; ttft "
                "to the first chunk carrying text, p95 over the gaps between such chunks); "
                "engine: the same model, params and token counts through the engine, run "
                "after each streamed repetition. overhead: engine t/s / stream t/s (1.00x: "
                "none). empty chunks: chunks without text (a character split across tokens).",
                "note",
            ),
        ]

    blocks.append(Heading(2, "Baseline comparison", "baseline"))
    if history:
        blocks.append(
            Link(
                "Each baseline's accepted sessions over time, its drift and its steps: ",
                "baseline history",
                "history.md",
                "history.html",
            )
        )
    for r in reports:
        blocks.append(Heading(3, f"{short_name(r.nodeid)}: {r.verdict}"))
        table = comparison_table(r)
        if table is None and not r.measurements:
            blocks.append(Para("Nothing was measured.", r.verdict))
        elif table is None:
            blocks.append(Para("No baseline: run with --perf-accept to record one.", "note"))
        else:
            if r.reference:
                decided, seen = decision(r)
                state = (
                    "decided"
                    if decided
                    else "not decided"
                    + ("" if seen is None else f": its rounds resolve changes beyond ±{seen:.1f}%")
                )
                blocks.append(Para(f"Paired against {r.reference}, side by side: {state}", "note"))
            elif r.baseline_key:
                blocks.append(Para(f"Baseline: {r.baseline_key}", "note"))
            blocks.append(table)
        details = _test_details(r)
        if details:
            blocks.append(BulletList(details))
    if plots.get("metrics"):
        blocks.append(Heading(2, "Key metrics: current vs baseline", "metrics"))
        blocks += list(plots["metrics"])

    depth = [(r, t) for r in reports if (t := depth_table(r)) is not None]
    itl = list(plots.get("itl", []))
    if itl:
        blocks.append(Heading(2, "Inter-token latency", "itl"))
        blocks += itl
    if depth:
        blocks.append(Heading(2, "Context depth (llama-sweep-bench)", "depth"))
        for r, t in depth:
            m = r.measurements[0]
            blocks.append(Heading(3, short_name(r.nodeid)))
            blocks.append(Para(f"{m.model}, params {m.params.short_id()}", "note"))
            blocks.append(t)
        blocks += list(plots.get("depth", []))

    sweeps = sweep_tables(reports)
    if sweeps:
        blocks.append(Heading(2, "Sweeps", "sweeps"))
        for title, t in sweeps:
            blocks += [Heading(3, title), t]
        blocks += list(plots.get("sweep", []))

    if plot_notes:
        blocks += [Heading(2, "Plots", "plots"), BulletList(list(plot_notes))]
    return blocks


def summary_markdown(
    reports: Sequence[TestResult],
    *,
    generated_at: str,
    plots: Mapping[str, Sequence[Image]] | None = None,
    plot_notes: Sequence[str] = (),
) -> str:
    """summary.md's text (deterministic for a given ``generated_at``)."""
    return render_markdown(
        build_document(reports, generated_at=generated_at, plots=plots, plot_notes=plot_notes)
    )


__all__ = [
    "PLOT_KINDS",
    "build_document",
    "comparison_table",
    "depth_table",
    "llama_bench_table",
    "overview_table",
    "streaming_table",
    "summary_markdown",
    "sweep_tables",
]
