"""PNG plots of a session (matplotlib, an optional extra, imported lazily).

No pyplot: figures are ``matplotlib.figure.Figure`` objects drawn with the Agg canvas, so
plotting never touches the process's global matplotlib state (backend, open figures).
Each function returns the files it wrote and skips a plot kind without data.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_llmperf.fileio import atomic_path
from pytest_llmperf.model import ownership
from pytest_llmperf.model.metrics import KEY_METRICS, METRICS, chunk_gaps_ms, fmt_value
from pytest_llmperf.model.results import Measurement, TestResult
from pytest_llmperf.outputs.depth import depth_series
from pytest_llmperf.outputs.doc import Image
from pytest_llmperf.outputs.files import file_name_part
from pytest_llmperf.outputs.rows import (
    BaselineIndex,
    all_rows,
    baseline_for,
    baseline_index,
    short_name,
)
from pytest_llmperf.outputs.sweep_groups import SweepGroup, sweep_groups
from pytest_llmperf.outputs.text import ellipsize, fmt_pct, metric_better, metric_unit

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: the note written instead of plots when matplotlib is missing
PLOTS_MISSING_NOTE = "matplotlib not installed: pip install pytest-llmperf[plots]"

#: colours of verdicts in plots (colour-blind friendly where it matters)
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
DPI = 110
CURRENT_COLOR = "#1f5fa8"
_ROWS_PER_FIGURE = 12
#: the smallest half-width of a metric panel's x axis, relative to its centre
_MIN_WINDOW = 0.08
_ITL_PANELS_PER_FIGURE = 8


def verdict_color(verdict: str) -> str:
    return VERDICT_COLOR.get(verdict, "#455a64")


def matplotlib_missing() -> str | None:
    """The note to show instead of plots when matplotlib cannot be imported, else None."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        return PLOTS_MISSING_NOTE
    return None


@contextmanager
def _style() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(
        {
            "font.size": 10,
            "axes.titlesize": 10.5,
            "axes.labelsize": 10,
            "xtick.labelsize": 9,
            "ytick.labelsize": 9,
            "legend.fontsize": 8.5,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.color": "#dddddd",
            "grid.linewidth": 0.7,
            "axes.axisbelow": True,
            "figure.facecolor": "white",
            "savefig.facecolor": "white",
        }
    ):
        yield


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(fig: Figure, path: Path) -> Path:
    """The figure as a PNG at ``path``, tagged as ours (tEXt Software), through the one
    atomic writer; an existing file there that is not a plot of ours is refused."""
    ownership.check(path, "plot-png", "report")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, durable=False) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": ownership.PNG_SOFTWARE})
    return path


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


def _numbered(base: str, i: int, n: int) -> str:
    return f"{base}.png" if n == 1 else f"{base}_{i + 1}.png"


def _axis_label(metric: str) -> str:
    unit = metric_unit(metric)
    better = metric_better(metric)
    text = f"{metric} ({unit})" if unit else metric
    return f"{text}, {better} is better" if better else text


# -- (a) current vs baseline per key metric ---------------------------------------------


@dataclass
class _MetricEntry:
    label: str
    current: list[float]
    baseline: list[float]
    baseline_median: float | None
    verdict: str
    change_pct: float | None


def _per_load(metric: str) -> bool:
    """A metric of the loaded model rather than of a workload (load time, memory): one
    entry per test and params."""
    spec = METRICS.get(metric)
    return spec is not None and spec.per == "load"


def _metric_entries(
    metric: str, reports: Sequence[TestResult], index: BaselineIndex
) -> list[_MetricEntry]:
    out: list[_MetricEntry] = []
    rows = all_rows(reports)
    if _per_load(metric):
        # a test measuring several workloads on one loaded model has one load and one
        # memory figure: keep the last measurement per (test, params)
        last: dict[tuple[str, object], int] = {}
        for i, row in enumerate(rows):
            if row.measurement is not None and row.measurement.values.get(metric):
                last[(row.result.nodeid, row.measurement.params)] = i
        keep = set(last.values())
        rows = [row for i, row in enumerate(rows) if i in keep]
    for row in rows:
        m = row.measurement
        if m is None or not m.values.get(metric):
            continue
        base = baseline_for(index, row.result, m)
        base_vals = list(base.values.get(metric, [])) if base else []
        c = row.comparison(metric)
        base_median = (
            c.baseline_median
            if c and c.baseline_median is not None
            else (statistics.median(base_vals) if base_vals else None)
        )
        out.append(
            _MetricEntry(
                label=row.name if _per_load(metric) and row.workload else row.label,
                current=list(m.values[metric]),
                baseline=base_vals,
                baseline_median=base_median,
                verdict=c.verdict if c else "",
                change_pct=c.change_pct if c else None,
            )
        )
    return out


