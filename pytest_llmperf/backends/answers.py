"""What a backend answers, checked against what it was asked before it becomes a result.

Every runner (the engine in this process, an isolated worker's reply, llama-bench's rows)
passes its Measurement through :func:`check_measurement`: the workload it measured is
the one asked for, there is one sample per repetition asked for (a load: one load time
each), and every metric value is a finite number, positive where it is a time or a rate
(ms, t/s) and never negative. An answer that fails is a BackendError naming the backend,
what was asked and what came back: a wrong number is never gated, stored as a baseline,
nor shown as a pass. llama-bench's rows are checked further, row by row, in
:mod:`pytest_llmperf.backends.llamabench` (:func:`check_count`, :func:`positive_ns`).
"""

from __future__ import annotations

import math
from typing import Any

from pytest_llmperf.errors import BackendError
from pytest_llmperf.model.metrics import METRICS
from pytest_llmperf.model.results import Measurement

#: units whose values are times or rates: a 0 there is no measurement
POSITIVE_UNITS = frozenset({"ms", "t/s"})


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is not one (a bool, text, NaN, inf)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def bad_value(metric: str, value: Any) -> str | None:
    """Why ``value`` cannot be a value of ``metric``, or None when it can."""
    number = _number(value)
    if number is None:
        return f"{value!r} is not a finite number"
    unit = METRICS[metric].unit if metric in METRICS else ""
    if unit in POSITIVE_UNITS and number <= 0:
        return f"{value!r} is not positive (a {unit} value)"
    if number < 0:
        return f"{value!r} is negative"
    return None


def check_measurement(
    m: Measurement, workload_name: str, repetitions: int, backend: str
) -> Measurement:
    """``m`` when it answers ``workload_name`` with ``repetitions`` samples and sane values;
    otherwise a BackendError naming ``backend`` (e.g. "llama-bench (/opt/ik/llama-bench)")
    and what it answered."""
    asked = f"{workload_name} x {repetitions} repetition(s)"
    if m.workload.name != workload_name:
        raise BackendError(
            f"{backend} answered workload {m.workload.name!r} when asked for {asked}; its "
            "numbers were not used"
        )
    if m.workload.kind == "load":
        counted, what = len(m.values.get("load_ms", [])), "load time(s)"
    else:
        counted, what = len(m.samples), "sample(s)"
    if counted != repetitions:
        raise BackendError(
            f"{backend} answered {asked} with {counted} {what}; its numbers were not used"
        )
    for metric, values in m.values.items():
        if not values:
            raise BackendError(
                f"{backend} answered {asked} with no value of {metric}; its numbers were not used"
            )
        for value in values:
            problem = bad_value(metric, value)
            if problem is not None:
                raise BackendError(
                    f"{backend} answered {asked} with {metric} = {problem}; its numbers were "
                    "not used"
                )
    return m


def positive_ns(raw: Any, expected: int, where: str) -> list[int]:
    """llama-bench's ``samples_ns`` of one row: ``expected`` positive integers (or a
    ValueError naming ``where`` and what is wrong)."""
    if not isinstance(raw, list):
        raise ValueError(f"{where}: samples_ns is {raw!r}, not a list of times")
    if len(raw) != expected:
        raise ValueError(
            f"{where}: {len(raw)} sample(s) in samples_ns where {expected} repetition(s) were "
            "asked for (-r in bench_args? set the test's repetitions instead)"
        )
    out: list[int] = []
    for value in raw:
        number = _number(value)
        if number is None or number <= 0 or number != int(number):
            raise ValueError(
                f"{where}: samples_ns holds {value!r}, not a positive whole number of nanoseconds"
            )
        out.append(int(number))
    return out


def check_count(row: dict[str, Any], field: str, expected: int, where: str) -> None:
    """The row's ``field`` (n_prompt, n_gen, n_depth) is ``expected`` (a missing n_depth
    counts as 0: builds from before -d)."""
    value = row.get(field, 0 if field == "n_depth" else None)
    if isinstance(value, bool) or not isinstance(value, int) or value != expected:
        raise ValueError(f"{where}: {field} is {value!r} where {expected} was asked for")


__all__ = ["POSITIVE_UNITS", "bad_value", "check_count", "check_measurement", "positive_ns"]
