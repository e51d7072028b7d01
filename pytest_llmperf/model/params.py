"""Load parameters and workloads: frozen values, parsed from llama.cpp-style arguments.

Pure: no llama.cpp import. ``LoadParams`` is what changes how a model is loaded or run
(one loaded model per distinct value); ``Workload`` is what is timed.

**One spec per parameter.** Every LoadParams field is declared with :func:`knob`, which
carries everything the rest of the package needs to know about it: its value kind
(parser, validation, sweep values), its llama.cpp / llama-bench flags, its test-id
prefix and its llama-bench column. Argument parsing (:func:`parse_llama_args`),
``to_args``, ``short_id``, sweep axes (:mod:`pytest_llmperf.sweep.definition`) and the
llama-bench table of the reports all read :data:`KNOBS`. Adding a knob is one field here
plus the engine line that applies it.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pytest_llmperf.errors import UsageError

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

    def __init__(self, minimum: int, maximum: int | None = None) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.accepted = f"an integer >= {minimum}"

    def coerce(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < self.minimum:
            raise ValueError(f"must be {self.accepted}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(
                f"larger than any model supports (max {self.maximum}); use the context size "
                "the test needs"
            )
        return value

    def _check(self, value: int) -> int:
        if value < self.minimum:
            raise ValueError(f"{value} must be >= {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{value} is larger than any model supports (max {self.maximum})")
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
    for part in parts:
        pattern, sep, buft = part.rpartition("=")
        if not sep or not pattern or not buft:
            raise ValueError(f"{part!r} is not PATTERN=BUFFER_TYPE (e.g. 'exps=CPU')")
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
class Knob:
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
    """A LoadParams field with its :class:`Knob` spec in the field's metadata."""
    return field(
        default=default, metadata={"knob": Knob(kind, tuple(flags), default=default, **spec)}
    )


