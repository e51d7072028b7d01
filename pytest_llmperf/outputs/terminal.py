"""The terminal summary: lines plus pytest TerminalWriter markup, for
``tw.line(text, **markup)``. The table fits ``width`` columns (80 by default).

Layout: a context line (the model and params when every row shares them), a header, one
row per test; a test that measured several workloads gets a line with its name and one
indented row per workload. Model and params get columns only when they vary and the
test names still fit; otherwise they stay in the test ids and in the verbose details.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from pytest_llmperf.model.metrics import METRICS, fmt_value, ordered_metrics
from pytest_llmperf.model.results import MetricComparison, TestResult, worst
from pytest_llmperf.outputs.rows import (
    Row,
    counts_text,
    headline_change,
    headline_median,
    headline_rate,
    result_rows,
)
from pytest_llmperf.outputs.text import ellipsize, fmt_compact, fmt_pct, metric_unit

Line = tuple[str, dict[str, bool]]

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

#: how a verdict reads in the table's last column (failures in capitals)
VERDICT_LABEL: dict[str, str] = {
    "pass": "pass",
    "improved": "improved",
    "regressed": "REGRESSED",
    "error": "ERROR",
    "inconclusive": "inconclusive",
    "new": "new",
    "mismatch": "mismatch",
}

#: below this width the change column uses the short metric names
_WIDE = 100
#: the name column's width below which model/params columns are dropped
_NAME_MIN = 26
_INDENT = "  "


@dataclass
class _Col:
    key: str
    header: str
    width: int
    right: bool = True


@dataclass
class _Item:
    """One line of the table: a row, or the name line above a test's workload rows."""

    row: Row | None
    name: str
    verdict: str


def _markup(verdict: str) -> dict[str, bool]:
    return dict(VERDICT_MARKUP.get(verdict, {}))


def _change_text(row: Row, short: bool) -> str:
    c = headline_change(row.comparisons)
    if c is None:
        return "-"
    spec = METRICS.get(c.metric)
    name = spec.label if short and spec is not None else c.metric
    return f"{fmt_pct(c.change_pct)} {name}"


def _mem(row: Row, rss_mark: bool) -> str:
    m = row.measurement
    if m is None:
        return "-"
    vram = m.median("vram_mb")
    if vram is not None:
        return fmt_compact(vram)
    rss = m.median("rss_peak_mb")
    if rss is None:
        return "-"
    return fmt_compact(rss) + ("*" if rss_mark else "")


def _rate(row: Row) -> float | None:
    m = row.measurement
    return None if m is None else headline_rate(m)


def _column_cells(row: Row) -> dict[str, str]:
    """The registry's optional columns of a row (MetricSpec.column): per header, the first
    metric of the registry with it that the row measured."""
    m = row.measurement
    out: dict[str, str] = {}
    for name, spec in METRICS.items():
        if m is not None and spec.column and spec.column not in out and m.values.get(name):
            out[spec.column] = fmt_compact(m.median(name))
    return out


def _cells(row: Row, rss_mark: bool, short: bool) -> dict[str, str]:
    m = row.measurement
    return {
        **_column_cells(row),
        "model": m.model if m else "-",
        "params": m.params.short_id() if m else "-",
        "rate": fmt_compact(_rate(row)),
        "ttft": fmt_compact(headline_median(m, "ttft_ms") if m else None),
        "p95": fmt_compact(headline_median(m, "itl_p95_ms") if m else None),
        "load": fmt_compact(m.median("load_ms") if m else None),
        "mem": _mem(row, rss_mark),
        "change": _change_text(row, short),
        "verdict": VERDICT_LABEL.get(row.verdict, row.verdict),
    }


def _fmt_line(cols: list[_Col], values: dict[str, str]) -> str:
    parts = []
    for col in cols:
        text = ellipsize(values.get(col.key, ""), col.width, middle=col.key != "verdict")
        parts.append(text.rjust(col.width) if col.right else text.ljust(col.width))
    return " ".join(parts).rstrip()


def _spread(median: float, stddev: float, n: int, unit: str) -> str:
    if n < 2:
        return f"{fmt_value(median)} {unit}".rstrip()
    return f"{fmt_value(median)} ± {fmt_value(stddev)} {unit}".rstrip()


