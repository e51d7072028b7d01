"""Load parameters and workloads: frozen values, parsed from llama.cpp-style arguments.

Pure: no llama.cpp import. ``LoadParams`` is what changes how a model is loaded or run
(one loaded model per distinct value); ``Workload`` is what is timed.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

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


@dataclass(frozen=True)
class LoadParams:
    """Everything that changes how a model is loaded or run. Hashable.

    ``n_threads``/``n_threads_batch`` of ``None`` mean "llama.cpp's default" (resolved and
    recorded at load time). ``n_gpu_layers=-1`` means all layers.
    """

    n_ctx: int = 4096
    n_threads: int | None = None
    n_threads_batch: int | None = None
    n_batch: int = 2048
    n_ubatch: int = 512
    n_gpu_layers: int = 0
    cpu_moe: bool = False
    n_cpu_moe: int = 0
    flash_attn: FlashAttn = "auto"
    type_k: str = "f16"
    type_v: str = "f16"
    use_mmap: bool = True
    use_mlock: bool = False

    def __post_init__(self) -> None:
        self.validate()

    # -- validation ------------------------------------------------------------------
    def validate(self) -> None:
        def positive(name: str, value: int | None, minimum: int = 1) -> None:
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < minimum
            ):
                raise UsageError(f"{name}={value!r}: must be an integer >= {minimum}")

        positive("n_ctx", self.n_ctx, 8)
        if self.n_ctx > 1 << 24:
            raise UsageError(
                f"n_ctx={self.n_ctx}: larger than any model supports (max {1 << 24}); "
                "use the context size the test needs"
            )
        positive("n_threads", self.n_threads)
        positive("n_threads_batch", self.n_threads_batch)
        positive("n_batch", self.n_batch)
        positive("n_ubatch", self.n_ubatch)
        positive("n_cpu_moe", self.n_cpu_moe, 0)
        if self.n_ubatch > self.n_batch:
            raise UsageError(
                f"n_ubatch={self.n_ubatch} is larger than n_batch={self.n_batch}: "
                "n_ubatch must be <= n_batch (-ub <= -b)"
            )
        if not isinstance(self.n_gpu_layers, int) or self.n_gpu_layers < -1:
            raise UsageError(f"n_gpu_layers={self.n_gpu_layers!r}: must be -1 (all layers) or >= 0")
        if self.flash_attn not in FLASH_ATTN_VALUES:
            raise UsageError(
                f"flash_attn={self.flash_attn!r}: accepted: {', '.join(FLASH_ATTN_VALUES)}"
            )
        for name in ("type_k", "type_v"):
            value = getattr(self, name)
            if value not in KV_CACHE_TYPES:
                raise UsageError(
                    f"{name}={value!r}: unknown KV cache type; "
                    f"accepted: {', '.join(KV_CACHE_TYPES)}"
                )
        if self.cpu_moe and self.n_cpu_moe:
            raise UsageError(
                "cpu_moe and n_cpu_moe are exclusive: cpu_moe already covers all layers"
            )

    # -- conversions -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "params") -> LoadParams:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(
                f"{source}: unknown load parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        values = dict(data)
        if "flash_attn" in values:
            values["flash_attn"] = _flash_attn_value(values["flash_attn"], f"{source}: flash_attn")
        return cls(**values)

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
        default = LoadParams()
        parts: list[str] = []
        for name, prefix in ID_PREFIXES:
            value = getattr(self, name)
            if value == getattr(default, name):
                continue
            if isinstance(value, bool):
                parts.append(prefix if value else f"no{prefix}")
            elif name == "n_gpu_layers" and value == -1:
                parts.append("nglall")
            else:
                parts.append(f"{prefix}{value}")
        return "-".join(parts) if parts else "default"

    def to_args(self) -> str:
        """The llama.cpp command line that gives these params (non-default fields only)."""
        default = LoadParams()
        out: list[str] = []
        for name, flag in _CANONICAL_FLAGS.items():
            value = getattr(self, name)
            if value == getattr(default, name):
                continue
            if name == "cpu_moe":
                out.append("--cpu-moe")
            elif name == "use_mmap":
                out.append("--no-mmap")
            elif name == "use_mlock":
                out.append("--mlock")
            else:
                out.extend([flag, str(value)])
        return " ".join(out)


ID_PREFIXES: tuple[tuple[str, str], ...] = (
    ("n_ctx", "c"),
    ("n_threads", "t"),
    ("n_threads_batch", "tb"),
    ("n_batch", "b"),
    ("n_ubatch", "ub"),
    ("n_gpu_layers", "ngl"),
    ("cpu_moe", "cpumoe"),
    ("n_cpu_moe", "ncmoe"),
    ("flash_attn", "fa"),
    ("type_k", "ctk"),
    ("type_v", "ctv"),
    ("use_mmap", "mmap"),
    ("use_mlock", "mlock"),
)

_CANONICAL_FLAGS: dict[str, str] = {
    "n_ctx": "-c",
    "n_threads": "-t",
    "n_threads_batch": "-tb",
    "n_batch": "-b",
    "n_ubatch": "-ub",
    "n_gpu_layers": "-ngl",
    "cpu_moe": "--cpu-moe",
    "n_cpu_moe": "-ncmoe",
    "flash_attn": "-fa",
    "type_k": "-ctk",
    "type_v": "-ctv",
    "use_mmap": "--no-mmap",
    "use_mlock": "--mlock",
}


@dataclass(frozen=True)
class _Flag:
    field: str
    kind: Literal["int", "ngl", "fa", "kv", "true", "false", "bool01"]


_FLAGS: dict[str, _Flag] = {}


def _register(
    kind: Literal["int", "ngl", "fa", "kv", "true", "false", "bool01"], name: str, *flags: str
) -> None:
    for flag in flags:
        _FLAGS[flag] = _Flag(name, kind)


_register("int", "n_ctx", "-c", "--ctx-size")
_register("int", "n_threads", "-t", "--threads")
_register("int", "n_threads_batch", "-tb", "--threads-batch")
_register("int", "n_batch", "-b", "--batch-size")
_register("int", "n_ubatch", "-ub", "--ubatch-size")
_register("ngl", "n_gpu_layers", "-ngl", "--n-gpu-layers", "--gpu-layers")
_register("true", "cpu_moe", "-cmoe", "--cpu-moe")
_register("int", "n_cpu_moe", "-ncmoe", "--n-cpu-moe")
_register("fa", "flash_attn", "-fa", "--flash-attn")
_register("kv", "type_k", "-ctk", "--cache-type-k")
_register("kv", "type_v", "-ctv", "--cache-type-v")
_register("false", "use_mmap", "--no-mmap")
_register("bool01", "use_mmap", "-mmp", "--mmap")
_register("true", "use_mlock", "--mlock")

_INT_FLAGS_ALLOW_ZERO = {"n_cpu_moe"}


def _flash_attn_value(value: object, where: str) -> FlashAttn:
    text = str(value).strip().lower()
    mapping: dict[str, FlashAttn] = {
        "auto": "auto",
        "-1": "auto",
        "on": "on",
        "1": "on",
        "true": "on",
        "enabled": "on",
        "off": "off",
        "0": "off",
        "false": "off",
        "disabled": "off",
    }
    if text not in mapping:
        raise UsageError(f"{where}: bad value {value!r}; accepted: on, off, auto (or 1, 0, -1)")
    return mapping[text]


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
        spec = _FLAGS.get(flag)
        if spec is None:
            raise UsageError(
                f"unknown llama.cpp argument {tok!r}; accepted: {', '.join(sorted(_FLAGS))}"
            )
        if spec.kind in ("true", "false"):
            if eq:
                raise UsageError(f"argument {flag} takes no value (got {tok!r})")
            out[spec.field] = spec.kind == "true"
            i += 1
            continue
        if eq:
            value = inline
            i += 1
        else:
            # -fa may stand alone (older llama.cpp: a bare switch meaning "on").
            if spec.kind == "fa" and (
                i + 1 >= len(tokens)
                or (tokens[i + 1].startswith("-") and tokens[i + 1] not in ("-1",))
            ):
                out[spec.field] = "on"
                i += 1
                continue
            if i + 1 >= len(tokens):
                raise UsageError(f"argument {flag} needs a value")
            value = tokens[i + 1]
            i += 2
        out[spec.field] = _convert(flag, spec, value)
    return out


def _convert(flag: str, spec: _Flag, value: str) -> Any:
    if spec.kind == "int":
        minimum = 0 if spec.field in _INT_FLAGS_ALLOW_ZERO else 1
        try:
            number = int(value)
        except ValueError:
            raise UsageError(f"argument {flag}: {value!r} is not an integer") from None
        if number < minimum:
            raise UsageError(f"argument {flag}: {number} must be >= {minimum}")
        return number
    if spec.kind == "ngl":
        if value.strip().lower() in ("all", "auto", "-1"):
            return -1
        try:
            number = int(value)
        except ValueError:
            raise UsageError(
                f"argument {flag}: {value!r} is not a layer count; accepted: an integer >= 0, "
                "-1 or 'all'"
            ) from None
        if number < 0:
            raise UsageError(f"argument {flag}: {number} must be >= 0 (or -1 / 'all')")
        return number
    if spec.kind == "fa":
        return _flash_attn_value(value, f"argument {flag}")
    if spec.kind == "kv":
        text = value.strip().lower()
        if text not in KV_CACHE_TYPES:
            raise UsageError(
                f"argument {flag}: unknown KV cache type {value!r}; accepted: "
                f"{', '.join(KV_CACHE_TYPES)}"
            )
        return text
    if spec.kind == "bool01":
        if value not in ("0", "1"):
            raise UsageError(f"argument {flag}: {value!r}; accepted: 0 or 1")
        return value == "1"
    raise AssertionError(spec.kind)  # pragma: no cover


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
        m = _WORKLOAD_RE.match(str(text))
        if not m:
            raise UsageError(
                f"workload {text!r} not understood; write pp<N>, tg<N>, pg<N>,<M> or "
                "pp<N>+tg<M>, optionally followed by @d<depth> (e.g. 'tg128@d4096')"
            )
        depth = int(m.group("depth") or 0)
        if m.group("pp") is not None:
            return cls(int(m.group("pp")), int(m.group("pptg") or 0), depth)
        if m.group("tg") is not None:
            return cls(0, int(m.group("tg")), depth)
        return cls(int(m.group("pg_p")), int(m.group("pg_g")), depth)


def pp(n: int, depth: int = 0) -> Workload:
    return Workload(n_prompt=n, n_depth=depth)


def tg(n: int, depth: int = 0) -> Workload:
    return Workload(n_gen=n, n_depth=depth)


def pg(n_prompt: int, n_gen: int, depth: int = 0) -> Workload:
    return Workload(n_prompt=n_prompt, n_gen=n_gen, n_depth=depth)


#: the pseudo-workload of cold-load measurements
LOAD = Workload()
