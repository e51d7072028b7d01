"""Loading a GGUF model with llama.cpp and the timed loop, the way llama-bench does it.

The loop calls llama.cpp's decode directly (through ctypes bindings of our own, created
once) and picks the next token with a zero-copy argmax over llama.cpp's logits buffer:
no per-token logits copy, no Python objects per token beyond one timestamp. Timestamps
are taken on token ids. Garbage collection is paused during timed runs.
"""

from __future__ import annotations

import ctypes
import gc
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from pytest_llmperf.errors import BackendError, UsageError
from pytest_llmperf.machine import devices, gguf_info
from pytest_llmperf.model.metrics import Sample
from pytest_llmperf.model.params import KNOBS, LoadParams
from pytest_llmperf.model.workloads import Workload
from pytest_llmperf.native import llama_lib

GGML_TYPES: dict[str, int] = {
    "f32": 0,
    "f16": 1,
    "q4_0": 2,
    "q4_1": 3,
    "q5_0": 6,
    "q5_1": 7,
    "q8_0": 8,
    "iq4_nl": 20,
    "bf16": 30,
}
FLASH_ATTN_TYPES: dict[str, int] = {"auto": -1, "off": 0, "on": 1}
ALL_LAYERS = 0x7FFFFFFF
EXPERT_PATTERN = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"
_OVERRIDE_RE = re.compile(r"tensor (\S+) \(.*\) buffer type overridden to (\S+)")

Sampler = Literal["greedy", "llama"]


class _BuftOverride(ctypes.Structure):
    """``struct llama_model_tensor_buft_override``: a pattern and a buffer type."""

    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


def expert_override_patterns(params: LoadParams) -> list[str]:
    """The tensor_buft_overrides patterns llama.cpp's --cpu-moe / --n-cpu-moe would use."""
    if params.cpu_moe:
        return [EXPERT_PATTERN]
    return [rf"blk\.{i}{EXPERT_PATTERN}" for i in range(params.n_cpu_moe)]


default_threads = devices.default_threads


@dataclass
class LoadReport:
    load_ms: float
    model_load_ms: float
    context_ms: float
    resolved: dict[str, Any] = field(default_factory=dict)
    overridden: dict[str, str] = field(default_factory=dict)
    log_tail: list[str] = field(default_factory=list)