def _strip(ax: Axes, values: list[float], y: float, color: str, *, hollow: bool = False) -> None:
    """Repetitions as dots on one lane, the min..max range as a line, the median as a bar."""
    if not values:
        return
    n = len(values)
    offsets = [((i % 5) - 2) * 0.045 for i in range(n)] if n > 1 else [0.0]
    ax.hlines(y, min(values), max(values), color=color, linewidth=1.6, alpha=0.55, zorder=2)
    ax.scatter(
        values, [y + o for o in offsets], s=16, color=color, alpha=0.75, zorder=3, edgecolors="none"
    )
    ax.scatter(
        [statistics.median(values)], [y], marker="|", s=420, linewidths=2.6, color=color, zorder=4
    )
    if hollow:
        ax.scatter(
            [statistics.median(values)],
            [y],
            marker="D",
            s=40,
            facecolors="white",
            edgecolors=color,
            zorder=5,
        )


def _metric_figure(metric: str, entries: list[_MetricEntry], path: Path, page: str) -> Path:
    n = len(entries)
    fig = _figure(9.0, 0.4 + 1.05 * n)
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    unit = metric_unit(metric)
    for ax, e in zip(axes, entries, strict=True):
        vals = e.current + e.baseline + ([e.baseline_median] if e.baseline_median else [])
        lo, hi = min(vals), max(vals)
        # at least +-_MIN_WINDOW around the middle: a 2% change must look small and a
        # 12% change large, whatever the spread of the panel's own data
        mid = (lo + hi) / 2
        half = max((hi - lo) / 2 * 1.15, abs(mid) * _MIN_WINDOW, 1e-9)
        ax.set_xlim(mid - half, mid + half)
        ax.set_ylim(-0.6, 1.6)
        ax.set_yticks([0, 1], ["current", "baseline"])
        color = verdict_color(e.verdict) if e.verdict else CURRENT_COLOR
        _strip(ax, e.current, 0, color)
        if e.baseline:
            _strip(ax, e.baseline, 1, BASELINE_COLOR)
        elif e.baseline_median is not None:
            ax.scatter([e.baseline_median], [1], marker="D", s=40, color=BASELINE_COLOR, zorder=4)
        else:
            ax.text(
                0.5,
                1,
                "no baseline",
                transform=ax.get_yaxis_transform(),
                ha="center",
                va="center",
                color=BASELINE_COLOR,
                fontsize=9,
            )
        if e.baseline_median is not None:
            ax.axvline(
                e.baseline_median, color=BASELINE_COLOR, linestyle="--", linewidth=1, zorder=1
            )
        med = statistics.median(e.current)
        ax.set_title(ellipsize(e.label, 70), loc="left", fontsize=9.5)
        change = "" if e.change_pct is None else f"{fmt_pct(e.change_pct)}  "
        ax.set_title(
            f"{fmt_value(med, unit)}  {change}{e.verdict}".rstrip(),
            loc="right",
            fontsize=9.5,
            color=color,
            fontweight="bold",
        )
        ax.grid(axis="y", visible=False)
    axes[-1].set_xlabel(_axis_label(metric))
    spec = METRICS.get(metric)
    title = f"{metric}: {spec.title if spec else metric}, current vs baseline{page}"
    fig.suptitle(title, fontsize=11.5, fontweight="bold")
    return _save(fig, path)


