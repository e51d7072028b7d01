"""The value kinds of load parameters and the spec of one parameter (:class:`KnobSpec`).

Pure. A load parameter is declared once, as a field of
:class:`~pytest_llmperf.model.params.LoadParams` made with :func:`knob`: its value kind
(how it is written, checked, swept and shown), its llama.cpp / llama-bench flags, its
test-id prefix and its llama-bench column. Everything else reads that spec.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

KV_CACHE_TYPES: tuple[str, ...] = (
    "f16",
    "bf16",
    "f32",
    "q8_0",
    "q4_0",
    "q4_1",
    "q5_0",
    "q5_1",
    "iq4_nl",
)
FLASH_ATTN_VALUES: tuple[str, ...] = ("auto", "on", "off")
FlashAttn = Literal["auto", "on", "off"]
#: llama.cpp's micro-batch when none is given: min(512, n_batch)
DEFAULT_UBATCH = 512

# -- value kinds ---------------------------------------------------------------------------

_RANGE_PART = re.compile(r"^(-?\d+)(?:-(\d+)(?:([*+])(\d+))?)?$")
RANGE_HELP = (
    "write an integer, a llama-bench range ('1-16*2' multiplies, '0-99+10' adds, "
    "'8-16' steps by 1) or a comma list ('1,2,4')"
)
_MAX_RANGE_VALUES = 100_000


def int_range(text: str) -> list[int]:
    """Values of a llama-bench integer range; ValueError carries the problem.

    ``"1-16*2"`` -> 1, 2, 4, 8, 16; ``"0-99+10"`` -> 0, 10, ..., 90; ``"8-16"`` -> 8..16;
    ``"1,2,4"`` and mixtures (``"1-4,8,16-64*2"``).
    """
    out: list[int] = []
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise ValueError(f"{text!r} is not an integer or a range; {RANGE_HELP}")
    for part in parts:
        m = _RANGE_PART.match(part.replace(" ", ""))
        if not m:
            raise ValueError(f"{part!r} is not an integer or a range; {RANGE_HELP}")
        first = int(m.group(1))
        if m.group(2) is None:
            out.append(first)
            continue
        last = int(m.group(2))
        op, step = m.group(3) or "+", int(m.group(4) or 1)
        if last < first:
            raise ValueError(f"range {part!r}: the end {last} is below the start {first}")
        if op == "+" and step < 1:
            raise ValueError(f"range {part!r}: the step must be >= 1")
        if op == "*" and (step < 2 or first < 1):
            raise ValueError(f"range {part!r}: multiply needs a start >= 1 and a factor >= 2")
        value = first
        while value <= last:
            out.append(value)
            if len(out) > _MAX_RANGE_VALUES:
                raise ValueError(f"range {part!r} has more than {_MAX_RANGE_VALUES} values")
            value = value * step if op == "*" else value + step
    return out


class Kind:
    """How one parameter's values are written, checked and shown."""

    #: ordered values sort an axis of a sweep (integers); others keep the given order
    ordered: ClassVar[bool] = False
    accepted: str = "a value"

    def coerce(self, value: Any) -> Any:
        """A Python value (marker keyword, YAML) -> the canonical value; ValueError says
        why not (the caller names the parameter and the value)."""
        raise NotImplementedError

    def parse(self, text: str) -> Any:
        """A command-line string -> the canonical value; ValueError says why not, quoting
        the text."""
        raise NotImplementedError

    def sweep_values(self, raw: Any) -> list[Any]:
        """One item of a sweep axis -> its values (an integer range gives several)."""
        return [self.parse(raw) if isinstance(raw, str) else self.coerce(raw)]

    def text(self, value: Any) -> str:
        """The value as a command-line argument."""
        return str(value)

    def id_part(self, prefix: str, value: Any) -> str:
        return f"{prefix}{value}"

    def sort_key(self, value: Any) -> float:
        return 0.0


