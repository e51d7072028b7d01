"""What every backend is: the :class:`Runner` protocol, and the registry of backends.

A backend declares, in its :class:`BackendSpec`, the workload kinds it runs, the metrics
it cannot produce (with why), and for EVERY load parameter of
:data:`~pytest_llmperf.model.params.KNOBS` either :class:`Applied` (how) or
:class:`NotApplied` (why). The tables are what the backends' code reads:

- :class:`StructField` entries are set by the engine's generic code (the value from a
  function of :mod:`~pytest_llmperf.backends.llama_values`);
- :class:`Keyword` entries are the streaming path's ``Llama(...)`` keywords;
- :class:`Flag` entries are llama-bench's arguments;
- a plain :class:`Applied` entry is applied by explicit code in the backend, which its
  ``how`` names (tensor overrides, the threadpool, devices, NUMA);
- :class:`NotApplied` knobs set away from their defaults are listed in the measurement
  (``resolved["stream"]["not_applied"]``, ``resolved["not_applied"]``), never dropped
  without a word.

``tests/unit/test_registries.py`` fails when a knob is missing from any table, so adding a
knob means deciding, for each backend, how it is applied or why it is not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from pytest_llmperf.backends import llama_values as v
from pytest_llmperf.backends.llama_values import Value
from pytest_llmperf.model.knobs import KnobSpec
from pytest_llmperf.model.metrics import METRICS
from pytest_llmperf.model.params import KNOBS, LoadParams
from pytest_llmperf.model.results import Measurement
from pytest_llmperf.model.workloads import StreamWorkload, Workload


class Runner(Protocol):
    """A loaded model configuration that turns workloads into Measurements."""

    model_id: str
    path: str
    params: LoadParams
    load_ms: float
    resolved: dict[str, Any]
    warnings: list[str]
    #: the llama.cpp this runner runs: version, build and system info
    software: dict[str, Any]
    #: the process that runs llama.cpp (None: one per call, as llama-bench)
    pid: int | None

    def measure(self, workload: Workload, repetitions: int = 3, warmup: int = 1) -> Measurement: ...

    def measure_load(self, repetitions: int = 3) -> Measurement: ...

    def measure_stream(
        self, workload: StreamWorkload, repetitions: int = 3, warmup: int = 1
    ) -> Measurement: ...

    def settle(self) -> None:
        """Return once the runner's compute threads stopped spinning after its last call
        (another runner's measurement starts next)."""

    def close(self) -> None: ...


# -- how a backend applies a knob ---------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Applied:
    """The backend applies the knob, through ``how``. An entry of this class itself is
    applied by explicit code of the backend; its subclasses by the backend's generic
    code, from the entry's data."""

    how: str
    #: passed on only when the value differs from the knob's default (the backend's own
    #: default holds otherwise)
    only_when_set: bool = False
    #: only a GPU build acts on it: a build without GPU offload reports it ineffective
    gpu_only: bool = False


@dataclass(frozen=True, kw_only=True)
class StructField(Applied):
    """Applied by setting ``struct.field`` to ``value(params)``."""

    struct: Literal["llama_model_params", "llama_context_params"]
    field: str
    value: Value


@dataclass(frozen=True, kw_only=True)
class Keyword(Applied):
    """Applied as llama-cpp-python's ``Llama(keyword=value(params))``."""

    keyword: str
    value: Value


@dataclass(frozen=True, kw_only=True)
class Flag(Applied):
    """Applied as a llama-bench argument: ``flag VALUE``, or the ``fixed`` arguments."""

    flag: str
    fixed: tuple[str, ...] = ()

    def args(self, spec: KnobSpec, value: Any) -> list[str]:
        return list(self.fixed) if self.fixed else [self.flag, spec.kind.text(value)]


@dataclass(frozen=True)
class NotApplied:
    """The backend cannot apply the knob, and why."""

    why: str


Entry = Applied | NotApplied
E = TypeVar("E", bound=Applied)


def model_field(field: str, value: Value, note: str = "", **kw: Any) -> StructField:
    how = f"llama_model_params.{field}" + (f" ({note})" if note else "")
    return StructField(how=how, struct="llama_model_params", field=field, value=value, **kw)


def context_field(field: str, value: Value, note: str = "", **kw: Any) -> StructField:
    how = f"llama_context_params.{field}" + (f" ({note})" if note else "")
    return StructField(how=how, struct="llama_context_params", field=field, value=value, **kw)


def keyword(name: str, value: Value, **kw: Any) -> Keyword:
    return Keyword(how=f"Llama({name}=)", keyword=name, value=value, **kw)


def flag(name: str, *fixed: str, note: str = "") -> Flag:
    how = f"llama-bench {' '.join(fixed) or name}" + (f" ({note})" if note else "")
    return Flag(how=how, flag=name, fixed=fixed, only_when_set=True)


# -- the backends -----------------------------------------------------------------------------

WorkloadKind = Literal["pp", "tg", "pg", "load", "stream"]
#: every kind of workload (``Workload.kind``)
WORKLOAD_KINDS: tuple[WorkloadKind, ...] = ("pp", "tg", "pg", "load", "stream")


@dataclass(frozen=True)
class BackendSpec:
    """One backend: what it runs, how it applies each knob, what it cannot measure."""

    name: str
    #: the module of its code
    module: str
    workloads: tuple[WorkloadKind, ...]
    knobs: Mapping[str, Entry]
    #: metric -> why this backend cannot produce it
    missing_metrics: Mapping[str, str]

    def entries(self, kind: type[E]) -> dict[str, E]:
        """The knobs applied through entries of ``kind`` (in KNOBS order)."""
        return {n: e for n in KNOBS if isinstance(e := self.knobs[n], kind)}

    def not_applied(self, params: LoadParams) -> dict[str, str]:
        """The knobs set away from their defaults that this backend cannot apply, with why."""
        return {
            name: entry.why
            for name in KNOBS
            if isinstance(entry := self.knobs[name], NotApplied)
            and KNOBS[name].shown(getattr(params, name))
        }


_OVERRIDES = "tensor_buft_overrides (checked in llama.cpp's log)"
_THREADPOOL = "the persistent ggml threadpool attached to the context: ggml_threadpool_params"

ENGINE = BackendSpec(
    name="engine",
    module="pytest_llmperf.backends.engine",
    workloads=("pp", "tg", "pg", "load"),
    knobs={
        "n_ctx": context_field("n_ctx", v.param("n_ctx")),
        "n_threads": context_field("n_threads", v.n_threads, "and the threadpool's size"),
        "n_threads_batch": context_field(
            "n_threads_batch", v.n_threads_batch, "and the batch threadpool's size"
        ),
        "n_batch": context_field("n_batch", v.param("n_batch")),
        "n_ubatch": context_field("n_ubatch", v.n_ubatch),
        "n_gpu_layers": model_field("n_gpu_layers", v.n_gpu_layers, gpu_only=True),
        "cpu_moe": Applied(how=f"{_OVERRIDES}: every expert tensor to the CPU", only_when_set=True),
        "n_cpu_moe": Applied(
            how=f"{_OVERRIDES}: the first N layers' expert tensors to the CPU", only_when_set=True
        ),
        "flash_attn": context_field("flash_attn_type", v.flash_attn_type),
        "type_k": context_field("type_k", v.type_k),
        "type_v": context_field("type_v", v.type_v),
        "use_mmap": model_field("load_mode", v.load_mode, "with use_mlock; read back in the log"),
        "use_mlock": model_field("load_mode", v.load_mode, "with use_mmap"),
        "override_tensor": Applied(how=_OVERRIDES, only_when_set=True),
        "split_mode": model_field("split_mode", v.split_mode, gpu_only=True),
        "main_gpu": model_field("main_gpu", v.param("main_gpu"), gpu_only=True),
        "tensor_split": Applied(
            how="llama_model_params.tensor_split (llama_max_devices() floats)",
            only_when_set=True,
            gpu_only=True,
        ),
        "no_kv_offload": context_field("offload_kqv", v.offload_kqv, gpu_only=True),
        "no_op_offload": context_field("op_offload", v.op_offload, gpu_only=True),
        "device": Applied(
            how="llama_model_params.devices (a NULL-terminated array of ggml devices)",
            only_when_set=True,
        ),
        "embeddings": context_field("embeddings", v.param("embeddings")),
        "repack": model_field("use_extra_bufts", v.param("repack")),
        "no_host": model_field("no_host", v.param("no_host")),
        "numa": Applied(how="llama_numa_init, once per process", only_when_set=True),
        "cpu_mask": Applied(how=f"{_THREADPOOL}.cpumask"),
        "cpu_strict": Applied(how=f"{_THREADPOOL}.strict_cpu"),
        "poll": Applied(how=f"{_THREADPOOL}.poll"),
        "prio": Applied(how=f"{_THREADPOOL}.prio"),
    },
    missing_metrics={},
)

_LLAMA_LOAD = "in llama.cpp's default model params while Llama loads: Llama has no argument"
_STREAM_OVERRIDES = (
    f"tensor_buft_overrides {_LLAMA_LOAD}: the engine's patterns and buffer types (the "
    "count of overridden tensors checked against the engine's load)"
)
_NO_THREADPOOL = "Llama attaches no threadpool (llama.cpp makes one per graph)"

STREAM = BackendSpec(
    name="stream",
    module="pytest_llmperf.backends.stream",
    workloads=("stream",),
    knobs={
        "n_ctx": keyword("n_ctx", v.param("n_ctx")),
        "n_threads": keyword("n_threads", v.n_threads),
        "n_threads_batch": keyword("n_threads_batch", v.n_threads_batch),
        "n_batch": keyword("n_batch", v.param("n_batch")),
        "n_ubatch": keyword("n_ubatch", v.n_ubatch),
        "n_gpu_layers": keyword("n_gpu_layers", v.n_gpu_layers),
        "cpu_moe": Applied(how=_STREAM_OVERRIDES, only_when_set=True),
        "n_cpu_moe": Applied(how=_STREAM_OVERRIDES, only_when_set=True),
        "flash_attn": Applied(
            how="Llama(flash_attn=): the engine's resolved on or off (an auto llama.cpp "
            "has not resolved is listed as not applied)"
        ),
        "type_k": keyword("type_k", v.type_k),
        "type_v": keyword("type_v", v.type_v),
        "use_mmap": keyword("use_mmap", v.param("use_mmap")),
        "use_mlock": keyword("use_mlock", v.param("use_mlock")),
        "override_tensor": Applied(how=_STREAM_OVERRIDES, only_when_set=True),
        "split_mode": keyword("split_mode", v.split_mode),
        "main_gpu": keyword("main_gpu", v.param("main_gpu")),
        "tensor_split": keyword("tensor_split", v.tensor_split, only_when_set=True),
        "no_kv_offload": keyword("offload_kqv", v.offload_kqv),
        "no_op_offload": keyword("op_offload", v.op_offload),
        "device": NotApplied("Llama takes no device list"),
        "embeddings": NotApplied("a streamed completion needs no embeddings"),
        "repack": model_field(
            "use_extra_bufts", v.param("repack"), _LLAMA_LOAD, only_when_set=True
        ),
        "no_host": model_field("no_host", v.param("no_host"), _LLAMA_LOAD, only_when_set=True),
        "numa": Applied(
            how="llama_numa_init of the engine's load in the same process (once per process)"
        ),
        "cpu_mask": NotApplied(_NO_THREADPOOL),
        "cpu_strict": NotApplied(_NO_THREADPOOL),
        "poll": NotApplied(_NO_THREADPOOL),
        "prio": NotApplied(_NO_THREADPOOL),
    },
    missing_metrics={},
)

_NO_ITL = "llama-bench reports no per-token times (its output has one time per repetition)"

LLAMA_BENCH = BackendSpec(
    name="llama-bench",
    module="pytest_llmperf.backends.llamabench",
    workloads=("pp", "tg", "pg"),
    knobs={
        "n_ctx": NotApplied("llama-bench sizes the context to each test; it has no -c"),
        "n_threads": flag("-t"),
        "n_threads_batch": NotApplied("llama-bench has no -tb: its -t threads do both"),
        "n_batch": flag("-b"),
        "n_ubatch": flag("-ub"),
        "n_gpu_layers": flag("-ngl"),
        "cpu_moe": flag("-ncmoe", "-ncmoe", "9999", note="every layer: its form of --cpu-moe"),
        "n_cpu_moe": flag("-ncmoe"),
        "flash_attn": flag("-fa"),
        "type_k": flag("-ctk"),
        "type_v": flag("-ctv"),
        "use_mmap": flag("-lm", "-lm", "none", note="for --no-mmap"),
        "use_mlock": NotApplied(
            "not passed on: llama-bench's load mode (-lm) is written for --no-mmap only"
        ),
        "override_tensor": flag("-ot"),
        "split_mode": flag("-sm"),
        "main_gpu": flag("-mg"),
        "tensor_split": flag("-ts"),
        "no_kv_offload": flag("-nkvo"),
        "no_op_offload": flag("-nopo"),
        "device": flag("-dev"),
        "embeddings": flag("-embd"),
        "repack": flag("--repack"),
        "no_host": flag("--no-host"),
        "numa": flag("--numa"),
        "cpu_mask": flag("-C"),
        "cpu_strict": flag("--cpu-strict"),
        "poll": flag("--poll"),
        "prio": flag("--prio"),
    },
    missing_metrics={
        **{name: _NO_ITL for name, spec in METRICS.items() if spec.per_token},
        "load_ms": "llama-bench does not report its model load time",
    },
)

#: every backend, by name
BACKENDS: dict[str, BackendSpec] = {b.name: b for b in (ENGINE, STREAM, LLAMA_BENCH)}