def _detail_lines(row: Row) -> list[Line]:
    """verbose >= 1: every metric of the row's measurement with its comparison."""
    out: list[Line] = []
    m = row.measurement
    pad = "      "
    if m is not None:
        args = m.params.to_args() or "default params"
        out.append(
            (
                f"{pad}{m.model} ({args}), {m.workload.name}: {m.repetitions} "
                f"repetitions after {m.warmup} warm-up",
                {},
            )
        )
        summaries = m.summaries()
        for name in ordered_metrics(summaries):
            s = summaries[name]
            spread = _spread(s.median, s.stddev, s.n, metric_unit(name))
            text = f"{pad}{name:<13} {spread:<22} n={s.n:<2}"
            c = row.comparison(name)
            markup: dict[str, bool] = {}
            if c is not None:
                text += f" {fmt_pct(c.change_pct):>7} {c.threshold or '-':>9}  {c.verdict}"
                if c.reason:
                    text += f" ({c.reason})"
                if c.verdict != "pass":
                    markup = _markup(c.verdict)
            out.append((text.rstrip(), markup))
        for name, reason in sorted(m.absent.items()):
            out.append((f"{pad}{name:<13} not measured: {reason}", {"yellow": True}))
    known = set(m.values) if m is not None else set()
    for c in row.comparisons:
        if c.metric in known:
            continue
        value = fmt_value(c.current_median, c.unit)
        text = (
            f"{pad}{c.metric:<13} {value:<22} {'':<4} {fmt_pct(c.change_pct):>7} "
            f"{c.threshold or '-':>9}  {c.verdict}"
        )
        if c.reason:
            text += f" ({c.reason})"
        out.append((text.rstrip(), _markup(c.verdict) if c.verdict != "pass" else {}))
    return out


def _items(reports: list[TestResult]) -> list[_Item]:
    items: list[_Item] = []
    for r in reports:
        rows = result_rows(r)
        if len(rows) == 1:
            items.append(_Item(rows[0], rows[0].name, rows[0].verdict))
            continue
        items.append(_Item(None, rows[0].name, r.verdict))
        items += [_Item(row, _INDENT + row.workload, row.verdict) for row in rows]
    return items


def terminal_lines(
    reports: list[TestResult], verbose: int, width: int = 80
) -> list[tuple[str, dict[str, bool]]]:
    """The llmperf terminal section: one row per test (per workload when a test measured
    several) with the key metrics, the headline change vs baseline and the verdict.

    Returns ``(text, markup)`` pairs for pytest's ``TerminalWriter.line(text, **markup)``.
    With ``verbose >= 1`` each row is followed by every metric of its measurement.
    """
    if not reports:
        return [("no performance measurements", {})]
    items = _items(reports)
    rows = [it.row for it in items if it.row is not None]
    measured = [r.measurement for r in rows if r.measurement is not None]
    models = sorted({m.model for m in measured})
    params = {m.params for m in measured}
    any_vram = any(m.values.get("vram_mb") for m in measured)
    all_vram = bool(measured) and all(m.values.get("vram_mb") for m in measured)
    rss_mark = any_vram and not all_vram
    mem_header = "vram" if all_vram else ("mem" if any_vram else "rss")
    short = width < _WIDE

    cells = {id(r): _cells(r, rss_mark, short) for r in rows}
    fixed = [
        _Col("rate", "t/s", 5),
        _Col("ttft", "ttft", 5),
        _Col("p95", "p95", 5),
        _Col("load", "load", 5),
        _Col("mem", mem_header, 6 if rss_mark else 5),
        _Col("change", "change", max(6, max(len(c["change"]) for c in cells.values()))),
        _Col(
            "verdict",
            "verdict",
            max(7, max(len(c["verdict"]) for c in cells.values())),
            right=False,
        ),
    ]
    names = [it.name for it in items if it.row is not None]
    longest = max(len(n) for n in names)
    available = width - sum(c.width + 1 for c in fixed)
    optional: list[_Col] = []
    if len(models) > 1:
        optional.append(_Col("model", "model", min(16, max(len(m) for m in models)), False))
    if len(params) > 1:
        ids = [c["params"] for c in cells.values()]
        optional.append(_Col("params", "params", min(16, max(len(i) for i in ids)), False))
    headers = [spec.column for spec in METRICS.values() if spec.column]
    for header in dict.fromkeys(h for h in headers if any(h in c for c in cells.values())):
        col_w = max(len(header), *(len(c.get(header, "-")) for c in cells.values()))
        optional.append(_Col(header, header, col_w))
        for c in cells.values():
            c.setdefault(header, "-")
    shown: list[_Col] = []
    for col in optional:
        rest = available - sum(c.width + 1 for c in shown) - col.width - 1
        if rest >= min(longest, _NAME_MIN):
            shown.append(col)
    name_w = max(12, min(longest, available - sum(c.width + 1 for c in shown)))
    lead = [c for c in shown if c.key in ("model", "params")]
    tail = [c for c in shown if c not in lead]  # the registry's, after the memory column
    cols = [_Col("name", "test", name_w, right=False), *lead, *fixed[:5], *tail, *fixed[5:]]

    lines: list[Line] = []
    context = []
    if len(models) == 1:
        context.append(f"model {models[0]}")
    if len(params) == 1:
        p = next(iter(params))
        args = p.to_args()
        context.append(f"params {p.short_id()}" + (f" ({args})" if args else ""))
    if context:
        lines.append((ellipsize(", ".join(context), width, middle=False), {}))
    lines.append((_fmt_line(cols, {c.key: c.header for c in cols}), {"bold": True}))

    for it in items:
        if it.row is None:
            lines.append((ellipsize(it.name, width), _markup(it.verdict)))
            continue
        row = it.row
        values = dict(cells[id(row)], name=it.name)
        lines.append((_fmt_line(cols, values), _markup(row.verdict)))
        if verbose >= 1:
            lines += _detail_lines(row)
            last = row.result.measurements[-1] if row.result.measurements else None
            if row.measurement is last:
                lines += [(f"      note: {n}", {"yellow": True}) for n in row.result.notes]

    legend = f"t/s: tg (pp if prompt-only); ms: ttft, p95 itl, load; MB: {mem_header}"
    if rss_mark:
        legend += " (*rss: no vram)"
    if any(
        it.row and it.row.measurement and it.row.measurement.workload.kind == "stream"
        for it in items
    ):
        legend += "; stream:* rows: the streamed chunks' (stream_tps, stream_ttft_ms, ...)"
    lines.append((ellipsize(legend, width, middle=False), {}))
    for col in tail:  # the registry's columns: which metric each shows
        named = [n for n, spec in METRICS.items() if spec.column == col.key]
        lines.append((ellipsize(f"{col.key}: {', else '.join(named)}", width, middle=False), {}))
    overall = worst([r.verdict for r in reports])
    done = _markup(overall) if overall != "pass" else {"green": True, "bold": True}
    lines += [(text, done) for text in textwrap.wrap(counts_text(reports), width) or [""]]
    return lines