def plot_metrics(reports: Sequence[TestResult], outdir: Path, index: BaselineIndex) -> list[Path]:
    """(a) one figure per key metric: each test's repetitions (current and baseline)."""
    out: list[Path] = []
    for metric in KEY_METRICS:
        entries = _metric_entries(metric, reports, index)
        if not entries:
            continue
        pages = _chunks(entries, _ROWS_PER_FIGURE)
        for i, chunk in enumerate(pages):
            page = f" ({i + 1}/{len(pages)})" if len(pages) > 1 else ""
            path = outdir / _numbered(f"metric_{file_name_part(metric)}", i, len(pages))
            out.append(_metric_figure(metric, chunk, path, page))
    return out


# -- (b) inter-token latency distributions ----------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    f = math.floor(k)
    c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)


def _itl_panel(
    ax: Axes, label: str, gaps: list[float], base: list[float], reps: int, what: str = "inter-token"
) -> None:
    p50, p95, p99 = (_percentile(gaps, q) for q in (50, 95, 99))
    everything = gaps + base
    lo = min(everything)
    hi_data = max(everything)
    p99_all = max(p99, _percentile(base, 99) if base else 0.0)
    hi = min(hi_data, p99_all + max(p99_all - lo, 1e-6) * 0.35)
    span = max(hi - lo, 1e-6)
    lo_x, hi_x = max(0.0, lo - span * 0.05), hi + span * 0.05
    bins = [lo_x + (hi_x - lo_x) * i / 40 for i in range(41)]
    heights, _, _ = ax.hist(
        [min(g, hi_x) for g in gaps],
        bins=bins,
        weights=[100 / len(gaps)] * len(gaps),
        color=CURRENT_COLOR,
        alpha=0.75,
        label=f"current ({len(gaps)} gaps)",
    )
    top = float(max(heights))
    if base:
        base_heights, _, _ = ax.hist(
            [min(g, hi_x) for g in base],
            bins=bins,
            weights=[100 / len(base)] * len(base),
            histtype="step",
            color=BASELINE_COLOR,
            linewidth=1.6,
            label=f"baseline ({len(base)} gaps)",
        )
        top = max(top, float(max(base_heights)))
    for q, value, style in (("p50", p50, "-"), ("p95", p95, "--"), ("p99", p99, ":")):
        ax.axvline(
            value,
            color="#222222",
            linestyle=style,
            linewidth=1.3,
            label=f"{q} {fmt_value(value, 'ms')}",
        )
    ax.set_xlim(lo_x, hi_x)
    beyond = sum(1 for g in gaps if g > hi_x)
    sub = f"{reps} runs" + (
        f"; {beyond} gap{'s' if beyond > 1 else ''} > {fmt_value(hi_x, 'ms')}, max "
        f"{fmt_value(max(gaps), 'ms')}, in the last bin"
        if beyond
        else ""
    )
    ax.set_title(f"{ellipsize(label, 58)}\n{sub}", loc="left", fontsize=9.5)
    ax.set_xlabel(f"{what} gap (ms)")
    ax.set_ylabel("% of gaps")
    # headroom above the bars for the legend
    ax.set_ylim(0, top * (1.75 if base else 1.6))
    ax.legend(loc="upper right", framealpha=0.85)


def _gaps(m: Measurement) -> list[float]:
    """The gaps a measurement's ITL plot shows: between tokens, or for a streamed request
    between the chunks that carried text (what the application saw)."""
    if m.workload.kind == "stream":
        return [g for s in m.samples for g in chunk_gaps_ms(s)]
    return m.itl_ms()


def plot_itl(reports: Sequence[TestResult], outdir: Path, index: BaselineIndex) -> list[Path]:
    """(b) the inter-token gap distribution of each test, p50/p95/p99 marked; for a
    streamed request, the gaps between streamed chunks carrying text."""
    panels: list[tuple[str, list[float], list[float], int, str]] = []
    for row in all_rows(reports):
        m = row.measurement
        if m is None:
            continue
        gaps = _gaps(m)
        if len(gaps) < 2:
            continue
        base = baseline_for(index, row.result, m)
        stream = m.workload.kind == "stream"
        label = f"{row.label} (streamed chunks)" if stream else row.label
        what = "streamed chunk" if stream else "inter-token"
        panels.append((label, gaps, _gaps(base) if base else [], len(m.samples), what))
    if not panels:
        return []
    out: list[Path] = []
    pages = _chunks(panels, _ITL_PANELS_PER_FIGURE)
    for i, chunk in enumerate(pages):
        ncols = 1 if len(chunk) == 1 else 2
        nrows = math.ceil(len(chunk) / ncols)
        fig = _figure(6.0 if ncols == 1 else 11.0, 0.5 + 3.0 * nrows)
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax, (label, gaps, base, reps, what) in zip(axes, chunk, strict=False):
            _itl_panel(ax, label, gaps, base, reps, what)
        for ax in axes[len(chunk) :]:
            ax.set_visible(False)
        page = f" ({i + 1}/{len(pages)})" if len(pages) > 1 else ""
        fig.suptitle(f"Inter-token latency distribution{page}", fontsize=11.5, fontweight="bold")
        out.append(_save(fig, outdir / _numbered("itl", i, len(pages))))
    return out


