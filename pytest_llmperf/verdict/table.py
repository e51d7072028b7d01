"""The failure message of a performance test: a headline, one aligned table per
workload (the stored baseline's columns, or a paired comparison's reference, candidate and
ratio), the notes, and the remedy as the last line. Pure."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

from pytest_llmperf.model.metrics import fmt_value
from pytest_llmperf.model.results import SLA_KEY, MetricComparison

#: width of the failure table
TABLE_WIDTH = 100
REMEDY = "re-run with --perf-accept to accept these numbers"


def _pct(change: float | None) -> str:
    return "n/a" if change is None else f"{change:+.1f}%"


_COLUMNS: tuple[tuple[str, int, str], ...] = (
    # header, max width (the metric column takes what the others leave), alignment
    ("metric", 0, "<"),
    ("baseline", 12, ">"),
    ("current", 12, ">"),
    ("change", 8, ">"),
    ("threshold", 16, "<"),
    ("verdict", 19, "<"),
)
#: the columns of a paired comparison: the reference, the candidate and the ratio's interval
_PAIRED_COLUMNS: tuple[tuple[str, int, str], ...] = (
    ("metric", 0, "<"),
    ("reference", 12, ">"),
    ("candidate", 12, ">"),
    ("ratio [interval]", 22, ">"),
    ("threshold", 10, "<"),
    ("verdict", 12, "<"),
)
_SEP = "  "


def _cell(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _verdict_cell(c: MetricComparison) -> str:
    if c.p_value is not None and c.verdict in ("regressed", "improved", "inconclusive"):
        return f"{c.verdict} p={c.p_value:.2g}"
    return c.verdict


def format_table(comparisons: Sequence[MetricComparison]) -> list[str]:
    """Aligned rows: metric, baseline median, current median, change %, threshold,
    verdict (with p), then one wrapped line of reason per non-passing row. At most
    :data:`TABLE_WIDTH` columns."""
    paired = any(c.ratio is not None for c in comparisons)
    columns = _PAIRED_COLUMNS if paired else _COLUMNS

    def change(c: MetricComparison) -> str:
        if paired:
            if c.ratio is None or c.ratio_low is None or c.ratio_high is None:
                return "-"
            return f"{c.ratio:.3f} [{c.ratio_low:.3f}, {c.ratio_high:.3f}]"
        return _pct(c.change_pct) if c.change_pct is not None else "-"

    rows = [
        [
            c.metric,
            fmt_value(c.baseline_median, c.unit),
            fmt_value(c.current_median, c.unit),
            change(c),
            c.threshold or "-",
            _verdict_cell(c),
        ]
        for c in comparisons
    ]
    header = [h for h, _w, _a in columns]
    natural = [max([len(header[i])] + [len(r[i]) for r in rows]) for i in range(len(header))]
    widths = [min(cap, w) if cap else w for w, (_h, cap, _a) in zip(natural, columns, strict=True)]
    room = TABLE_WIDTH - sum(widths[1:]) - len(_SEP) * (len(widths) - 1)
    widths[0] = max(min(natural[0], room), len(header[0]))

    def line(cells: Sequence[str]) -> str:
        cols = zip(cells, widths, columns, strict=True)
        parts = [f"{_cell(t, w):{a}{w}}" for t, w, (_h, _c, a) in cols]
        return _SEP.join(parts).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    for c in comparisons:
        if c.verdict != "pass" and c.reason and c.verdict != "new":
            out.extend(
                textwrap.wrap(
                    f"{c.metric}: {c.reason}",
                    TABLE_WIDTH,
                    initial_indent="  ",
                    subsequent_indent="    ",
                )
            )
    return out


def _shown(c: MetricComparison) -> bool:
    return bool(c.threshold) or c.verdict != "pass"


def failure_message(
    nodeid: str,
    comparisons_by_workload: Mapping[str, Sequence[MetricComparison]],
    *,
    notes: Sequence[str] = (),
) -> str:
    """The message of a failed performance test: a headline, one table per workload (gated
    or non-passing metrics), the notes, and the remedy as the last line."""
    regressed = [
        (wl, c)
        for wl, cs in comparisons_by_workload.items()
        for c in cs
        if c.verdict == "regressed"
    ]
    improved = [
        (wl, c) for wl, cs in comparisons_by_workload.items() for c in cs if c.verdict == "improved"
    ]
    if regressed:
        what = ", ".join(
            f"{c.metric} {_pct(c.change_pct)}"
            if wl != SLA_KEY and c.change_pct is not None
            else c.metric
            for wl, c in regressed[:4]
        )
        more = f" and {len(regressed) - 4} more" if len(regressed) > 4 else ""
        lines = [f"{nodeid}: performance regression: {what}{more}"]
    elif improved:
        lines = [
            f"{nodeid}: improved beyond the threshold (--perf-fail-on-improvement): "
            + ", ".join(f"{c.metric} {_pct(c.change_pct)}" for _wl, c in improved[:4])
        ]
    else:
        lines = [f"{nodeid}: performance check failed"]
    for wl, comps in comparisons_by_workload.items():
        shown = [c for c in comps if _shown(c)]
        if not shown:
            continue
        lines.append("")
        lines.append(f"[{wl}]" if wl != SLA_KEY else "[sla: absolute limits and ratios]")
        lines.extend(format_table(shown))
    if notes:
        lines.append("")
        lines.extend(notes)
    lines.append("")
    baseline_failures = [c for wl, c in regressed + improved if wl != SLA_KEY]
    if regressed and not baseline_failures:
        lines.append(
            "absolute limits and SLAs do not follow the baseline: fix the slowdown, "
            "or change the rule in its source"
        )
    else:
        if any(wl == SLA_KEY for wl, _c in regressed):
            lines.append(
                "(absolute limits and SLAs above do not follow the baseline: "
                "change the rule in its source)"
            )
        lines.append(REMEDY)
    return "\n".join(lines)