class LoadedModel:
    """A model and one context, loaded with ``params``. Close it (or use ``with``)."""

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
        self.lc = llama_lib.load()
        self._model: int | None = None
        self._ctx: int | None = None
        self._keep: list[Any] = []
        self._threadpool: int | None = None
        self._threadpool_batch: int | None = None
        #: where the threadpool placed its caller (worker 0): applied for each run only
        self._placement: devices.Placement | None = None
        self._sampler: Any = None
        self._logits_view: np.ndarray[Any, np.dtype[np.float32]] | None = None
        self.warnings: list[str] = []
        with devices.placed() as outside:
            self.load = self._load(outside)
        self._bind()

    # -- loading ----------------------------------------------------------------------
    def _load(self, outside: devices.Placement | None) -> LoadReport:
        """Load the model and its context; ``outside``: the caller's placement before (what
        the process was given, recorded; the threadpool's own is kept for the runs)."""
        lc, p = self.lc, self.params
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
        mparams = lc.llama_model_default_params()
        _set(
            mparams,
            n_gpu_layers=ALL_LAYERS if p.n_gpu_layers < 0 else p.n_gpu_layers,
            load_mode=_load_mode(p),
            split_mode=SPLIT_MODES[p.split_mode],
            main_gpu=p.main_gpu,
            use_extra_bufts=p.repack,
            no_host=p.no_host,
        )
        if p.tensor_split:
            split = (ctypes.c_float * int(lc.llama_max_devices()))()
            for i, v in enumerate(p.tensor_split.split("/")[: len(split)]):
                split[i] = float(v)
            self._keep.append(split)
            _set(mparams, tensor_split=ctypes.cast(split, ctypes.POINTER(ctypes.c_float)))
        if p.device:
            _set(mparams, devices=self._devices(p.device))
        if overrides:
            arr = (_BuftOverride * (len(overrides) + 1))()
            for i, (pat, _name, buft) in enumerate(overrides):
                raw = pat.encode()
                self._keep.append(raw)
                arr[i].pattern = raw
                arr[i].buft = buft
            arr[len(overrides)].pattern = None
            arr[len(overrides)].buft = None
            self._keep.append(arr)  # must outlive the model
            _set(mparams, tensor_buft_overrides=ctypes.cast(arr, ctypes.c_void_p))

        n_threads = p.n_threads or default_threads()
        n_threads_batch = p.n_threads_batch or n_threads
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        if cores and max(n_threads, n_threads_batch) > cores:
            self.warnings.append(
                f"{max(n_threads, n_threads_batch)} threads on {cores} CPUs: llama.cpp's threads "
                "spin-wait, so more threads than CPUs slow it down far beyond their share; "
                f"the numbers say more about the oversubscription than the model (use -t {cores})"
            )
        cparams = lc.llama_context_default_params()
        _set(
            cparams,
            n_ctx=p.n_ctx,
            n_batch=p.n_batch,
            n_ubatch=p.ubatch,
            n_seq_max=1,
            n_threads=n_threads,
            n_threads_batch=n_threads_batch,
            flash_attn_type=FLASH_ATTN_TYPES[p.flash_attn],
            type_k=GGML_TYPES[p.type_k],
            type_v=GGML_TYPES[p.type_v],
            no_perf=False,
            offload_kqv=not p.no_kv_offload,
            op_offload=not p.no_op_offload,
            embeddings=p.embeddings,
        )
        if p.n_ctx > self.info.n_ctx_train > 0:
            self.warnings.append(
                f"n_ctx={p.n_ctx} is larger than the model's training context "
                f"({self.info.n_ctx_train})"
            )
        llama_lib.numa_init(p.numa)

        capture = llama_lib.log_capture()
        capture.lines = []
        capture.active = True
        try:
            t0 = time.perf_counter_ns()
            model = lc.llama_model_load_from_file(self.path.encode(), mparams)
            t1 = time.perf_counter_ns()
            if not model:
                raise BackendError(self._failure("llama_model_load_from_file", capture.lines))
            self._model = model
            ctx = lc.llama_init_from_model(model, cparams)
            t2 = time.perf_counter_ns()
            if not ctx:
                self.close()
                raise BackendError(self._failure("llama_init_from_model", capture.lines))
            self._ctx = ctx
        finally:
            capture.active = False
        # a persistent threadpool, as llama-bench attaches one (without it, ggml makes a
        # disposable one for every graph): the compute threads' mask, priority and polling
        self._threadpool = llama_lib.new_threadpool(
            n_threads, _mask_cpus(p.cpu_mask), p.cpu_strict, p.poll, p.prio
        )
        self._threadpool_batch = (
            llama_lib.new_threadpool(
                n_threads_batch, _mask_cpus(p.cpu_mask), p.cpu_strict, p.poll, p.prio
            )
            if n_threads_batch != n_threads
            else None
        )
        llama_lib.attach_threadpool(ctx, self._threadpool, self._threadpool_batch)
        self._placement = devices.Placement.current()
        log = list(capture.lines)
        overridden = {m.group(1): m.group(2) for line in log if (m := _OVERRIDE_RE.search(line))}
        resolved: dict[str, Any] = {
            "n_threads": n_threads,
            "n_threads_batch": n_threads_batch,
            "n_ubatch": int(lc.llama_n_ubatch(ctx)),
            "n_ctx": int(lc.llama_n_ctx(ctx)),
            "flash_attn": _flash_attn_from_log(log, p.flash_attn),
            "load_mode": _load_mode_from_log(log),
            "n_layer": self.info.n_layer,
            "n_expert": self.info.n_expert,
            "n_vocab": self.info.n_vocab,
            "quant": self.info.quant,
            "cpu_moe_tensors": len(
                [n for n, _b in overridden.items() if gguf_info.EXPERT_TENSOR_RE.search(n)]
            ),
            "overridden_tensors": len(overridden),
            "sampler": "greedy",
            "n_params": int(lc.llama_model_n_params(model)),
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
        arr = (ctypes.c_void_p * (len(chosen) + 1))(*[by_name[n] for n in chosen], None)
        self._keep.append(arr)
        return ctypes.cast(arr, ctypes.c_void_p)

    def _ineffective(self) -> dict[str, str]:
        """Knobs set here that this build or machine ignores, and why: never silently."""
        p, lc = self.params, self.lc
        out: dict[str, str] = {}
        if not lc.llama_supports_gpu_offload():
            why = "this llama.cpp build has no GPU backend"
            for name in (
                "split_mode",
                "main_gpu",
                "tensor_split",
                "no_kv_offload",
                "no_op_offload",
            ):
                if KNOBS[name].shown(getattr(p, name)):
                    out[name] = why
            if p.n_gpu_layers != 0:
                out["n_gpu_layers"] = why
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

    def _bind(self) -> None:
        """Private ctypes bindings for the hot loop (no wrapper layers per call)."""
        lib = self.lc._lib
        self._decode = lib.llama_decode
        self._get_logits = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32)(
            ("llama_get_logits_ith", lib)
        )
        vocab = self.lc.llama_model_get_vocab(self._model)
        self.n_vocab = int(self.lc.llama_vocab_n_tokens(vocab))
        self.bos = int(self.lc.llama_vocab_bos(vocab))
        self._tok = (ctypes.c_int32 * 1)()
        self._tok_batch = self.lc.llama_batch_get_one(self._tok, 1)
        self._logits_addr = 0
        self._logits_view = None

    # -- running ----------------------------------------------------------------------
    @property
    def ctx(self) -> int:
        if self._ctx is None:
            raise BackendError("model is closed")
        return self._ctx

    def _argmax(self) -> int:
        addr = self._get_logits(self._ctx, -1)
        if not addr:
            raise BackendError("llama_get_logits_ith returned NULL")
        if addr != self._logits_addr or self._logits_view is None:
            buf = (ctypes.c_float * self.n_vocab).from_address(addr)
            self._logits_view = np.ctypeslib.as_array(buf)
            self._logits_addr = addr
        return int(self._logits_view.argmax())

    def _next_token(self, sampler: Sampler) -> int:
        if sampler == "greedy":
            return self._argmax()
        if self._sampler is None:
            chain = self.lc.llama_sampler_chain_init(self.lc.llama_sampler_chain_default_params())
            self.lc.llama_sampler_chain_add(chain, self.lc.llama_sampler_init_greedy())
            self._sampler = chain
        return int(self.lc.llama_sampler_sample(self._sampler, self.ctx, -1))

    def _decode_tokens(self, tokens: Any, n: int) -> None:
        """Decode ``n`` tokens from the ctypes array ``tokens`` in n_batch chunks."""
        step = self.params.n_batch
        base = ctypes.addressof(tokens)
        for off in range(0, n, step):
            cnt = min(step, n - off)
            ptr = ctypes.cast(base + 4 * off, ctypes.POINTER(ctypes.c_int32))
            rc = self._decode(self.ctx, self.lc.llama_batch_get_one(ptr, cnt))
            if rc != 0:
                raise BackendError(f"llama_decode failed with code {rc} (prompt chunk at {off})")

    def _prompt(self, n: int, seed: int) -> Any:
        rng = np.random.default_rng(seed)
        ids = rng.integers(0, self.n_vocab, size=n, dtype=np.int32)
        if n and self.bos >= 0:
            ids[0] = self.bos
        arr = (ctypes.c_int32 * max(n, 1))()
        ctypes.memmove(arr, ids.ctypes.data, 4 * n)
        return arr

    def check_fits(self, workload: Workload) -> None:
        n_ctx = int(self.lc.llama_n_ctx(self.ctx))
        if workload.n_tokens > n_ctx:
            raise UsageError(
                f"workload {workload.name} needs {workload.n_tokens} KV cells but n_ctx={n_ctx}; "
                f"raise n_ctx (-c) to at least {workload.n_tokens}"
            )

    def run_once(self, workload: Workload, sampler: Sampler = "greedy") -> Sample:
        """One repetition: reset the context, fill depth (untimed), then time the workload."""
        lc, ctx = self.lc, self.ctx
        self.check_fits(workload)
        lc.llama_memory_clear(lc.llama_get_memory(ctx), True)
        if self._sampler is not None:
            lc.llama_sampler_reset(self._sampler)
        if workload.n_depth:
            depth = self._prompt(workload.n_depth, workload.seed + 1)
            self._decode_tokens(depth, workload.n_depth)
            lc.llama_synchronize(ctx)
        prompt = self._prompt(workload.n_prompt, workload.seed)
        n_gen = workload.n_gen
        tok = self._tok
        batch = self._tok_batch
        decode = self._decode
        token_ns: list[int] = []
        append = token_ns.append
        now = time.perf_counter_ns
        lc.llama_perf_context_reset(ctx)

        t0 = now()
        prompt_ns: int | None = None
        if workload.n_prompt:
            self._decode_tokens(prompt, workload.n_prompt)
            lc.llama_synchronize(ctx)
            prompt_ns = now() - t0
        else:
            tok[0] = self.bos if self.bos >= 0 else 0
            if decode(ctx, batch) != 0:
                raise BackendError("llama_decode failed on the start token")
        if n_gen:
            pick = self._argmax if sampler == "greedy" else lambda: self._next_token(sampler)
            nxt = pick()
            append(now() - t0)
            for _ in range(n_gen - 1):
                tok[0] = nxt
                if decode(ctx, batch) != 0:
                    raise BackendError(f"llama_decode failed at token {len(token_ns)}")
                nxt = pick()
                append(now() - t0)
        end_ns = now() - t0
        perf = lc.llama_perf_context(ctx)
        llama = {
            "n_p_eval": float(perf.n_p_eval),
            "t_p_eval_ms": float(perf.t_p_eval_ms),
            "n_eval": float(perf.n_eval),
            "t_eval_ms": float(perf.t_eval_ms),
        }
        return Sample(
            n_prompt=workload.n_prompt,
            n_gen=n_gen,
            n_depth=workload.n_depth,
            prompt_ns=prompt_ns,
            token_ns=token_ns,
            end_ns=end_ns,
            llama=llama,
        )

    def run(
        self, workload: Workload, repetitions: int = 3, warmup: int = 1, sampler: Sampler = "greedy"
    ) -> list[Sample]:
        """``warmup`` untimed runs, then ``repetitions`` timed ones (GC paused)."""
        if repetitions < 1:
            raise UsageError(f"repetitions={repetitions}: must be >= 1")
        self.check_fits(workload)
        was_enabled = gc.isenabled()
        gc.collect()
        gc.disable()
        # the caller runs as the pool's worker 0, placed as the pool placed it (as in
        # llama-bench), and is put back afterwards: a -C 0x2 model never leaves the rest
        # of the process on CPU 1
        try:
            with devices.placed(self._placement):
                for _ in range(max(warmup, 0)):
                    self.run_once(workload, sampler)
                samples = []
                for _ in range(repetitions):
                    before = devices.cpu_snapshot()  # outside the timed region
                    sample = self.run_once(workload, sampler)
                    sample.contention = devices.contention(before, devices.cpu_snapshot())
                    samples.append(sample)
            return samples
        finally:
            if was_enabled:
                gc.enable()

    def close(self) -> None:
        if self._sampler is not None:
            self.lc.llama_sampler_free(self._sampler)
            self._sampler = None
        if self._ctx is not None:
            self.lc.llama_free(self._ctx)
            self._ctx = None
        for name in ("_threadpool", "_threadpool_batch"):
            tp = getattr(self, name, None)
            if tp:
                llama_lib.free_threadpool(tp)
            setattr(self, name, None)
        if self._model is not None:
            self.lc.llama_model_free(self._model)
            self._model = None
        self._logits_view = None

    def __enter__(self) -> LoadedModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass


