"""Validators of option values, for argparse ``type=`` (pytest options and the ``llmperf``
command) and for ini keys: a bad value is a usage error before any test measures, naming
the value and what is accepted.
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
from collections.abc import Callable, Sequence
from typing import TypeVar

from pytest_llmperf.errors import UsageError

T = TypeVar("T", bound=str)

_MACHINE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
MACHINE_ID_HELP = (
    "use letters, digits, '.', '_', '+' and '-' only (it becomes a file name), e.g. 'xeon-8480-2c'"
)


def int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} must be >= {minimum}")
        return value

    return parse


def int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int_at_least(low)(text)
        if value > high:
            raise argparse.ArgumentTypeError(f"{value} must be <= {high}")
        return value

    return parse


def choice(choices: Sequence[T]) -> Callable[[str], T]:
    def parse(text: str) -> T:
        for c in choices:
            if text == c:
                return c
        raise argparse.ArgumentTypeError(f"{text!r}: accepted: {', '.join(choices)}")

    return parse


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_seconds(text: str) -> float:
    """A duration in seconds > 0."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of seconds > 0")
    return value


def non_negative(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a number >= 0")
    return value


def positive_percent(text: str) -> float:
    """A percentage > 0 and < 100 ('5', '5%')."""
    value = _number(text.strip().removesuffix("%"))
    if not 0 < value < 100:
        raise argparse.ArgumentTypeError(f"{text!r}: a percentage between 0 and 100, e.g. 5")
    return value


def probability(text: str) -> float:
    """A significance level strictly between 0 and 1."""
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a number between 0 and 1, e.g. 0.05")
    return value


def check_machine_id(text: str) -> str:
    """``text`` if it is a usable machine id (the whole string: no trailing newline);
    ValueError otherwise."""
    if not _MACHINE_ID_RE.fullmatch(text or "") or ".." in text:
        raise ValueError(f"machine id {text!r}: {MACHINE_ID_HELP}")
    return text


def machine_id(text: str) -> str:
    try:
        return check_machine_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def split_words(text: str, where: str) -> list[str]:
    """``text`` split into words as a POSIX shell would (quotes and backslashes), the one
    split of user text in the package (launchers, ``args=``, ``bench_args=``, ``llmperf ab
    --args``, ``--cmake-args``): an unbalanced quote or a trailing backslash is a
    UsageError naming ``where`` the text came from, the text, and the fix."""
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise UsageError(
            f"{where}: {text!r} cannot be split into words ({str(exc).lower()}): close the "
            "quote, or escape a quote or backslash that is part of a word with a backslash"
        ) from None


def as_words(value: object, where: str) -> list[str]:
    """Arguments given as one string (split by :func:`split_words`) or as a list of words;
    anything else is a UsageError naming ``where``."""
    if isinstance(value, str):
        return split_words(value, where)
    if isinstance(value, list | tuple) and all(isinstance(t, str) for t in value):
        return list(value)
    raise UsageError(
        f"{where}={value!r}: write the arguments as one string, e.g. '-t 8 -b 256' (or a "
        "list of words)"
    )
