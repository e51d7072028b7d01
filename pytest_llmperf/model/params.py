"""Load parameters: everything that changes how a model is loaded or run.

Pure: no llama.cpp import. Every :class:`LoadParams` field is declared with
:func:`~pytest_llmperf.model.knobs.knob`, which carries its spec (value kind, llama.cpp /
llama-bench flags, test-id prefix, llama-bench column). Argument parsing
(:func:`parse_llama_args`), ``to_args``, ``short_id``, sweep axes
(:mod:`pytest_llmperf.sweep.definition`), the baseline key, the llama-bench table of the
reports and each backend's table of how it applies a knob
(:mod:`pytest_llmperf.backends.protocol`) all read :data:`KNOBS`.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pytest_llmperf.errors import UsageError
from pytest_llmperf.model.knobs import (
    DEFAULT_UBATCH,
    FLASH_ATTN,
    KV_TYPE,
    NUMA,
    OVERRIDES,
    SPLIT_MODE,
    FlashAttn,
    Int,
    KnobSpec,
    Layers,
    Switch,
    Text,
    _check_devices,
    _check_mask,
    _check_split,
    knob,
)
from pytest_llmperf.options import as_words

#: llama.cpp's most compute threads (GGML_MAX_N_THREADS)
MAX_THREADS = 512
THREADS_TOO_MANY = f"must be <= {MAX_THREADS} (llama.cpp's GGML_MAX_N_THREADS)"


@dataclass(frozen=True)
class LoadParams:
    """Everything that changes how a model is loaded or run. Hashable.

    ``None`` means "llama.cpp's default", resolved and recorded at load time:
    ``n_threads`` the physical cores, ``n_threads_batch`` the n_threads, ``n_ubatch``
    min(512, n_batch). ``n_gpu_layers=-1`` means all layers.
    """

    n_ctx: int = knob(
        4096,
        Int(
            8,
            1 << 24,
            f"larger than any model supports (max {1 << 24}); use the context size the test needs",
        ),
        "-c",
        "--ctx-size",
        prefix="c",
        help="context size (KV cells)",
    )
    n_threads: int | None = knob(
        None,
        Int(1, MAX_THREADS, THREADS_TOO_MANY),
        "-t",
        "--threads",
        prefix="t",
        bench="n_threads",
        bench_optional=False,
        help="decode threads",
    )
    n_threads_batch: int | None = knob(
        None,
        Int(1, MAX_THREADS, THREADS_TOO_MANY),
        "-tb",
        "--threads-batch",
        prefix="tb",
        help="prompt-processing threads",
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
        """These params with llama.cpp-style ``args`` and then keyword ``overrides`` applied;
        a load param set both in ``args`` and as a keyword is a UsageError (which one is
        meant is ambiguous)."""
        values = self.to_dict()
        if args:
            parsed = parse_llama_args(args)
            twice = sorted(set(parsed) & set(overrides))
            if twice:
                name = twice[0]
                shown = args if isinstance(args, str) else shlex.join(args)
                raise UsageError(
                    f"{name} is given twice: in args={shown!r} and as {name}="
                    f"{overrides[name]!r}; which one is meant is ambiguous: keep one"
                )
            values.update(parsed)
        values.update(overrides)
        return LoadParams.from_dict(values)

    @classmethod
    def from_args(cls, args: str | Iterable[str], where: str = "arguments") -> LoadParams:
        """Parse llama.cpp / llama-bench style arguments: ``"-t 8 -b 256 -ngl 99 --cpu-moe"``
        (``where``: what gave them, for messages)."""
        return cls.from_dict(parse_llama_args(args, where), source=where)

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


def _knobs() -> dict[str, KnobSpec]:
    out: dict[str, KnobSpec] = {}
    for f in dataclasses.fields(LoadParams):
        spec = f.metadata["knob"]
        out[f.name] = dataclasses.replace(spec, name=f.name)
    return out


#: the spec of every load parameter, in field order
KNOBS: dict[str, KnobSpec] = _knobs()
#: flag -> parameter name
FLAGS: dict[str, str] = {flag: name for name, k in KNOBS.items() for flag in k.all_flags}


def _knob(params: LoadParams, name: str) -> KnobSpec:
    if name in KNOBS:
        return KNOBS[name]
    for f in dataclasses.fields(params):  # a subclass's own knob
        if f.name == name:
            spec: KnobSpec = dataclasses.replace(f.metadata["knob"], name=name)
            return spec
    raise KeyError(name)


def value_id(name: str, value: Any) -> str:
    """The test-id fragment of one parameter value: ``t2``, ``cpumoe``, ``nglall``."""
    spec = KNOBS[name]
    return spec.kind.id_part(spec.prefix, value)


def parse_llama_args(args: str | Iterable[str], where: str = "args") -> dict[str, Any]:
    """Parse llama.cpp-style load arguments into a dict of LoadParams fields.

    Unknown flags and bad values raise :class:`UsageError` naming the flag and the
    accepted values; text that cannot be split into words names ``where`` it came from.
    """
    tokens = as_words(args, where)
    out: dict[str, Any] = {}
    given: dict[str, str] = {}  # knob -> the flag that set it
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        flag, eq, inline = tok.partition("=")
        name = FLAGS.get(flag)
        if name is None:
            raise UsageError(
                f"unknown llama.cpp argument {tok!r}; accepted: {', '.join(sorted(FLAGS))}"
            )
        if name in given:
            also = "" if given[name] == flag else f" (as {given[name]} and {flag})"
            raise UsageError(
                f"argument {flag}: {name} is given twice{also}; which one is meant is "
                "ambiguous: keep one"
            )
        given[name] = flag
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
