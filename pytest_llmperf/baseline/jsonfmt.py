"""The baseline files' JSON layout: readable in review, one line per thing that changes.

Objects are indented two spaces with sorted keys, as ``json.dumps(indent=2)`` would; but a
list of numbers or strings, and an object whose values are all scalars and that fits on
one line, are written on one line. So a session's values take one line per metric, a
fingerprint part one line, and an accept's diff shows one line per changed metric. Whole
numbers are written without ``.0``. The output is valid JSON (non-finite numbers, which
only a hand-edited file can hold, are written back as they were read: ``NaN``).
"""

from __future__ import annotations

import json
import math
from typing import Any

#: the widest line an object is folded onto
LINE = 100


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _number(value: float) -> str:
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return json.dumps(value, allow_nan=True)


def _atom(value: Any) -> str:
    if isinstance(value, float):
        return _number(value)
    return json.dumps(value, ensure_ascii=False)


def _inline(value: Any) -> str | None:
    """``value`` on one line, if it is a list of scalars or an object of scalars."""
    if isinstance(value, list) and all(_scalar(v) for v in value):
        return "[" + ", ".join(_atom(v) for v in value) + "]"
    if isinstance(value, dict) and all(_scalar(v) for v in value.values()):
        body = ", ".join(
            f"{json.dumps(str(k), ensure_ascii=False)}: {_atom(v)}"
            for k, v in sorted(value.items())
        )
        return "{" + body + "}"
    return None


def _dump(value: Any, indent: int, room: int) -> str:
    if _scalar(value):
        return _atom(value)
    line = _inline(value)
    if line is not None and (isinstance(value, list) or len(line) <= room or not value):
        return line
    pad = "  " * (indent + 1)
    end = "  " * indent
    if isinstance(value, list):
        items = [pad + _dump(v, indent + 1, LINE - len(pad)) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + end + "]"
    items = []
    for k in sorted(value, key=str):
        head = f"{pad}{json.dumps(str(k), ensure_ascii=False)}: "
        items.append(head + _dump(value[k], indent + 1, LINE - len(head)))
    return "{\n" + ",\n".join(items) + "\n" + end + "}"


def dumps(doc: Any) -> str:
    """The file text of ``doc``, with a trailing newline."""
    return _dump(doc, 0, LINE) + "\n"