class Int(Kind):
    ordered = True

    def __init__(self, minimum: int, maximum: int | None = None, too_large: str = "") -> None:
        """``too_large``: why a value above ``maximum`` is refused (default: the bound)."""
        self.minimum = minimum
        self.maximum = maximum
        self.accepted = f"an integer >= {minimum}" + (
            f" and <= {maximum}" if maximum is not None else ""
        )
        self.too_large = too_large or f"must be <= {maximum}"

    def coerce(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < self.minimum:
            raise ValueError(f"must be {self.accepted}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(self.too_large)
        return value

    def _check(self, value: int) -> int:
        if value < self.minimum:
            raise ValueError(f"{value} must be >= {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{value}: {self.too_large}")
        return value

    def parse(self, text: str) -> int:
        try:
            number = int(str(text).strip())
        except ValueError:
            raise ValueError(f"{text!r} is not an integer; write {self.accepted}") from None
        return self._check(number)

    def sweep_values(self, raw: Any) -> list[Any]:
        if isinstance(raw, str):
            return [self._check(v) for v in int_range(raw)]
        return [self.coerce(raw)]

    def sort_key(self, value: Any) -> float:
        return float(value)


class Layers(Int):
    """n_gpu_layers: an integer >= 0, or -1 / "all" for every layer."""

    accepted = "an integer >= 0, -1 or 'all'"

    def __init__(self) -> None:
        super().__init__(-1)
        self.accepted = "an integer >= 0, -1 or 'all'"

    def parse(self, text: str) -> int:
        if str(text).strip().lower() in ("all", "auto", "-1"):
            return -1
        return super().parse(text)

    def sweep_values(self, raw: Any) -> list[Any]:
        if isinstance(raw, str) and raw.strip().lower() in ("all", "auto"):
            return [-1]
        return super().sweep_values(raw)

    def id_part(self, prefix: str, value: Any) -> str:
        return f"{prefix}all" if value == -1 else f"{prefix}{value}"

    def sort_key(self, value: Any) -> float:
        return float("inf") if value == -1 else float(value)


_TRUE = frozenset({"1", "true", "on", "yes"})
_FALSE = frozenset({"0", "false", "off", "no"})


class Switch(Kind):
    accepted = "true or false (1 or 0)"

    def coerce(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(f"must be {self.accepted}")

    def parse(self, text: str) -> bool:
        low = str(text).strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"{text!r}; accepted: 0 or 1 (true or false)")

    def text(self, value: Any) -> str:
        return "1" if value else "0"

    def id_part(self, prefix: str, value: Any) -> str:
        return prefix if value else f"no{prefix}"


class Choice(Kind):
    def __init__(
        self,
        what: str,
        values: tuple[str, ...],
        aliases: Mapping[str, str] | None = None,
        accepted: str = "",
    ) -> None:
        self.what = what
        self.values = values
        self.aliases = {**{v: v for v in values}, **(aliases or {})}
        self.accepted = accepted or ", ".join(values)

    def coerce(self, value: Any) -> str:
        if isinstance(value, bool) and "on" in self.values:
            return "on" if value else "off"
        text = str(value).strip().lower()
        if text not in self.aliases:
            raise ValueError(f"unknown {self.what}; accepted: {self.accepted}")
        return self.aliases[text]

    def parse(self, text: str) -> str:
        try:
            return self.coerce(text)
        except ValueError:
            raise ValueError(f"unknown {self.what} {text!r}; accepted: {self.accepted}") from None


FLASH_ATTN = Choice(
    "flash attention mode",
    FLASH_ATTN_VALUES,
    {
        "-1": "auto",
        "1": "on",
        "true": "on",
        "enabled": "on",
        "0": "off",
        "false": "off",
        "disabled": "off",
    },
    accepted="on, off, auto (or 1, 0, -1)",
)
KV_TYPE = Choice("KV cache type", KV_CACHE_TYPES)
SPLIT_MODE = Choice("split mode", ("none", "layer", "row", "tensor"))
NUMA = Choice("NUMA mode", ("disabled", "distribute", "isolate", "numactl", "mirror"))


class Text(Kind):
    """A value written as text, checked by ``check`` (which returns it canonical or raises
    ValueError); ids show it sanitized and, when long, shortened with a hash."""

    def __init__(self, accepted: str, check: Any) -> None:
        self.accepted = accepted
        self._check = check

    def coerce(self, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"must be text: {self.accepted}")
        return str(self._check(value))

    def parse(self, text: str) -> str:
        try:
            return self.coerce(text)
        except ValueError as exc:
            raise ValueError(f"{text!r}: {exc}") from None

    def id_part(self, prefix: str, value: Any) -> str:
        safe = re.sub(r"[^A-Za-z0-9]+", "_", str(value)).strip("_")
        if len(safe) > 24:
            import hashlib

            safe = safe[:16] + "_" + hashlib.sha256(str(value).encode()).hexdigest()[:6]
        return f"{prefix}{safe}"


def _check_overrides(text: str) -> str:
    """``PATTERN=BUFT[;PATTERN=BUFT...]`` (llama.cpp's -ot), each pattern a regex."""
    parts = [p.strip() for p in re.split(r"[;,]", text) if p.strip()]
    if not parts:
        raise ValueError("write PATTERN=BUFFER_TYPE, e.g. 'exps=CPU' (several: ';' between)")
    seen: dict[str, str] = {}
    for part in parts:
        pattern, sep, buft = part.rpartition("=")
        if not sep or not pattern or not buft:
            raise ValueError(f"{part!r} is not PATTERN=BUFFER_TYPE (e.g. 'exps=CPU')")
        if pattern in seen:
            raise ValueError(
                f"pattern {pattern!r} is given twice ({seen[pattern]!r} and {part!r}): "
                "llama.cpp would use the first silently; keep one"
            )
        seen[pattern] = part
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{pattern!r} is not a regular expression ({exc})") from None
    return ";".join(parts)


def _check_split(text: str) -> str:
    """``3/1`` or ``3,1``: proportions per GPU."""
    parts = [p for p in re.split(r"[/,]", text.strip()) if p != ""]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError("write proportions per GPU, e.g. '3/1'") from None
    if not values or any(v < 0 or v != v for v in values):
        raise ValueError("write non-negative proportions per GPU, e.g. '3/1'")
    return "/".join(f"{v:g}" for v in values)


def _check_devices(text: str) -> str:
    """``CUDA0/CUDA1``, or ``none`` (no offload device)."""
    parts = [p.strip() for p in re.split(r"[/,]", text) if p.strip()]
    if not parts:
        raise ValueError("write device names, e.g. 'CUDA0/CUDA1', or 'none'")
    twice = sorted({d for d in parts if parts.count(d) > 1})
    if twice:
        raise ValueError(f"device {twice[0]!r} is given twice; name each device once")
    return "/".join(parts)


def _check_mask(text: str) -> str:
    """A hexadecimal CPU mask, ``0x3`` or ``3``."""
    body = text.strip().lower().removeprefix("0x")
    if not body or re.fullmatch(r"[0-9a-f]+", body) is None:
        raise ValueError("write a hexadecimal CPU mask, e.g. 0x3")
    return "0x" + body


OVERRIDES = Text("PATTERN=BUFFER_TYPE[;...], e.g. exps=CPU", _check_overrides)


# -- the spec of each parameter ------------------------------------------------------------


@dataclass(frozen=True)
class KnobSpec:
    """Everything about one load parameter but its name, type and default (the field's)."""

    kind: Kind
    #: flags that take a value, canonical first (``-t``, ``--threads``)
    flags: tuple[str, ...] = ()
    #: flags without a value that set True / False (``--cpu-moe``, ``--no-mmap``)
    set_true: tuple[str, ...] = ()
    set_false: tuple[str, ...] = ()
    #: test-id prefix: ``t2``, ``b256``, ``cpumoe``
    prefix: str = ""
    #: llama-bench's JSON field; "" when llama-bench has none
    bench: str = ""
    #: llama-bench's markdown column, when it differs from the JSON field (``ngl``)
    bench_md: str = ""
    #: llama-bench shows the column only when a test sets it away from the default
    bench_optional: bool = True
    #: a bare value flag that means this (``-fa`` alone is ``-fa on`` in older llama.cpp)
    bare: Any = None
    #: values an older version used as the default: left out of test ids like the
    #: default, so upgrading never renames a test (and orphans its baseline)
    legacy_defaults: tuple[Any, ...] = ()
    help: str = ""
    name: str = ""

    default: Any = None

    def shown(self, value: Any) -> bool:
        """Whether ``value`` appears in test ids and optional report columns: it differs
        from the default (and from any older default)."""
        return value != self.default and value not in self.legacy_defaults

    @property
    def all_flags(self) -> tuple[str, ...]:
        return self.flags + self.set_true + self.set_false

    def canonical_args(self, value: Any) -> list[str]:
        """The shortest command line that sets this value."""
        if value is True and self.set_true:
            return [self.set_true[0]]
        if value is False and self.set_false:
            return [self.set_false[0]]
        return [self.flags[0], self.kind.text(value)]


def knob(default: Any, kind: Kind, *flags: str, **spec: Any) -> Any:
    """A LoadParams field with its :class:`KnobSpec` in the field's metadata."""
    return field(
        default=default, metadata={"knob": KnobSpec(kind, tuple(flags), default=default, **spec)}
    )
