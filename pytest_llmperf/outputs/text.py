"""Numbers and text as the outputs print them: compact numbers for the terminal's narrow
columns, signed percentages, text cut to a width, a metric's unit and direction."""

from __future__ import annotations

import math

from pytest_llmperf.model.metrics import METRICS


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
    """A signed change in percent, one decimal: ``+1.5%``, ``-30.0%``; ``-`` for none."""
    if value is None or math.isnan(value):
        return "-"
    return f"{value:+.1f}%"


def metric_unit(name: str) -> str:
    """The registry's unit of a metric ("" for a name the registry does not know)."""
    return METRICS[name].unit if name in METRICS else ""


def metric_better(name: str) -> str:
    """The registry's direction of a metric ("higher", "lower"; "" when unknown)."""
    return METRICS[name].better if name in METRICS else ""