@dataclass(frozen=True)
class LoadParams:
    """Everything that changes how a model is loaded or run. Hashable.

    ``None`` means "llama.cpp's default", resolved and recorded at load time:
    ``n_threads`` the physical cores, ``n_threads_batch`` the n_threads, ``n_ubatch``
    min(512, n_batch). ``n_gpu_layers=-1`` means all layers.
    """

    n_ctx: int = knob(
        4096,
        Int(8, 1 << 24),
        "-c",
        "--ctx-size",
        prefix="c",
        help="context size (KV cells)",
    )
    n_threads: int | None = knob(
        None,
        Int(1),
        "-t",
        "--threads",
        prefix="t",
        bench="n_threads",
        bench_optional=False,
        help="decode threads",
    )
    n_threads_batch: int | None = knob(
        None, Int(1), "-tb", "--threads-batch", prefix="tb", help="prompt-processing threads"
    )
    n_batch: int = knob(
        2048,
        Int(1),
        "-b",
        "--batch-size",
        prefix="b",
        bench="n_batch",
        bench_optional=False,
        help="logical batch size",
    )
    n_ubatch: int | None = knob(
        None,
        Int(1),
        "-ub",
        "--ubatch-size",
        prefix="ub",
        bench="n_ubatch",
        legacy_defaults=(DEFAULT_UBATCH,),
        help="physical batch size (default min(512, n_batch))",
    )
    n_gpu_layers: int = knob(
        0,
        Layers(),
        "-ngl",
        "--n-gpu-layers",
        "--gpu-layers",
        prefix="ngl",
        bench="n_gpu_layers",
        bench_md="ngl",
        help="layers offloaded to the GPU (-1: all)",
    )
    cpu_moe: bool = knob(
        False,
        Switch(),
        set_true=("--cpu-moe", "-cmoe"),
        prefix="cpumoe",
        bench="cpu_moe",
        help="keep every MoE expert tensor on the CPU",
    )
    n_cpu_moe: int = knob(
        0,
        Int(0),
        "-ncmoe",
        "--n-cpu-moe",
        prefix="ncmoe",
        bench="n_cpu_moe",
        help="keep the experts of the first N layers on the CPU",
    )
    flash_attn: FlashAttn = knob(
        "auto",
        FLASH_ATTN,
        "-fa",
        "--flash-attn",
        prefix="fa",
        bench="flash_attn",
        bench_optional=False,
        bare="on",
        help="flash attention: on, off, auto",
    )
    type_k: str = knob(
        "f16", KV_TYPE, "-ctk", "--cache-type-k", prefix="ctk", bench="type_k", help="K cache type"
    )
    type_v: str = knob(
        "f16", KV_TYPE, "-ctv", "--cache-type-v", prefix="ctv", bench="type_v", help="V cache type"
    )
    use_mmap: bool = knob(
        True,
        Switch(),
        "-mmp",
        "--mmap",
        set_false=("--no-mmap",),
        prefix="mmap",
        bench="use_mmap",
        bench_md="mmap",
        help="map the model file",
    )
    use_mlock: bool = knob(
        False, Switch(), set_true=("--mlock",), prefix="mlock", help="lock the model in memory"
    )
    override_tensor: str = knob(
        "",
        OVERRIDES,
        "-ot",
        "--override-tensor",
        prefix="ot",
        bench="tensor_buft_overrides",
        help="tensors whose name matches PATTERN go to buffer type BUFT (CPU, CUDA0, ...)",
    )
    split_mode: str = knob(
        "layer",
        SPLIT_MODE,
        "-sm",
        "--split-mode",
        prefix="sm",
        bench="split_mode",
        bench_md="sm",
        help="how to split the model across GPUs",
    )
    main_gpu: int = knob(
        0,
        Int(0),
        "-mg",
        "--main-gpu",
        prefix="mg",
        bench="main_gpu",
        bench_md="mg",
        help="the GPU of split mode none",
    )
    tensor_split: str = knob(
        "",
        Text("proportions per GPU, e.g. 3/1", _check_split),
        "-ts",
        "--tensor-split",
        prefix="ts",
        bench="tensor_split",
        bench_md="ts",
        help="proportion of the model on each GPU",
    )
    no_kv_offload: bool = knob(
        False,
        Switch(),
        "-nkvo",
        "--no-kv-offload",
        prefix="nkvo",
        bench="no_kv_offload",
        bench_md="nkvo",
        bare=True,
        help="keep the KV cache on the CPU",
    )
    no_op_offload: bool = knob(
        False,
        Switch(),
        "-nopo",
        "--no-op-offload",
        prefix="nopo",
        bench="no_op_offload",
        bench_md="nopo",
        bare=True,
        help="do not offload host tensor operations to the GPU",
    )
    device: str = knob(
        "",
        Text("device names, e.g. CUDA0/CUDA1, or none", _check_devices),
        "-dev",
        "--device",
        prefix="dev",
        bench="devices",
        bench_md="dev",
        help="the devices to offload to",
    )
    embeddings: bool = knob(
        False,
        Switch(),
        "-embd",
        "--embeddings",
        prefix="embd",
        bench="embeddings",
        bench_md="embd",
        bare=True,
        help="compute embeddings (an embeddings context)",
    )
    repack: bool = knob(
        True,
        Switch(),
        "--repack",
        prefix="repack",
        bench="repack",
        bare=True,
        help="repack weights into the CPU's faster layouts (extra buffer types)",
    )
    no_host: bool = knob(
        False,
        Switch(),
        "--no-host",
        prefix="nohost",
        bench="no_host",
        bare=True,
        help="bypass the host buffer, so extra buffer types can be used",
    )
    numa: str = knob(
        "disabled", NUMA, "--numa", prefix="numa", help="NUMA placement of the threads"
    )
    cpu_mask: str = knob(
        "",
        Text("a hexadecimal CPU mask, e.g. 0x3", _check_mask),
        "-C",
        "--cpu-mask",
        prefix="C",
        bench="cpu_mask",
        help="the CPUs the compute threads may run on",
    )
    cpu_strict: bool = knob(
        False,
        Switch(),
        "--cpu-strict",
        prefix="strict",
        bench="cpu_strict",
        bare=True,
        help="one thread per CPU of the mask, in order",
    )
    poll: int = knob(
        50,
        Int(0, 100),
        "--poll",
        prefix="poll",
        bench="poll",
        help="how hard idle compute threads poll for work (0-100)",
    )
    prio: int = knob(
        0, Int(-1, 3), "--prio", prefix="prio", help="priority of the compute threads (-1..3)"
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            name, spec = f.name, f.metadata["knob"]
            value = getattr(self, name)
            if value is f.default or (type(value) is type(f.default) and value == f.default):
                continue  # the default is valid by definition (an empty text, None)
            try:
                canonical = spec.kind.coerce(value)
            except ValueError as exc:
                raise UsageError(f"{name}={value!r}: {exc}") from None
            if canonical != value or type(canonical) is not type(value):
                object.__setattr__(self, name, canonical)
        if self.n_ubatch is not None and self.n_ubatch > self.n_batch:
            raise UsageError(
                f"n_ubatch={self.n_ubatch} is larger than n_batch={self.n_batch}: "
                "n_ubatch must be <= n_batch (-ub <= -b); leave n_ubatch out to get "
                f"llama.cpp's default min({DEFAULT_UBATCH}, n_batch)"
            )
        if self.cpu_moe and self.n_cpu_moe:
            raise UsageError(
                "cpu_moe and n_cpu_moe are exclusive: cpu_moe already covers all layers"
            )

    # -- resolved values -------------------------------------------------------------
    @property
    def ubatch(self) -> int:
        """The micro-batch llama.cpp uses: n_ubatch, or min(512, n_batch)."""
        return self.n_ubatch if self.n_ubatch is not None else min(DEFAULT_UBATCH, self.n_batch)

    # -- conversions -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def non_default(self) -> dict[str, Any]:
        """The fields set away from their defaults, in field order."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != f.default
        }

    def identity(self) -> dict[str, Any]:
        """What these params do, as the non-default *effective* values: the params part
        of a baseline key. A field added in a later version, at its default, changes
        nothing; ``-b 2048 -ub 512`` and ``-b 2048`` (llama.cpp's default micro-batch)
        are the same."""
        out = self.non_default()
        out.pop("n_ubatch", None)
        if self.ubatch != min(DEFAULT_UBATCH, self.n_batch):
            out["n_ubatch"] = self.ubatch
        return dict(sorted(out.items()))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "params") -> LoadParams:
        unknown = sorted(set(data) - set(KNOBS))
        if unknown:
            raise UsageError(
                f"{source}: unknown load parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(KNOBS))}"
            )
        return cls(**dict(data))

    def replace(self, **changes: Any) -> LoadParams:
        return dataclasses.replace(self, **changes)

    def merged(self, args: str | Iterable[str] | None = None, **overrides: Any) -> LoadParams:
        """These params with llama.cpp-style ``args`` and then keyword ``overrides`` applied."""
        values = self.to_dict()
        if args:
            values.update(parse_llama_args(args))
        values.update(overrides)
        return LoadParams.from_dict(values)

    @classmethod
    def from_args(cls, args: str | Iterable[str]) -> LoadParams:
        """Parse llama.cpp / llama-bench style arguments: ``"-t 8 -b 256 -ngl 99 --cpu-moe"``."""
        return cls.from_dict(parse_llama_args(args), source="arguments")

    def short_id(self) -> str:
        """A compact id of the fields that differ from the defaults, for test ids.

        ``LoadParams(n_threads=2, n_batch=256, cpu_moe=True).short_id() == "t2-b256-cpumoe"``
        """
        parts = [
            value_id(name, value)
            for name, value in self.non_default().items()
            if _knob(self, name).shown(value)
        ]
        return "-".join(parts) if parts else "default"

    def to_args(self) -> str:
        """The llama.cpp command line that gives these params (non-default fields only)."""
        out: list[str] = []
        for name, value in self.non_default().items():
            spec = _knob(self, name)
            if spec.shown(value):
                out.extend(spec.canonical_args(value))
        return shlex.join(out)


def _knobs() -> dict[str, Knob]:
    out: dict[str, Knob] = {}
    for f in dataclasses.fields(LoadParams):
        spec = f.metadata["knob"]
        out[f.name] = dataclasses.replace(spec, name=f.name)
    return out


#: the spec of every load parameter, in field order
KNOBS: dict[str, Knob] = _knobs()
#: flag -> parameter name
FLAGS: dict[str, str] = {flag: name for name, k in KNOBS.items() for flag in k.all_flags}


def _knob(params: LoadParams, name: str) -> Knob:
    if name in KNOBS:
        return KNOBS[name]
    for f in dataclasses.fields(params):  # a subclass's own knob
        if f.name == name:
            spec: Knob = dataclasses.replace(f.metadata["knob"], name=name)
            return spec
    raise KeyError(name)


def value_id(name: str, value: Any) -> str:
    """The test-id fragment of one parameter value: ``t2``, ``cpumoe``, ``nglall``."""
    spec = KNOBS[name]
    return spec.kind.id_part(spec.prefix, value)


#: llama-bench's run flags (not load params): -r, --no-warmup, --delay
RUN_FLAGS: dict[str, str] = {
    "-r": "repetitions",
    "--repetitions": "repetitions",
    "--no-warmup": "warmup",
    "--delay": "delay",
}


def split_run_args(args: str | Iterable[str]) -> tuple[list[str], dict[str, Any]]:
    """llama-bench arguments split into load arguments and run options:
    ``-r N`` (repetitions), ``--no-warmup`` (warmup 0), ``--delay S`` (seconds between
    workloads, as llama-bench pauses between tests for thermals)."""
    tokens = shlex.split(args) if isinstance(args, str) else list(args)
    load: list[str] = []
    run: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        flag, eq, inline = tokens[i].partition("=")
        name = RUN_FLAGS.get(flag)
        if name is None:
            load.append(tokens[i])
            i += 1
            continue
        if name == "warmup":
            run["warmup"] = 0
            i += 1
            continue
        if eq:
            text, i = inline, i + 1
        elif i + 1 < len(tokens):
            text, i = tokens[i + 1], i + 2
        else:
            raise UsageError(f"argument {flag} needs a value")
        try:
            value = float(text) if name == "delay" else int(text)
        except ValueError:
            raise UsageError(f"argument {flag}: {text!r} is not a number") from None
        if value < (0 if name == "delay" else 1):
            raise UsageError(f"argument {flag}: {text} must be >= {0 if name == 'delay' else 1}")
        run[name] = value
    return load, run


def parse_llama_args(args: str | Iterable[str]) -> dict[str, Any]:
    """Parse llama.cpp-style load arguments into a dict of LoadParams fields.

    Unknown flags and bad values raise :class:`UsageError` naming the flag and the
    accepted values.
    """
    tokens = shlex.split(args) if isinstance(args, str) else list(args)
    out: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        flag, eq, inline = tok.partition("=")
        name = FLAGS.get(flag)
        if name is None:
            raise UsageError(
                f"unknown llama.cpp argument {tok!r}; accepted: {', '.join(sorted(FLAGS))}"
            )
        spec = KNOBS[name]
        if flag in spec.set_true or flag in spec.set_false:
            if eq:
                raise UsageError(f"argument {flag} takes no value (got {tok!r})")
            out[name] = flag in spec.set_true
            i += 1
            continue
        if eq:
            value = inline
            i += 1
        else:
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            if spec.bare is not None and (nxt is None or (nxt.startswith("-") and nxt != "-1")):
                out[name] = spec.bare
                i += 1
                continue
            if nxt is None:
                raise UsageError(f"argument {flag} needs a value ({spec.kind.accepted})")
            value = nxt
            i += 2
        try:
            out[name] = spec.kind.parse(value)
        except ValueError as exc:
            raise UsageError(f"argument {flag}: {exc}") from None
    return out


# -- workloads -------------------------------------------------------------------------

_WORKLOAD_RE = re.compile(
    r"""^\s*(?:
        pp(?P<pp>\d+)\s*(?:\+\s*tg(?P<pptg>\d+))? |
        tg(?P<tg>\d+) |
        pg(?P<pg_p>\d+)\s*,\s*(?P<pg_g>\d+)
    )\s*(?:@\s*d(?:epth)?\s*(?P<depth>\d+))?\s*$""",
    re.VERBOSE | re.IGNORECASE,
)


@dataclass(frozen=True)
class Workload:
    """What is timed, in llama-bench's terms.

    - ``pp N``: a prompt of N tokens (n_prompt=N, n_gen=0)
    - ``tg N``: exactly N generated tokens after a one-token (BOS) start (n_gen=N)
    - ``pg N,M``: a prompt of N tokens, then M generated tokens
    - ``@dD``: the KV cache is first filled to depth D (untimed)
    - ``load``: nothing but the model load is timed (cold load measurements)
    - ``stream:<name>``: a request streamed through llama-cpp-python's high-level API, as
      an application makes it (:class:`pytest_llmperf.model.streaming.StreamWorkload`)
    """

    n_prompt: int = 0
    n_gen: int = 0
    n_depth: int = 0
    seed: int = field(default=1234, compare=True)

    def __post_init__(self) -> None:
        for name in ("n_prompt", "n_gen", "n_depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise UsageError(f"workload {name}={value!r}: must be an integer >= 0")
        if self.n_prompt == 0 and self.n_gen == 0 and self.n_depth:
            raise UsageError("workload: a depth needs n_prompt > 0 (pp) or n_gen > 0 (tg)")

    @property
    def kind(self) -> str:
        """pp, tg, pg, or load (nothing timed but the model load itself)."""
        if not self.n_prompt and not self.n_gen:
            return "load"
        if self.n_prompt and self.n_gen:
            return "pg"
        return "pp" if self.n_prompt else "tg"

    @property
    def name(self) -> str:
        if self.kind == "load":
            return "load"
        if self.kind == "pg":
            base = f"pp{self.n_prompt}+tg{self.n_gen}"
        elif self.kind == "pp":
            base = f"pp{self.n_prompt}"
        else:
            base = f"tg{self.n_gen}"
        return f"{base}@d{self.n_depth}" if self.n_depth else base

    @property
    def n_tokens(self) -> int:
        """KV cells the workload needs: depth + prompt + generated (+1 start token for tg)."""
        start = 0 if self.n_prompt else 1
        return self.n_depth + self.n_prompt + self.n_gen + start

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_prompt": self.n_prompt,
            "n_gen": self.n_gen,
            "n_depth": self.n_depth,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Workload:
        if "stream" in data:  # a streamed request (its own fields)
            from pytest_llmperf.model.streaming import StreamWorkload

            return StreamWorkload.from_dict(data)
        return cls(
            n_prompt=int(data.get("n_prompt", 0)),
            n_gen=int(data.get("n_gen", 0)),
            n_depth=int(data.get("n_depth", 0)),
            seed=int(data.get("seed", 1234)),
        )

    @classmethod
    def parse(cls, text: str | Workload) -> Workload:
        """``"pp512"``, ``"tg128"``, ``"pg512,128"`` (= ``"pp512+tg128"``), ``"tg128@d4096"``."""
        if isinstance(text, Workload):
            return text
        if str(text).strip().lower() == "load":
            return LOAD
        if re.match(r"\s*stream\s*:", str(text), re.IGNORECASE):
            from pytest_llmperf.model.streaming import StreamWorkload

            return StreamWorkload.parse(str(text))
        m = _WORKLOAD_RE.match(str(text))
        if not m:
            raise UsageError(
                f"workload {text!r} not understood; write pp<N>, tg<N>, pg<N>,<M> or "
                "pp<N>+tg<M>, optionally followed by @d<depth> (e.g. 'tg128@d4096'), or "
                "stream:<prompt> for a streamed request (e.g. 'stream:short')"
            )
        depth = int(m.group("depth") or 0)
        if m.group("pp") is not None:
            wl = cls(int(m.group("pp")), int(m.group("pptg") or 0), depth)
        elif m.group("tg") is not None:
            wl = cls(0, int(m.group("tg")), depth)
        else:
            wl = cls(int(m.group("pg_p")), int(m.group("pg_g")), depth)
        if wl.kind == "load":
            raise UsageError(
                f"workload {text!r} measures nothing (no prompt and no generated tokens); "
                "write pp<N> or tg<N> with N >= 1, or use 'load' (llm_perf.measure_load()) "
                "to time model loads"
            )
        return wl


def pp(n: int, depth: int = 0) -> Workload:
    return Workload(n_prompt=n, n_depth=depth)


def tg(n: int, depth: int = 0) -> Workload:
    return Workload(n_gen=n, n_depth=depth)


def pg(n_prompt: int, n_gen: int, depth: int = 0) -> Workload:
    return Workload(n_prompt=n_prompt, n_gen=n_gen, n_depth=depth)


#: the pseudo-workload of cold-load measurements
LOAD = Workload()