SPLIT_MODES: dict[str, int] = {"none": 0, "layer": 1, "row": 2, "tensor": 3}
#: llama.cpp's load modes (llama_model_params.load_mode)
LOAD_MODES: dict[str, int] = {"auto": -1, "none": 0, "mmap": 1, "mlock": 2, "mmap+mlock": 3}


def _load_mode(p: LoadParams) -> int:
    """use_mmap / use_mlock as llama.cpp's load mode (its default, auto, maps the file)."""
    if p.use_mlock:
        return LOAD_MODES["mmap+mlock" if p.use_mmap else "mlock"]
    return LOAD_MODES["auto" if p.use_mmap else "none"]


def _load_mode_from_log(log: list[str]) -> str:
    for line in log:
        m = re.search(r"\(load_mode = ([\w+]+)\)", line)
        if m:
            return m.group(1)
    return "unknown"


def _mask_cpus(mask: str) -> list[int]:
    """The CPUs of a hexadecimal mask (``0x5`` -> [0, 2]); none for an empty mask."""
    if not mask:
        return []
    bits = int(mask, 16)
    return [i for i in range(bits.bit_length()) if bits >> i & 1]


def _set(struct: Any, **fields: Any) -> None:
    """Set fields of a ctypes struct, refusing a name the struct does not declare (ctypes
    would silently add a Python attribute that llama.cpp never sees)."""
    declared = {f[0] for f in type(struct)._fields_}
    for name, value in fields.items():
        if name not in declared:
            raise BackendError(
                f"{type(struct).__name__} has no field {name!r} in this llama-cpp-python: "
                "the knob cannot be applied; use the llama-cpp-python this project pins"
            )
        setattr(struct, name, value)


def _flash_attn_from_log(log: list[str], requested: str) -> str:
    """What llama.cpp decided for flash attention ("on"/"off"), from its log."""
    for line in log:
        low = line.lower()
        if "flash_attn" in low or "flash attention" in low:
            if "enabled" in low or re.search(r"flash_attn\s*=\s*1\b", low):
                return "on"
            if "disabled" in low or re.search(r"flash_attn\s*=\s*0\b", low):
                return "off"
    return requested


def _backend_name(params: LoadParams) -> str:
    """ "CPU", or the GPU backends that hold offloaded layers (llama-bench's backend column)."""
    if params.n_gpu_layers == 0:
        return "CPU"
    gpus = sorted(
        {d["name"].rstrip("0123456789") for d in llama_lib.devices() if d["type"] in (1, 3)}
    )
    return ",".join(gpus) if gpus else "CPU"