# -- (c) depth curves --------------------------------------------------------------------

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def plot_depth(
    reports: Sequence[TestResult], outdir: Path, baseline_reports: Sequence[TestResult] | None
) -> list[Path]:
    """(c) S_PP and S_TG against N_KV, like llama-sweep-bench's plot script."""
    series = [(r, pts) for r in reports if (pts := depth_series(r))]
    if not series:
        return []
    base_by_id = {r.nodeid: depth_series(r) for r in baseline_reports or []}
    kinds = [
        (k, title)
        for k, title in (("pp", "S_PP: prompt processing"), ("tg", "S_TG: text generation"))
        if any(getattr(p, f"s_{k}") for _, pts in series for p in pts)
    ]
    fig = _figure(5.2 * len(kinds) + 0.4, 4.6)
    axes = fig.subplots(1, len(kinds), squeeze=False)[0]
    for ax, (kind, title) in zip(axes, kinds, strict=True):
        for i, (r, pts) in enumerate(series):
            marker = _MARKERS[i % len(_MARKERS)]
            xs, ys, errs = [], [], []
            for p in pts:
                vals: list[float] = getattr(p, f"s_{kind}")
                if vals:
                    xs.append(p.n_kv)
                    ys.append(statistics.median(vals))
                    errs.append(statistics.stdev(vals) if len(vals) > 1 else 0.0)
            if not xs:
                continue
            m = r.measurements[0]
            name = short_name(r.nodeid)
            label = ellipsize(name if m.model in name else f"{name} ({m.model})", 60)
            ax.errorbar(
                xs,
                ys,
                yerr=errs,
                marker=marker,
                capsize=3,
                linewidth=1.8,
                markersize=5,
                label=label,
                color=f"C{i}",
            )
            base = base_by_id.get(r.nodeid, [])
            bx = [p.n_kv for p in base if getattr(p, f"s_{kind}")]
            by = [
                statistics.median(getattr(p, f"s_{kind}")) for p in base if getattr(p, f"s_{kind}")
            ]
            if bx:
                ax.plot(
                    bx,
                    by,
                    linestyle="--",
                    marker=marker,
                    markersize=4,
                    linewidth=1.2,
                    color=f"C{i}",
                    alpha=0.5,
                    label="baseline",
                )
        ax.set_title(title, loc="left", fontweight="bold")
        ax.set_xlabel("N_KV: tokens already in the KV cache")
        ax.set_ylabel(f"S_{kind.upper()} (t/s, median ± sd)")
        ax.set_ylim(bottom=0)
        ax.legend(loc="lower left", frameon=True, framealpha=0.85)
    fig.suptitle("Throughput against context depth", fontsize=11.5, fontweight="bold")
    return [_save(fig, outdir / "depth.png")]


# -- (d) sweeps by axis ------------------------------------------------------------------


