"""Sweep axes: an :class:`Axis` of :class:`Variant` s, from YAML or Python.

An axis named after a load parameter takes plain values, read by that parameter's own
spec (:data:`pytest_llmperf.model.params.KNOBS`: value kind, llama-bench ranges, id
prefix); ``build`` and ``launcher`` axes name registry entries; any other axis takes named
variants ``{name, args}``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_llmperf.errors import UsageError
from pytest_llmperf.model.knobs import int_range
from pytest_llmperf.model.params import KNOBS, parse_llama_args, value_id
from pytest_llmperf.sweep.context import (
    SAFE_NAME,
    SAFE_NAME_HELP,
    Where,
    check_keys,
)
from pytest_llmperf.sweep.points import CONFIG_AXES

_AXIS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def parse_int_range(text: str) -> list[int]:
    """Integers of a llama-bench style range (:func:`pytest_llmperf.model.knobs.int_range`).

    ``"1-16*2"`` -> 1, 2, 4, 8, 16; ``"0-99+10"`` -> 0, 10, ..., 90; ``"8-16"`` -> 8..16;
    ``"1,2,4"`` and mixtures (``"1-4,8,16-64*2"``).
    """
    try:
        return int_range(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


# -- axes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One value of an axis: a name (a fragment of point ids) and what it changes.

    Named variants carry llama.cpp ``args``; plain values of a load-parameter axis carry
    ``value``. ``overrides`` are the LoadParams fields set, in order (computed from
    ``args`` when not given).
    """

    name: str
    args: str = ""
    overrides: tuple[tuple[str, Any], ...] = ()
    value: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not SAFE_NAME.match(self.name):
            raise UsageError(f"variant name {self.name!r}: {SAFE_NAME_HELP}")
        if self.args and not self.overrides:
            object.__setattr__(self, "overrides", tuple(parse_llama_args(self.args).items()))


@dataclass(frozen=True)
class Axis:
    """One dimension of a sweep: its variants in order, the load-parameter field it sets
    (``None`` for named-variant axes) and the index of its declared default."""

    name: str
    variants: tuple[Variant, ...]
    field: str | None = None
    default: int | None = None

    def __len__(self) -> int:
        return len(self.variants)

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.variants]

    @classmethod
    def parse(cls, name: str, raw: Any, *, source: str = "<python>") -> Axis:
        """An axis from its YAML/Python form (see docs/SWEEPS.md)."""
        return parse_axis(name, raw, Where(source, name))


def _plain_values(name: str, raw: Any, where: Where) -> list[Any]:
    """The values of one item of a load-parameter axis (a range string may give several),
    read by the parameter's kind."""
    if isinstance(raw, Mapping | Variant):
        raise where.error(
            f"{name} is a load parameter: list plain values (e.g. [1, 2, 4] or "
            f"'1-16*2'); for named variants with args use another axis name"
        )
    try:
        return KNOBS[name].kind.sweep_values(raw)
    except (ValueError, TypeError) as exc:
        # a string's problem quotes the string; another value's does not name it
        raise where.error(str(exc) if isinstance(raw, str) else f"{raw!r}: {exc}") from None


def _parse_variant(raw: Any, where: Where, axis_name: str) -> Variant:
    if isinstance(raw, Variant):
        return raw
    if not isinstance(raw, Mapping):
        raise where.error(
            f"{raw!r} is a plain value, but {axis_name!r} is not a load parameter; write "
            f"named variants ({{name: ..., args: '-ctk q8_0'}}) or use a load-parameter axis "
            f"({', '.join(sorted(KNOBS))})"
        )
    check_keys(raw, ("name", "args"), where, "a variant")
    name = raw.get("name")
    if not isinstance(name, str | int) or isinstance(name, bool) or not str(name):
        raise where.key("name").error("each variant needs a name (a string used in test ids)")
    name = str(name)
    if not SAFE_NAME.match(name):
        raise where.key("name").error(f"{name!r}: {SAFE_NAME_HELP}")
    args_raw = raw.get("args", "")
    if args_raw is None:
        args_raw = ""
    if isinstance(args_raw, list) and all(isinstance(a, str) for a in args_raw):
        args = " ".join(args_raw)
    elif isinstance(args_raw, str):
        args = args_raw
    else:
        raise where.key("args").error(
            f"{args_raw!r}: write llama.cpp arguments as a string, e.g. '-ctk q8_0 -ctv f16'"
        )
    try:
        overrides = tuple(parse_llama_args(args).items()) if args.strip() else ()
    except UsageError as exc:
        raise where.key("args").error(str(exc)) from None
    return Variant(name=name, args=args.strip(), overrides=overrides)


