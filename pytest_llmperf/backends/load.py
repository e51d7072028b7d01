"""The engine's model load: a model and one context, loaded the way llama-bench loads them.

- llama.cpp's model and context params: every :class:`~pytest_llmperf.backends.protocol.StructField`
  of the engine's knob table (:data:`~pytest_llmperf.backends.protocol.ENGINE`) is set from
  its value function, through a setter that refuses a field the struct does not have; a
  knob at its default whose field this release lacks is left to the release's own
  default, one set away from it is refused, naming the knob and the release;
  the table's other entries are applied by the explicit code here: tensor split, devices,
  tensor overrides (-ot, cpu-moe, n-cpu-moe), NUMA, the threadpool;
- the tensor override check after the load: exactly the tensors the patterns match show
  in llama.cpp's log as overridden, each to its buffer type;
- a persistent ggml threadpool, as llama-bench attaches one (the compute threads' mask,
  strictness, polling and priority);
- the resolved values recorded with each measurement, and the knobs this build or
  machine ignores, with why (never silently).

The timed loop over the loaded model is :mod:`pytest_llmperf.backends.engine`'s.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from pytest_llmperf.backends import llama_values as v
from pytest_llmperf.backends.protocol import ENGINE, Applied, StructField
from pytest_llmperf.errors import BackendError, UsageError
from pytest_llmperf.machine import devices, gguf_info
from pytest_llmperf.model.params import KNOBS, LoadParams
from pytest_llmperf.native import llama_lib, llama_log
from pytest_llmperf.native import model as native

EXPERT_PATTERN = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"


def struct_fields(struct: Any, params: LoadParams) -> dict[str, Any]:
    """The fields of ``struct`` (llama.cpp's model or context params) from the engine's
    knob table, with their values for ``params``. A field this llama-cpp-python cannot
    take (an older release): left out while its knob is at its default (the release's own
    default holds), else refused, naming the knob and the release."""
    out: dict[str, Any] = {}
    for name, e in ENGINE.entries(StructField).items():
        if e.struct != type(struct).__name__:
            continue
        shown = KNOBS[name].shown(getattr(params, name))
        if e.only_when_set and not shown:
            continue
        value = e.value(params)
        why = native.field_problem(struct, e.field, value)
        if why and not shown:
            continue
        if why:
            text = KNOBS[name].kind.text(getattr(params, name))
            raise UsageError(f"{name}={text}: {why}; this release cannot apply the knob")
        out[e.field] = value
    return out


def expert_override_patterns(params: LoadParams) -> list[str]:
    """The tensor_buft_overrides patterns llama.cpp's --cpu-moe / --n-cpu-moe would use."""
    if params.cpu_moe:
        return [EXPERT_PATTERN]
    return [rf"blk\.{i}{EXPERT_PATTERN}" for i in range(params.n_cpu_moe)]


@dataclass
class LoadReport:
    load_ms: float
    model_load_ms: float
    context_ms: float
    resolved: dict[str, Any] = field(default_factory=dict)
    overridden: dict[str, str] = field(default_factory=dict)
    log_tail: list[str] = field(default_factory=list)


class EngineLoad:
    """A model and one context loaded with ``params``; the engine's
    :class:`~pytest_llmperf.backends.engine.LoadedModel` runs workloads on them. Close it."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        params: LoadParams,
        *,
        model_id: str = "",
        check_memory: bool = True,
    ) -> None:
        self.path = os.fspath(path)
        self.params = params
        self.model_id = model_id or os.path.basename(self.path)
        self.info = gguf_info.inspect(self.path)
        if check_memory:
            devices.check_fits_in_memory(self.path, self.info.file_size, params)
        llama_lib.load()
        self._model: int | None = None
        self._ctx: int | None = None
        #: what the model's params point to: must outlive the model
        self._keep: list[Any] = []
        self._threadpool: int | None = None
        self._threadpool_batch: int | None = None
        #: where the threadpool placed its caller (worker 0): applied for each run only
        self._placement: devices.Placement | None = None
        self.warnings: list[str] = []
        with devices.placed() as outside:
            self.load = self._load(outside)

    @property
    def model(self) -> int:
        if self._model is None:
            raise BackendError("model is closed")
        return self._model

    @property
    def ctx(self) -> int:
        if self._ctx is None:
            raise BackendError("model is closed")
        return self._ctx

    def _load(self, outside: devices.Placement | None) -> LoadReport:
        """Load the model and its context; ``outside``: the caller's placement before (what
        the process was given, recorded; the threadpool's own is kept for the runs)."""
        p = self.params
        if (p.cpu_moe or p.n_cpu_moe) and not self.info.n_expert:
            self.warnings.append(
                f"{'cpu_moe' if p.cpu_moe else 'n_cpu_moe'} has no effect: "
                f"{self.info.name} has no expert tensors (not an MoE model)"
            )
        if p.n_cpu_moe > self.info.n_layer:
            self.warnings.append(
                f"n_cpu_moe={p.n_cpu_moe} exceeds the model's {self.info.n_layer} layers"
            )
        overrides = self.overrides()
        mparams = native.model_params()
        native.set_fields(mparams, **struct_fields(mparams, p))
        if p.tensor_split:
            split = native.tensor_split_array(v.tensor_split(p), self._keep)
            native.set_fields(mparams, tensor_split=split)
        if p.device:
            native.set_fields(mparams, devices=self._devices(p.device))
        if overrides:
            arr = native.override_array([(pat, buft) for pat, _n, buft in overrides], self._keep)
            native.set_fields(mparams, tensor_buft_overrides=arr)

        n_threads, n_threads_batch = v.n_threads(p), v.n_threads_batch(p)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        if cores and max(n_threads, n_threads_batch) > cores:
            self.warnings.append(
                f"{max(n_threads, n_threads_batch)} threads on {cores} CPUs: llama.cpp's threads "
                "spin-wait, so more threads than CPUs slow it down far beyond their share; "
                f"the numbers say more about the oversubscription than the model (use -t {cores})"
            )
        cparams = native.context_params()
        native.set_fields(cparams, n_seq_max=1, no_perf=False, **struct_fields(cparams, p))
        if p.n_ctx > self.info.n_ctx_train > 0:
            self.warnings.append(
                f"n_ctx={p.n_ctx} is larger than the model's training context "
                f"({self.info.n_ctx_train})"
            )
        llama_lib.numa_init(p.numa)

        with llama_lib.captured_log() as lines:
            t0 = time.perf_counter_ns()
            model = native.load_model(self.path, mparams)
            t1 = time.perf_counter_ns()
            if model is None:
                raise BackendError(self._failure("llama_model_load_from_file", lines))
            self._model = model
            ctx = native.init_context(model, cparams)
            t2 = time.perf_counter_ns()
            if ctx is None:
                self.close()
                raise BackendError(self._failure("llama_init_from_model", lines))
            self._ctx = ctx
        # a persistent threadpool, as llama-bench attaches one (without it, ggml makes a
        # disposable one for every graph): the compute threads' mask, priority and polling
        cpus = v.mask_cpus(p)
        self._threadpool = llama_lib.new_threadpool(n_threads, cpus, p.cpu_strict, p.poll, p.prio)
        self._threadpool_batch = (
            llama_lib.new_threadpool(n_threads_batch, cpus, p.cpu_strict, p.poll, p.prio)
            if n_threads_batch != n_threads
            else None
        )
        llama_lib.attach_threadpool(ctx, self._threadpool, self._threadpool_batch)
        self._placement = devices.Placement.current()
        log = list(lines)
        overridden = llama_log.overridden_tensors(log)
        resolved: dict[str, Any] = {
            "n_threads": n_threads,
            "n_threads_batch": n_threads_batch,
            "n_ubatch": native.n_ubatch(ctx),
            "n_ctx": native.n_ctx(ctx),
            "flash_attn": llama_log.flash_attn(log, p.flash_attn),
            "load_mode": llama_log.load_mode(log),
            "n_layer": self.info.n_layer,
            "n_expert": self.info.n_expert,
            "n_vocab": self.info.n_vocab,
            "quant": self.info.quant,
            "cpu_moe_tensors": len(
                [n for n, _b in overridden.items() if gguf_info.EXPERT_TENSOR_RE.search(n)]
            ),
            "overridden_tensors": len(overridden),
            "sampler": "greedy",
            "n_params": native.n_params(model),
            "backend": _backend_name(p),
            "cpu_affinity": sorted(outside.cpus) if outside is not None else [],
            "threadpool": {
                "cpu_mask": p.cpu_mask or "all",
                "strict": p.cpu_strict,
                "poll": p.poll,
                "prio": p.prio,
            },
            "numa": p.numa,
        }
        ineffective = self._ineffective()
        if ineffective:
            resolved["ineffective"] = ineffective
            self.warnings.extend(f"{k} has no effect here: {why}" for k, why in ineffective.items())
        if overrides:
            self._check_overrides([(pat, name) for pat, name, _b in overrides], overridden)
        return LoadReport(
            load_ms=(t2 - t0) / 1e6,
            model_load_ms=(t1 - t0) / 1e6,
            context_ms=(t2 - t1) / 1e6,
            resolved=resolved,
            overridden=overridden,
            log_tail=log[-40:],
        )

    def overrides(self) -> list[tuple[str, str, int]]:
        """(pattern, buffer type name, buffer type) of every tensor override: -ot entries,
        then cpu-moe's and n-cpu-moe's expert patterns (to the CPU)."""
        p = self.params
        wanted: list[tuple[str, str]] = []
        for part in filter(None, p.override_tensor.split(";")):
            pattern, _sep, name = part.rpartition("=")
            wanted.append((pattern, name))
        if self.info.n_expert:
            wanted += [(pat, "CPU") for pat in expert_override_patterns(p)]
        if not wanted:
            return []
        bufts = llama_lib.buffer_types()
        out: list[tuple[str, str, int]] = []
        for pattern, name in wanted:
            if name not in bufts:
                raise UsageError(
                    f"-ot {pattern}={name}: no buffer type {name!r} in this llama.cpp build; "
                    f"accepted: {', '.join(sorted(bufts))}"
                )
            out.append((pattern, name, bufts[name]))
        return out

    def _devices(self, names: str) -> Any:
        """A NULL-terminated array of the named devices (``none``: no device)."""
        by_name = {d["name"]: d["handle"] for d in llama_lib.devices()}
        chosen = [] if names == "none" else names.split("/")
        unknown = [n for n in chosen if n not in by_name]
        if unknown:
            raise UsageError(
                f"-dev {names}: no device {', '.join(unknown)} in this llama.cpp build; "
                f"accepted: {', '.join(sorted(by_name))} or none"
            )
        return native.device_array([by_name[n] for n in chosen], self._keep)

    def _ineffective(self) -> dict[str, str]:
        """Knobs set here that this build or machine ignores, and why: never silently."""
        p = self.params
        out: dict[str, str] = {}
        if not llama_lib.supports_gpu_offload():
            why = "this llama.cpp build has no GPU backend"
            for name, entry in ENGINE.entries(Applied).items():
                if entry.gpu_only and KNOBS[name].shown(getattr(p, name)):
                    out[name] = why
        if p.numa != "disabled" and llama_lib.numa_nodes() == 1:
            out["numa"] = "this machine has one NUMA node"
        if p.poll != KNOBS["poll"].default and "OPENMP = 1" in llama_lib.system_info():
            out["poll"] = "this build's compute threads are OpenMP's, which do not poll ggml's way"
        return out

    def _failure(self, call: str, log: list[str]) -> str:
        tail = [line for line in log if line.strip()][-12:]
        hint = ""
        text = "\n".join(tail).lower()
        if "flash" in text and ("quantiz" in text or "v cache" in text):
            hint = "\nhint: a quantized V cache needs flash attention: set flash_attn='on' (-fa on)"
        elif "failed to allocate" in text or "out of memory" in text:
            hint = "\nhint: not enough memory: lower n_ctx, n_gpu_layers or n_batch"
        elif "error loading model" in text:
            hint = (
                "\nhint: llama.cpp cannot use this file: it is damaged or incomplete (a tensor "
                "missing or of the wrong shape) or needs a newer llama.cpp; re-download or "
                "re-convert it, or upgrade llama-cpp-python"
            )
        # the line that says why, on the first line of the message (the one pytest shows)
        cause = next((ln for ln in reversed(tail) if "error" in ln.lower()), "") or next(
            (ln for ln in reversed(tail) if "failed" in ln.lower()), ""
        )
        return (
            f"{call} failed for {self.path} with {self.params.to_args() or 'defaults'}"
            + (f": {cause.strip()}" if cause else "")
            + "; llama.cpp said:\n  "
            + "\n  ".join(tail)
            + hint
        )

    def _check_overrides(
        self, overrides: list[tuple[str, str]], overridden: dict[str, str]
    ) -> None:
        """Exactly the tensors the patterns match (first match wins, as in llama.cpp) must
        show in llama.cpp's log as overridden, each to its buffer type (a CPU override may
        show as CPU_REPACK)."""
        regexes = [(re.compile(p), name) for p, name in overrides]
        expected: dict[str, str] = {}
        for tensor in self.info.tensor_names:
            for rx, name in regexes:
                if rx.search(tensor):
                    expected[tensor] = name
                    break
        got = set(overridden)
        wrong = {
            n: b
            for n, b in overridden.items()
            if n in expected and not b.upper().startswith(expected[n].upper())
        }
        if got != set(expected) or wrong:
            missing = sorted(set(expected) - got)[:5]
            extra = sorted(got - set(expected))[:5]
            raise BackendError(
                f"tensor override check failed for {self.path} "
                f"({self.params.to_args() or 'defaults'}): llama.cpp's log shows {len(got)} "
                f"tensors overridden, expected {len(expected)}; missing {missing}, unexpected "
                f"{extra}, on another buffer type {wrong}"
            )

    def close(self) -> None:
        if self._ctx is not None:
            native.free_context(self._ctx)
            self._ctx = None
        for name in ("_threadpool", "_threadpool_batch"):
            tp = getattr(self, name, None)
            if tp:
                llama_lib.free_threadpool(tp)
            setattr(self, name, None)
        if self._model is not None:
            native.free_model(self._model)
            self._model = None

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass


def _backend_name(params: LoadParams) -> str:
    """ "CPU", or the GPU backends that hold offloaded layers (llama-bench's backend column)."""
    if params.n_gpu_layers == 0:
        return "CPU"
    gpus = sorted(
        {d["name"].rstrip("0123456789") for d in llama_lib.devices() if d["type"] in (1, 3)}
    )
    return ",".join(gpus) if gpus else "CPU"