def _sweep_figure(group: SweepGroup, metric: str, path: Path) -> Path:
    n = len(group.axes)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig = _figure(max(5.0, 4.2 * ncols), 0.6 + 3.6 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    verdicts_seen: list[str] = []
    for ax, axis in zip(axes, group.axes, strict=False):
        variants = group.variants(axis)
        pos = {str(v): i for i, v in enumerate(variants)}
        per_variant: dict[int, list[float]] = {}
        counts: dict[int, int] = {}
        for r, m, axes_map in group.points:
            s = m.summary(metric)
            if s is None or axis not in axes_map:
                continue
            x = pos[str(axes_map[axis])]
            k = counts.get(x, 0)
            counts[x] = k + 1
            offset = ((k % 5) - 2) * 0.06
            color = verdict_color(r.verdict)
            if r.verdict not in verdicts_seen:
                verdicts_seen.append(r.verdict)
            ax.errorbar(
                [x + offset],
                [s.median],
                yerr=[[s.median - s.min], [s.max - s.median]],
                fmt="o",
                color=color,
                markersize=6,
                capsize=2.5,
                alpha=0.9,
            )
            others = ", ".join(f"{k}={v}" for k, v in axes_map.items() if k != axis)
            if others:
                ax.annotate(
                    others,
                    (x + offset, s.median),
                    xytext=(7, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=7.5,
                    color="#444444",
                )
            per_variant.setdefault(x, []).append(s.median)
        xs = sorted(per_variant)
        ax.plot(
            xs,
            [statistics.median(per_variant[x]) for x in xs],
            color="#222222",
            linewidth=1.6,
            marker="_",
            markersize=18,
            zorder=1,
        )
        ax.set_xticks(range(len(variants)), [str(v) for v in variants])
        ax.set_xlim(-0.5, len(variants) - 0.5)
        ax.set_xlabel(axis)
        ax.set_ylabel(_axis_label(metric))
        ax.set_title(f"by {axis}", loc="left", fontweight="bold")
        ax.grid(axis="x", visible=False)
    for ax in axes[n:]:
        ax.set_visible(False)
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="o", linestyle="", color=verdict_color(v), label=v)
        for v in verdicts_seen
    ]
    handles.append(
        Line2D([], [], color="#222222", linewidth=1.6, label="median over sampled points")
    )
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    fig.suptitle(
        f"Sweep {group.title}: {metric} (median, min..max of repetitions)",
        fontsize=11.5,
        fontweight="bold",
    )
    return _save(fig, path)


def plot_sweeps(reports: Sequence[TestResult], outdir: Path) -> list[Path]:
    """(d) the sweep's metric against each axis' variants; and each metric the registry
    plots beside it (MetricSpec.sweep_plot, e.g. tg_roofline_pct), one figure each."""
    out: list[Path] = []
    for group in sweep_groups(reports):
        metric = group.metric()
        if metric is None:
            continue
        base = f"sweep_{file_name_part(group.title)}"
        out.append(_sweep_figure(group, metric, outdir / f"{base}.png"))
        for extra in group.extra_metrics():
            path = outdir / f"{base}_{file_name_part(extra)}.png"
            out.append(_sweep_figure(group, extra, path))
    return out


# -- all ---------------------------------------------------------------------------------


def _alts(kind: str, paths: list[Path]) -> list[Image]:
    alt = {
        "metrics": "key metric: current vs baseline repetitions",
        "itl": "inter-token (and streamed chunk) latency distribution with p50/p95/p99",
        "depth": "prompt and generation rates against KV cache depth",
        "sweep": "sweep metric against each axis",
    }[kind]
    return [Image(p, f"{p.stem}: {alt}") for p in paths]


def make_plots(
    reports: Sequence[TestResult],
    outdir: Path,
    *,
    baseline_reports: Sequence[TestResult] | None = None,
) -> tuple[dict[str, list[Image]], list[str]]:
    """Every plot kind that has data: ``({kind: [Image]}, notes)``. Without matplotlib,
    no images and the note saying how to install it."""
    missing = matplotlib_missing()
    if missing:
        return {}, [missing]
    index = baseline_index(baseline_reports)
    plots: dict[str, list[Image]] = {}
    with _style():
        for kind, paths in (
            ("metrics", plot_metrics(reports, outdir, index)),
            ("itl", plot_itl(reports, outdir, index)),
            ("depth", plot_depth(reports, outdir, baseline_reports)),
            ("sweep", plot_sweeps(reports, outdir)),
        ):
            if paths:
                plots[kind] = _alts(kind, paths)
    return plots, []


__all__ = [
    "VERDICT_COLOR",
    "make_plots",
    "matplotlib_missing",
    "plot_depth",
    "plot_itl",
    "plot_metrics",
    "plot_sweeps",
]