def _plain_axis(
    name: str, items: Sequence[tuple[Any, Where]], default: tuple[Any, Where] | None
) -> Axis:
    """A load-parameter axis: its values sorted when the kind is ordered (integers), and
    the default's index (the nearest value for an ordered kind)."""
    kind = KNOBS[name].kind
    values: list[Any] = []
    for item, where in items:
        for value in _plain_values(name, item, where):
            if value in values:
                raise where.error(f"value {value!r} appears twice in {name}; remove one")
            values.append(value)
    if kind.ordered:
        values.sort(key=kind.sort_key)
    variants = tuple(Variant(value_id(name, v), overrides=((name, v),), value=v) for v in values)
    index: int | None = None
    if default is not None:
        raw, dwhere = default
        dvals = _plain_values(name, raw, dwhere)
        if len(dvals) != 1:
            raise dwhere.error("the default is one value, not a range")
        dval = dvals[0]
        if dval in values:
            index = values.index(dval)
        elif kind.ordered:
            # nearest value on the axis (the first of two equally near)
            index = min(
                range(len(values)),
                key=lambda i: abs(kind.sort_key(values[i]) - kind.sort_key(dval)),
            )
        else:
            raise dwhere.error(f"{dval!r} is not one of the values of {name}: {values}")
    return Axis(name=name, variants=variants, field=name, default=index)


def _worker_axis(
    name: str, items: Sequence[tuple[Any, Where]], default: tuple[Any, Where] | None
) -> Axis:
    """A ``build`` or ``launcher`` axis: names of registry entries (``default`` is the
    installed build); ids get ``b<name>`` / ``l<name>`` like configs()."""
    values: list[str] = []
    for item, where in items:
        if not isinstance(item, str) or not SAFE_NAME.match(item):
            raise where.error(f"{item!r}: write the name of a registry {name} ({SAFE_NAME_HELP})")
        if item in values:
            raise where.error(f"{name} {item!r} appears twice; remove one")
        values.append(item)
    prefix = CONFIG_AXES[name]
    variants = tuple(Variant(f"{prefix}{v}", overrides=((name, v),), value=v) for v in values)
    index = None
    if default is not None:
        raw, dwhere = default
        if raw not in values:
            raise dwhere.error(f"{raw!r} is not one of the {name}s of this axis: {values}")
        index = values.index(raw)
    return Axis(name=name, variants=variants, field=name, default=index)


def _named_axis(
    name: str, items: Sequence[tuple[Any, Where]], default: tuple[Any, Where] | None
) -> Axis:
    named: list[Variant] = []
    for item, where in items:
        variant = _parse_variant(item, where, name)
        if variant.name in [v.name for v in named]:
            raise where.key("name").error(
                f"variant name {variant.name!r} appears twice in {name}; names must be unique"
            )
        named.append(variant)
    index: int | None = None
    if default is not None:
        raw, dwhere = default
        names = [v.name for v in named]
        if str(raw) not in names:
            raise dwhere.error(
                f"{raw!r} is not a variant of {name}; write one of {', '.join(names)}"
            )
        index = names.index(str(raw))
    return Axis(name=name, variants=tuple(named), field=None, default=index)


def parse_axis(name: str, raw: Any, where: Where) -> Axis:
    """An axis from a list, one value or range, or ``{values: ..., default: ...}``."""
    if isinstance(raw, Axis):
        return raw
    if not isinstance(name, str) or not _AXIS_NAME.match(name):
        raise where.error(f"axis name {name!r}: use letters, digits and _ . - only")
    default: tuple[Any, Where] | None = None
    values_at = where
    if isinstance(raw, Mapping) and not ({"name", "args"} & set(raw)):
        check_keys(raw, ("values", "default"), where, "an axis")
        if "values" not in raw:
            raise where.error(
                "an axis written as a mapping needs 'values' (and may have 'default')"
            )
        if "default" in raw:
            default = (raw["default"], where.key("default"))
        values_at = where.key("values")
        raw = raw["values"]
    items: list[tuple[Any, Where]]
    if isinstance(raw, list | tuple):
        items = [(item, values_at.key(i)) for i, item in enumerate(raw)]
    else:
        items = [(raw, values_at)]
    if not items:
        raise values_at.error("an axis needs at least one value")
    if name in KNOBS:
        return _plain_axis(name, items, default)
    if name in CONFIG_AXES:
        return _worker_axis(name, items, default)
    if all(not isinstance(item, Mapping | Variant) for item, _ in items):
        close = difflib.get_close_matches(name, list(KNOBS), n=1)
        hint = f" (did you mean the load parameter {close[0]!r}?)" if close else ""
        raise values_at.error(
            f"{name!r} is not a load parameter{hint}, so it takes named variants: "
            "[{name: ..., args: '...'}]; plain values need a load-parameter axis "
            f"({', '.join(sorted(KNOBS))})"
        )
    return _named_axis(name, items, default)


def parse_axes(raw: Any, where: Where) -> tuple[Axis, ...]:
    if raw is None:
        return ()
    if (
        isinstance(raw, Sequence)
        and not isinstance(raw, str)
        and all(isinstance(a, Axis) for a in raw)
    ):
        return tuple(raw)
    if not isinstance(raw, Mapping):
        raise where.error(
            "write the axes as a mapping: {n_threads: [1, 2, 4], kv_cache: [{name: ..., "
            "args: ...}]}"
        )
    return tuple(parse_axis(str(name), value, where.key(str(name))) for name, value in raw.items())