#: the remedies of a gate that cannot see as small a change as its threshold
BLIND_REMEDY = (
    "more repetitions (--perf-repetitions), more accepted sessions (--perf-accept at other "
    "times), a paired reference run (--perf-reference), or a quieter machine"
)
UNDECIDED_REMEDY = (
    "more time for the rounds (--perf-budget, --perf-rounds), a quieter machine, or a paired "
    "threshold this machine resolves (the rules' paired table)"
)


def _blind_spot(c: MetricComparison) -> str | None:
    """What a comparison could not see, or None: a paired one left undecided (the change
    its rounds resolve), a stored one whose detectable change exceeds its threshold."""
    if c.detectable_pct is None:
        return None
    if c.ratio is not None:  # side by side: only an undecided metric is blind
        if c.verdict != "inconclusive" or not c.threshold:
            return None
        return f"{c.metric} undecided: its rounds resolve ±{c.detectable_pct:.1f}% ({c.threshold})"
    if c.threshold_pct is None or c.detectable_pct <= c.threshold_pct + 0.05:
        return None
    return f"{c.metric} detects >= {c.detectable_pct:.0f}% (threshold {c.threshold})"


def blind_spot_lines(reports: list[TestResult], limit: int = 10) -> list[str]:
    """The tests that could not see a change as small as their threshold on this machine:
    stored gates whose history's drift or samples' spread is larger, paired verdicts left
    undecided (with the change their rounds resolve), with the remedy; empty when every
    test saw its thresholds."""
    rows: list[str] = []
    paired = False
    for r in reports:
        worst: tuple[float, str] | None = None
        for c in r.all_comparisons():
            text = _blind_spot(c)
            if text is not None and c.detectable_pct is not None:
                paired = paired or c.ratio is not None
                if worst is None or c.detectable_pct > worst[0]:
                    worst = (c.detectable_pct, text)
        if worst is not None:
            rows.append(f"  {r.nodeid}: {worst[1]}")
    if not rows:
        return []
    head = f"{len(rows)} test(s) cannot see a change as small as their threshold on this machine:"
    more = [f"  ... and {len(rows) - limit} more"] if len(rows) > limit else []
    remedy = UNDECIDED_REMEDY if paired else BLIND_REMEDY
    return [head, *rows[:limit], *more, f"  remedy: {remedy}"]
