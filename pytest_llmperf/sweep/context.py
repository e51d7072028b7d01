"""Where a value of a sweep definition comes from, and the errors that name it.

Every problem in a sweep file is a :class:`~pytest_llmperf.errors.UsageError` that starts
with the file and the key path (``sweeps.yaml: sweeps.cpu.axes.n_threads[2]: ...``).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_llmperf.errors import UsageError
from pytest_llmperf.fileio import read_yaml

PathLike = str | os.PathLike[str]

#: a name that can stand in a pytest id: a variant, a sweep, a model slug
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
SAFE_NAME_HELP = (
    "use letters, digits and _ . + - only (no spaces, brackets or '::'), starting with a "
    "letter or digit"
)


@dataclass(frozen=True)
class Where:
    """A place in a sweep definition: the file (or ``<python>``) and the key path."""

    source: str
    path: str = ""

    def key(self, key: str | int) -> Where:
        if isinstance(key, int):
            return Where(self.source, f"{self.path}[{key}]")
        return Where(self.source, f"{self.path}.{key}" if self.path else key)

    def error(self, problem: str) -> UsageError:
        where = f"{self.source}: {self.path}" if self.path else self.source
        return UsageError(f"{where}: {problem}")


def check_keys(data: Mapping[Any, Any], allowed: Sequence[str], where: Where, what: str) -> None:
    """Unknown keys are errors, with a "did you mean" hint."""
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise where.key(str(key)).error(
                f"unknown key in {what}{hint}; allowed keys: {', '.join(allowed)}"
            )


def int_value(raw: Any, where: Where, minimum: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise where.error(f"{raw!r} is not an integer; write an integer >= {minimum}")
    if raw < minimum:
        raise where.error(f"{raw} must be >= {minimum}")
    return raw


def load_yaml(path: PathLike) -> Any:
    """The YAML of a sweep file (:func:`~pytest_llmperf.fileio.read_yaml`, safe), with a
    syntax error worded as the sweep docs word it: ``not valid YAML at line L, ...``."""
    try:
        return read_yaml(path)
    except UsageError as exc:
        raise UsageError(str(exc).replace(": YAML syntax error", ": not valid YAML", 1)) from None
