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

from pytest_llmperf import devices, gguf_info
from pytest_llmperf.errors import BackendError, UsageError
from pytest_llmperf.metrics import Sample
from pytest_llmperf.native import llama_lib
from pytest_llmperf.params import LoadParams, Workload

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
        self._sampler: Any = None
        self._logits_view: np.ndarray[Any, np.dtype[np.float32]] | None = None
        self.warnings: list[str] = []
        self.load = self._load()
        self._bind()

    # -- loading ----------------------------------------------------------------------
    def _load(self) -> LoadReport:
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
        mparams = lc.llama_model_default_params()
        mparams.n_gpu_layers = ALL_LAYERS if p.n_gpu_layers < 0 else p.n_gpu_layers
        mparams.use_mmap = p.use_mmap
        mparams.use_mlock = p.use_mlock
        patterns = expert_override_patterns(p) if self.info.n_expert else []
        if patterns:
            buft = llama_lib.cpu_buffer_type()
            arr = (_BuftOverride * (len(patterns) + 1))()
            for i, pat in enumerate(patterns):
                raw = pat.encode()
                self._keep.append(raw)
                arr[i].pattern = raw
                arr[i].buft = buft
            arr[len(patterns)].pattern = None
            arr[len(patterns)].buft = None
            self._keep.append(arr)  # must outlive the model
            mparams.tensor_buft_overrides = ctypes.cast(arr, ctypes.c_void_p)

        n_threads = p.n_threads or default_threads()
        n_threads_batch = p.n_threads_batch or n_threads
        cparams = lc.llama_context_default_params()
        cparams.n_ctx = p.n_ctx
        cparams.n_batch = p.n_batch
        cparams.n_ubatch = p.ubatch
        cparams.n_seq_max = 1
        cparams.n_threads = n_threads
        cparams.n_threads_batch = n_threads_batch
        cparams.flash_attn_type = FLASH_ATTN_TYPES[p.flash_attn]
        cparams.type_k = GGML_TYPES[p.type_k]
        cparams.type_v = GGML_TYPES[p.type_v]
        cparams.no_perf = False
        if p.n_ctx > self.info.n_ctx_train > 0:
            self.warnings.append(
                f"n_ctx={p.n_ctx} is larger than the model's training context "
                f"({self.info.n_ctx_train})"
            )

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
        log = list(capture.lines)
        overridden = {m.group(1): m.group(2) for line in log if (m := _OVERRIDE_RE.search(line))}
        resolved: dict[str, Any] = {
            "n_threads": n_threads,
            "n_threads_batch": n_threads_batch,
            "n_ubatch": int(lc.llama_n_ubatch(ctx)),
            "n_ctx": int(lc.llama_n_ctx(ctx)),
            "flash_attn": _flash_attn_from_log(log, p.flash_attn),
            "n_layer": self.info.n_layer,
            "n_expert": self.info.n_expert,
            "n_vocab": self.info.n_vocab,
            "quant": self.info.quant,
            "cpu_moe_tensors": len(overridden),
            "sampler": "greedy",
            "n_params": int(lc.llama_model_n_params(model)),
            "backend": _backend_name(p),
            "cpu_affinity": sorted(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else [],
        }
        if patterns:
            self._check_overrides(patterns, overridden)
        return LoadReport(
            load_ms=(t2 - t0) / 1e6,
            model_load_ms=(t1 - t0) / 1e6,
            context_ms=(t2 - t1) / 1e6,
            resolved=resolved,
            overridden=overridden,
            log_tail=log[-40:],
        )

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

    def _check_overrides(self, patterns: list[str], overridden: dict[str, str]) -> None:
        """The expert tensors, and only they, must have been overridden to the CPU."""
        regexes = [re.compile(p) for p in patterns]
        expected = {n for n in self.info.tensor_names if any(r.search(n) for r in regexes)}
        got = set(overridden)
        wrong_buft = {n: b for n, b in overridden.items() if not b.upper().startswith("CPU")}
        if got != expected or wrong_buft:
            missing = sorted(expected - got)[:5]
            extra = sorted(got - expected)[:5]
            raise BackendError(
                f"cpu-moe override check failed for {self.path}: llama.cpp's log shows "
                f"{len(got)} tensors overridden, expected {len(expected)} expert tensors; "
                f"missing {missing}, unexpected {extra}, not on CPU {wrong_buft}"
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
        try:
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
