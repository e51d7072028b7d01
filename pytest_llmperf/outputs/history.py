"""The baselines' history: each metric's accepted session medians over time, their spread,
and where the level stepped (:func:`pytest_llmperf.verdict.stats.change_points`). As text lines
(``llmperf history``), as Markdown with one plot per test (``llmperf history -o DIR``, and
beside ``--perf-report``'s files)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_llmperf.baseline import Entry
from pytest_llmperf.fileio import atomic_path, write_atomic
from pytest_llmperf.model import ownership
from pytest_llmperf.model.metrics import KEY_METRICS, METRICS, fmt_value, ordered_metrics
from pytest_llmperf.outputs.doc import (
    Block,
    Heading,
    Image,
    Para,
    Table,
    render_html,
    render_markdown,
)
from pytest_llmperf.verdict import stats

#: the metrics a history shows (where measured)
SHOWN = tuple(m for m in KEY_METRICS if m not in ("vram_mb",))


@dataclass(frozen=True)
class Series:
    """One metric of one workload of one entry over its accepted sessions."""

    nodeid: str
    workload: str
    metric: str
    dates: tuple[str, ...]
    medians: tuple[float, ...]
    lows: tuple[float, ...]
    highs: tuple[float, ...]
    steps: tuple[int, ...]

    @property
    def drift_pct(self) -> float | None:
        bound = stats.drift_allowance(self.medians)
        return None if bound is None else bound * 100


def series(entries: Sequence[Entry]) -> list[Series]:
    out: list[Series] = []
    for e in entries:
        sessions = e.usable
        for wl in sorted({w for s in sessions for w in s.values}):
            for metric in ordered_metrics({m for s in sessions for m in s.values.get(wl, {})}):
                if metric not in SHOWN:
                    continue
                rows = [
                    (s.accepted_at, s.values[wl][metric])
                    for s in sessions
                    if s.values.get(wl, {}).get(metric)
                ]
                if not rows:
                    continue
                medians = tuple(stats.median(v) for _d, v in rows)
                out.append(
                    Series(
                        e.nodeid,
                        wl,
                        metric,
                        tuple(d[:16].replace("T", " ") for d, _v in rows),
                        medians,
                        tuple(min(v) for _d, v in rows),
                        tuple(max(v) for _d, v in rows),
                        tuple(stats.change_points(medians)),
                    )
                )
    return out


def _unit(metric: str) -> str:
    return METRICS[metric].unit if metric in METRICS else ""


def lines(entries: Sequence[Entry]) -> list[str]:
    """The history as text: per test and workload, one line per metric."""
    out: list[str] = []
    current = ("", "")
    for s in series(entries):
        if (s.nodeid, s.workload) != current:
            current = (s.nodeid, s.workload)
            out.append(
                f"{s.nodeid} [{s.workload}]  {len(s.dates)} session(s): {', '.join(s.dates)}"
            )
        cells = []
        for i, med in enumerate(s.medians):
            mark = " | step ->" if i in s.steps else ""
            cells.append(f"{mark} {fmt_value(med)}")
        drift = f"drift ±{s.drift_pct:.1f}%" if s.drift_pct is not None else "drift unknown"
        out.append(f"  {s.metric:<12} {''.join(cells).strip()}  ({_unit(s.metric)}; {drift})")
    if not out:
        out.append("no accepted sessions")
    out.append("steps: where the level changed (optimal partitioning, L1 cost, BIC-like penalty)")
    return out


def write(entries: Sequence[Entry], outdir: Path, *, what: str = "history -o") -> list[Path]:
    """history.md and a self-contained history.html (with a plot per test when matplotlib
    is there) into ``outdir``. A file there under one of these names that is not ours is
    a UsageError naming it (``what``: the option or command), before anything is
    written."""
    from pytest_llmperf.outputs.files import HISTORY_FILES, HISTORY_PLOT_NAME, check_folder

    check_folder(outdir, what, HISTORY_FILES, HISTORY_PLOT_NAME)
    outdir.mkdir(parents=True, exist_ok=True)
    all_series = series(entries)
    blocks: list[Block] = [
        Heading(1, "Baseline history"),
        Para(
            "Each metric's accepted session medians, oldest first; the bars span the "
            "session's samples; a step marks where the level changed (optimal partitioning "
            "with an L1 cost and a BIC-like penalty, as asv's step detection)."
        ),
    ]
    written: list[Path] = []
    by_test: dict[str, list[Series]] = {}
    for s in all_series:
        by_test.setdefault(s.nodeid, []).append(s)
    for i, (nodeid, group) in enumerate(sorted(by_test.items())):
        blocks.append(Heading(2, nodeid))
        rows = [
            [
                f"{s.workload} {s.metric}",
                " · ".join(
                    ("▲ " if j in s.steps else "") + fmt_value(m) for j, m in enumerate(s.medians)
                ),
                f"±{s.drift_pct:.1f}%" if s.drift_pct is not None else "-",
            ]
            for s in group
        ]
        blocks.append(
            Table(
                ["metric", "session medians (oldest first)", "drift"],
                rows,
                ["left", "left", "right"],
            )
        )
        png = _plot(group, outdir / f"history-{i:03d}.png")
        if png is not None:
            written.append(png)
            blocks.append(Image(png, f"history of {nodeid}"))
    md = outdir / "history.md"
    ownership.check(md, "history-md", what)
    write_atomic(md, render_markdown(blocks, image_base=outdir), durable=False)
    page = outdir / "history.html"
    ownership.check(page, "history-html", what)
    write_atomic(page, render_html(blocks, title="llmperf: baseline history"), durable=False)
    return [md, page, *written]


def _plot(group: Sequence[Series], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(len(group), 1, figsize=(7, 1.8 * len(group) + 0.6), squeeze=False)
    for ax, s in zip(axes[:, 0], group, strict=True):
        xs = list(range(len(s.medians)))
        err = [
            [m - lo for m, lo in zip(s.medians, s.lows, strict=True)],
            [hi - m for m, hi in zip(s.medians, s.highs, strict=True)],
        ]
        ax.errorbar(xs, s.medians, yerr=err, fmt="o-", capsize=3, color="#1f77b4")
        for step in s.steps:
            ax.axvline(step - 0.5, color="#d62728", linestyle="--", linewidth=1)
        ax.set_ylabel(f"{s.metric}\n({_unit(s.metric)})", fontsize=8)
        ax.set_xticks(xs, [d[5:] for d in s.dates], fontsize=7)
        ax.set_title(s.workload, fontsize=8, loc="left")
    fig.tight_layout()
    try:
        ownership.check(path, "plot-png", "history")
        with atomic_path(path, durable=False) as tmp:
            fig.savefig(tmp, format="png", dpi=90, metadata={"Software": ownership.PNG_SOFTWARE})
    finally:
        plt.close(fig)
    return path
