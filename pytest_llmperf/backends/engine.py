"""The engine's timed loop, the way llama-bench times a workload.

:class:`LoadedModel` is a model loaded by :class:`~pytest_llmperf.backends.load.EngineLoad`
(params from the engine's knob table, overrides checked, a persistent threadpool) plus
the loop. The loop calls llama.cpp's decode directly (the functions of
:class:`~pytest_llmperf.native.model.TokenLoop`, bound once) and picks the next token with
a zero-copy argmax over llama.cpp's logits buffer: no per-token logits copy, no Python
objects per token beyond one timestamp. Timestamps are taken on token ids. Garbage
collection is paused during timed runs.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any, Literal

import numpy as np

from pytest_llmperf.backends.load import EngineLoad
from pytest_llmperf.errors import BackendError, UsageError
from pytest_llmperf.machine import devices
from pytest_llmperf.model.metrics import Sample
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.workloads import Workload
from pytest_llmperf.native import model as native

Sampler = Literal["greedy", "llama"]


class LoadedModel(EngineLoad):
    """A model and one context, loaded with ``params``, that runs workloads. Close it (or
    use ``with``)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        params: LoadParams,
        *,
        model_id: str = "",
        check_memory: bool = True,
    ) -> None:
        self._sampler: Any = None
        #: (depth, seed) of the depth prefix the context holds now, if any
        self._depth_prefix: tuple[int, int] | None = None
        self._logits_view: np.ndarray[Any, np.dtype[np.float32]] | None = None
        super().__init__(path, params, model_id=model_id, check_memory=check_memory)
        # the hot loop's calls, bound once (no wrapper layers per call)
        self._loop = native.TokenLoop()
        self._decode = self._loop.decode
        self._get_logits = self._loop.logits_ith
        self.n_vocab, self.bos = native.vocab(self.model)
        self._logits_addr = 0

    def _argmax(self) -> int:
        addr = self._get_logits(self._ctx, -1)
        if not addr:
            raise BackendError("llama_get_logits_ith returned NULL")
        if addr != self._logits_addr or self._logits_view is None:
            self._logits_view = native.TokenLoop.logits(addr, self.n_vocab)
            self._logits_addr = addr
        return int(self._logits_view.argmax())

    def _next_token(self, sampler: Sampler) -> int:
        if sampler == "greedy":
            return self._argmax()
        if self._sampler is None:
            self._sampler = native.greedy_sampler()
        return int(self._loop.sample(self._sampler, self.ctx, -1))

    def _decode_tokens(self, tokens: Any, n: int) -> None:
        """Decode ``n`` tokens from the token array ``tokens`` in n_batch chunks."""
        self._loop.decode_tokens(self.ctx, tokens, n, self.params.n_batch)

    def _prompt(self, n: int, seed: int) -> Any:
        rng = np.random.default_rng(seed)
        ids = rng.integers(0, self.n_vocab, size=n, dtype=np.int32)
        if n and self.bos >= 0:
            ids[0] = self.bos
        return native.TokenLoop.tokens(ids)

    def check_fits(self, workload: Workload) -> None:
        n_ctx = native.n_ctx(self.ctx)
        if workload.n_tokens > n_ctx:
            raise UsageError(
                f"workload {workload.name} needs {workload.n_tokens} KV cells but n_ctx={n_ctx}; "
                f"raise n_ctx (-c) to at least {workload.n_tokens}"
            )

    def run_once(self, workload: Workload, sampler: Sampler = "greedy") -> Sample:
        """One repetition: reset the context, fill depth (untimed), then time the workload.
        The depth's prefix of the previous repetition is kept when it is the same (only
        what came after it is removed): the cache the timed part sees is the same, and a
        repetition at depth 4096 no longer refills 4096 tokens first."""
        ctx = self.ctx
        self.check_fits(workload)
        prefix = (workload.n_depth, workload.seed + 1) if workload.n_depth else None
        if not (
            prefix is not None
            and prefix == self._depth_prefix
            and native.memory_keep(ctx, workload.n_depth)
        ):
            native.memory_clear(ctx)
            self._depth_prefix = None
            if prefix is not None:
                depth = self._prompt(workload.n_depth, workload.seed + 1)
                self._decode_tokens(depth, workload.n_depth)
                native.synchronize(ctx)
                self._depth_prefix = prefix
        if self._sampler is not None:
            native.sampler_reset(self._sampler)
        prompt = self._prompt(workload.n_prompt, workload.seed)
        n_gen = workload.n_gen
        loop = self._loop
        tok = loop.token
        batch = loop.token_batch
        decode = loop.decode
        decode_tokens = loop.decode_tokens
        synchronize = loop.synchronize
        step = self.params.n_batch
        token_ns: list[int] = []
        append = token_ns.append
        now = time.perf_counter_ns
        native.perf_reset(ctx)

        t0 = now()
        prompt_ns: int | None = None
        if workload.n_prompt:
            decode_tokens(ctx, prompt, workload.n_prompt, step)
            synchronize(ctx)
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
        return Sample(
            n_prompt=workload.n_prompt,
            n_gen=n_gen,
            n_depth=workload.n_depth,
            prompt_ns=prompt_ns,
            token_ns=token_ns,
            end_ns=end_ns,
            llama=native.perf_counters(ctx),
        )

    def run(
        self, workload: Workload, repetitions: int = 3, warmup: int = 1, sampler: Sampler = "greedy"
    ) -> list[Sample]:
        """``warmup`` untimed runs, then ``repetitions`` timed ones (GC paused)."""
        if repetitions < 1:
            raise UsageError(f"repetitions={repetitions}: must be >= 1")
        self.check_fits(workload)
        was_enabled = gc.isenabled()
        # no collection can run inside the timed loop (disabled below); the young
        # generations' garbage goes first, cheaply (a full collection took ~13 ms a call,
        # which paired rounds of a small model pay on every call)
        gc.collect(1)
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
        if getattr(self, "_sampler", None) is not None:
            native.sampler_free(self._sampler)
            self._sampler = None
        super().close()
        self._logits_view = None

    def __enter__(self) -> LoadedModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
