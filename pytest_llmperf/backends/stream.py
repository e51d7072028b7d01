"""Streaming as the application sees it: llama-cpp-python's own high-level path, timed.

A :class:`StreamModel` is llama-cpp-python's ``Llama`` on the same file and load params as
the engine's model (a second load in the same process), and runs a
:class:`~pytest_llmperf.model.workloads.StreamWorkload` the way an application does:
``Llama.create_completion(prompt, stream=True)`` or
``Llama.create_chat_completion(messages, stream=True)`` (chat template, tokenization,
the sampler chain, detokenization, llama-cpp-python's chunking), with the request's
sampling settings. What it adds to that path, and why:

- every end-of-generation token is banned for the run (``logit_bias`` of -inf, the API's
  own means), so a run streams ``max_tokens`` tokens; the tokens are counted (a subclass
  of ``Llama`` notes each call of ``sample``, with its time), never assumed. A run that
  streams fewer (a stop string) is an error naming the cause; one that streams more is
  llama-cpp-python completing a character split across tokens at the limit (its stream
  loop skips the length check meanwhile): kept, counted, and noted in the measurement;
- the context is reset before every repetition (``Llama.reset``): llama-cpp-python would
  otherwise reuse the previous repetition's prompt from its KV cache;
- before the first run, a probe call stops at ``generate`` (no decode) to count the
  prompt's tokens exactly as the call makes them (template and tokenizer included), so
  a prompt longer than n_ctx is a usage error before the model runs.

Garbage collection stays enabled during streamed runs, as in an application. The
``Llama``'s load (its arguments from the streaming path's knob table, the knobs it cannot
take) is :mod:`pytest_llmperf.backends.stream_load`'s.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pytest_llmperf.backends.stream_load import Probed, load_llama
from pytest_llmperf.errors import BackendError, UsageError
from pytest_llmperf.machine import devices
from pytest_llmperf.machine.tiny import TINY_NAME_PREFIX
from pytest_llmperf.model.metrics import METRICS, Sample
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.workloads import StreamWorkload, thaw_sampling
from pytest_llmperf.native import llama_lib
from pytest_llmperf.native import model as native

#: the chat template the built-in tiny models get at load time (their GGUF has none, and
#: their bytes must not change): one turn per line pair, as ChatML-like markers
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ '<|' + m['role'] + '|>\\n' + m['content'] + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)

_HIGH_BYTE_RE = re.compile(r"<0x[89A-Fa-f][0-9A-Fa-f]>")

#: create_completion / create_chat_completion parameters the request sets itself
RESERVED: dict[str, str] = {
    "prompt": "give the text as measure_stream(prompt=...)",
    "messages": "give them as measure_stream(messages=...)",
    "stream": "a streamed request always streams",
    "max_tokens": "give it as measure_stream(max_tokens=N)",
}
#: parameters that change what is streamed (or need Python objects): not measured here
UNSUPPORTED: frozenset[str] = frozenset(
    {
        "suffix",
        "echo",
        "logprobs",
        "top_logprobs",
        "stopping_criteria",
        "logits_processor",
        "grammar",
        "response_format",
        "functions",
        "function_call",
        "tools",
        "tool_choice",
    }
)
#: the sampling settings recorded with every measurement (the request's or the API's)
RECORDED_SAMPLING: tuple[str, ...] = (
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repeat_penalty",
    "seed",
)
#: the engine's metrics kept beside each streamed repetition: the metric registry's
#: ``engine_<x>`` metrics give ``<x>``
ENGINE_METRICS: tuple[str, ...] = tuple(
    name.removeprefix("engine_") for name in METRICS if name.startswith("engine_")
)


@dataclass
class StreamRequest:
    """A checked request, ready to run: the call, its arguments, the prompt's tokens."""

    workload: StreamWorkload
    call: Callable[..., Iterator[dict[str, Any]]]
    kwargs: dict[str, Any]
    #: the chat handler set on the Llama for the call (None: the model's own)
    handler: Any
    n_prompt: int
    info: dict[str, Any] = field(default_factory=dict)


class StreamModel:
    """llama-cpp-python's Llama on the engine model's file and params. Close it."""

    def __init__(
        self,
        path: str,
        params: LoadParams,
        resolved: dict[str, Any],
        *,
        overrides: list[tuple[str, str, int]] | None = None,
        model_name: str = "",
        expected_overridden: int | None = None,
    ) -> None:
        self.path = path
        self.params = params
        #: what the model params point to: must outlive the model
        self._keep: list[Any] = []
        loaded = load_llama(
            path,
            params,
            resolved,
            self._keep,
            overrides=overrides or [],
            expected_overridden=expected_overridden,
        )
        self.llm = loaded.llm
        self.load_ms = loaded.load_ms
        self.overridden = loaded.overridden
        self.not_applied = loaded.not_applied
        self.llm.stamps = []
        self.eog = native.eog_tokens(self.llm._model.vocab, int(self.llm.n_vocab()))
        self._handlers: dict[str, Any] = {}
        tiny = model_name.startswith(TINY_NAME_PREFIX)
        #: a built-in tiny model's random weights pick lone bytes >= 0x80 (invalid UTF-8),
        #: on which llama-cpp-python stops streaming until the end: banned for it, so its
        #: streams are like a real model's (a real model's sampling is left alone)
        self.tiny_bytes_banned = (
            [
                i
                for i in range(int(self.llm.n_vocab()))
                if _HIGH_BYTE_RE.fullmatch(self.llm._model.token_get_text(i) or "")
            ]
            if tiny
            else []
        )
        if self.llm.metadata.get("tokenizer.chat_template"):
            self.template = "the model's (tokenizer.chat_template in its GGUF)"
        elif tiny:
            self.llm.chat_handler = self._jinja(TINY_CHAT_TEMPLATE, "the tiny model's template")
            self.template = (
                "pytest-llmperf's template for its tiny models, given at load (their GGUF has none)"
            )
        else:
            self.template = ""  # chat needs the request's chat_template or chat_format

    # -- requests -------------------------------------------------------------------------
    def _jinja(self, template: str, where: str) -> Any:
        if template in self._handlers:
            return self._handlers[template]
        import jinja2
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        eos, bos = int(self.llm.token_eos()), int(self.llm.token_bos())
        model = self.llm._model
        try:
            handler = Jinja2ChatFormatter(
                template=template,
                eos_token=model.token_get_text(eos) if eos != -1 else "",
                bos_token=model.token_get_text(bos) if bos != -1 else "",
                stop_token_ids=[eos],
            ).to_chat_handler()
        except jinja2.TemplateError as exc:
            raise UsageError(f"{where}: not a valid Jinja chat template: {exc}") from None
        self._handlers[template] = handler
        return handler

    def _handler(self, wl: StreamWorkload) -> tuple[Any, str]:
        """The chat handler of a chat request and where its template comes from."""
        if wl.chat_template:
            return self._jinja(wl.chat_template, f"{wl.name}: chat_template"), "the request's"
        if wl.chat_format:
            from llama_cpp import llama_chat_format as fmt

            try:
                handler = fmt.get_chat_completion_handler(wl.chat_format)
            except fmt.LlamaChatCompletionHandlerNotFoundException:
                known = sorted(fmt.LlamaChatCompletionHandlerRegistry._chat_handlers)
                raise UsageError(
                    f"{wl.name}: chat_format={wl.chat_format!r} is not a format llama-cpp-python "
                    f"knows; accepted: {', '.join(known)} (or give chat_template=)"
                ) from None
            return handler, f"llama-cpp-python's chat format {wl.chat_format!r}"
        if not self.template:
            raise UsageError(
                f"{wl.name}: {self.path} has no chat template (no tokenizer.chat_template in "
                "its GGUF), so chat messages cannot be formatted; pass chat_template='<Jinja "
                "template>' or chat_format='<llama-cpp-python format, e.g. gemma, chatml>' "
                "to measure_stream, or send a text prompt= instead"
            )
        return None, self.template

    def sampling(self, wl: StreamWorkload) -> dict[str, Any]:
        """The request's sampling settings, each a parameter the called method accepts;
        the seed defaults to the workload's."""
        method = self.llm.create_chat_completion if wl.is_chat else self.llm.create_completion
        what = f"Llama.{method.__name__}"
        params = inspect.signature(method).parameters
        accepted = sorted(
            k
            for k, p in params.items()
            if k not in RESERVED
            and k not in UNSUPPORTED
            and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        )
        given = thaw_sampling(wl.sampling)
        for key in given:
            if key not in params:
                raise UsageError(
                    f"{wl.name}: sampling key {key!r} is not a parameter of {what} "
                    f"(llama-cpp-python {llama_lib.version()}); accepted: {', '.join(accepted)}"
                )
            if key in RESERVED:
                raise UsageError(
                    f"{wl.name}: sampling key {key!r} is set by the request: {RESERVED[key]}"
                )
            if key in UNSUPPORTED:
                raise UsageError(
                    f"{wl.name}: sampling key {key!r} changes what is streamed, which a "
                    f"performance measurement does not allow; leave it out (accepted: "
                    f"{', '.join(accepted)})"
                )
            if key not in accepted:  # *args / **kwargs
                raise UsageError(
                    f"{wl.name}: sampling key {key!r}: not a named parameter of {what}; "
                    f"accepted: {', '.join(accepted)}"
                )
        given.setdefault("seed", wl.seed)
        return given

    def prepare(self, wl: StreamWorkload) -> StreamRequest:
        """Check a request and count its prompt's tokens (no decode); every problem is a
        UsageError naming the input and the fix."""
        sampling = self.sampling(wl)
        handler, template = self._handler(wl) if wl.is_chat else (None, "")
        bias: dict[int, float] = {i: float("-inf") for i in self.tiny_bytes_banned}
        bias.update(sampling.pop("logit_bias", None) or {})  # the request's own win
        bias.update({i: float("-inf") for i in self.eog})
        kwargs: dict[str, Any] = {
            **sampling,
            "max_tokens": wl.n_gen,
            "stream": True,
            "logit_bias": bias,
        }
        if wl.is_chat:
            call = self.llm.create_chat_completion
            kwargs["messages"] = wl.message_dicts()
        else:
            call = self.llm.create_completion
            kwargs["prompt"] = wl.prompt
        n_prompt = self._probe(wl, call, kwargs, handler)
        n_ctx = int(self.llm.n_ctx())
        need = n_prompt + wl.n_gen + 1
        if need > n_ctx:
            raise UsageError(
                f"{wl.name}: the prompt is {n_prompt} tokens; with max_tokens={wl.n_gen} the "
                f"request needs {need} KV cells but n_ctx={n_ctx} (llama-cpp-python would "
                f"stop early); raise n_ctx (-c) to at least {need}, or shorten the prompt"
            )
        params = inspect.signature(call).parameters
        effective = {
            k: sampling.get(k, params[k].default if k in params else None)
            for k in RECORDED_SAMPLING
        }
        effective.update({k: v for k, v in sampling.items() if k not in effective})
        info: dict[str, Any] = {
            "api": f"Llama.{call.__name__}(stream=True)",
            "llama_cpp_python": llama_lib.version(),
            "n_prompt": n_prompt,
            "n_gen": wl.n_gen,
            "sampling": effective,
            "eog_banned": list(self.eog),
            **(
                {
                    "tiny_bytes_banned": "lone bytes 0x80-0xFF (invalid UTF-8 from the tiny "
                    f"model's random weights): {len(self.tiny_bytes_banned)} tokens"
                }
                if self.tiny_bytes_banned
                else {}
            ),
            "prompt_sha256": wl.digest(),
            "engine_workload": f"pp{n_prompt}+tg{wl.n_gen}",
        }
        if wl.is_chat:
            info["chat_template"] = template
        return StreamRequest(wl, call, kwargs, handler, n_prompt, info)

    @contextlib.contextmanager
    def _with_handler(self, handler: Any) -> Iterator[None]:
        if handler is None:
            yield
            return
        old = self.llm.chat_handler
        self.llm.chat_handler = handler
        try:
            yield
        finally:
            self.llm.chat_handler = old

    def _probe(
        self, wl: StreamWorkload, call: Callable[..., Any], kwargs: dict[str, Any], handler: Any
    ) -> int:
        """The prompt's tokens as the call makes them: the call runs up to ``generate``."""
        import jinja2

        llm = self.llm
        llm.reset()
        llm.probing = True
        try:
            with self._with_handler(handler):
                next(iter(call(**kwargs)))
        except Probed:
            return int(llm.n_prompt_tokens)
        except ValueError as exc:
            m = re.search(r"Requested tokens \((\d+)\) exceed context window of (\d+)", str(exc))
            if m:
                raise UsageError(
                    f"{wl.name}: the prompt alone is {m.group(1)} tokens, more than n_ctx="
                    f"{m.group(2)}; raise n_ctx (-c) to at least "
                    f"{int(m.group(1)) + wl.n_gen + 1}, or shorten the prompt"
                ) from None
            raise UsageError(f"{wl.name}: llama-cpp-python refused the request: {exc}") from None
        except jinja2.TemplateError as exc:
            raise UsageError(
                f"{wl.name}: the chat template failed on these messages: {exc}"
            ) from None
        finally:
            llm.probing = False
        raise BackendError(f"{wl.name}: the stream produced a chunk before generating")

    # -- runs -----------------------------------------------------------------------------
    def run_once(self, request: StreamRequest) -> Sample:
        """One streamed request, timed from the call; raises when it did not stream exactly
        the requested number of tokens."""
        wl, llm = request.workload, self.llm
        llm.reset()  # no prefix reuse from the previous repetition
        native.perf_reset(llm.ctx)
        stamps: list[int] = []
        llm.stamps = stamps
        chunk_ns: list[int] = []
        chunk_chars: list[int] = []
        finish: str | None = None
        chat = wl.is_chat
        now = time.perf_counter_ns
        with self._with_handler(request.handler):
            t0 = now()
            for chunk in request.call(**request.kwargs):
                t = now()
                choice = chunk["choices"][0]
                text = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                if choice.get("finish_reason") is not None:
                    finish = choice["finish_reason"]
                    if not text:
                        continue  # the finish chunk carries no text by design
                if text is None:
                    continue  # the chat role chunk
                chunk_ns.append(t - t0)
                chunk_chars.append(len(text))
            end = now() - t0
        # more than max_tokens is llama-cpp-python's own doing: a character split across
        # tokens at the limit is completed first (its stream loop skips the length check
        # while it waits for the character's last byte); counted and kept as it is
        if len(stamps) < wl.n_gen or finish != "length":
            raise UsageError(
                f"{wl.name}: the stream ended after {len(stamps)} of {wl.n_gen} tokens "
                f"(finish_reason {finish!r}): a stop string matched the generated text (the "
                "request's stop=, or the chat format's own end marker); a measurement needs "
                "exact token counts: leave stop out, or use a chat template whose end marker "
                "is a special token"
            )
        return Sample(
            n_prompt=request.n_prompt,
            n_gen=len(stamps),
            n_depth=0,
            prompt_ns=None,
            token_ns=[s - t0 for s in stamps],
            end_ns=end,
            llama=native.perf_counters(llm.ctx),
            stream=True,
            chunk_ns=chunk_ns,
            chunk_chars=chunk_chars,
        )

    def measure(
        self,
        request: StreamRequest,
        repetitions: int,
        warmup: int,
        engine: Callable[[], Sample],
    ) -> list[Sample]:
        """``warmup`` untimed runs, then ``repetitions`` timed ones; after each streamed
        run, ``engine`` runs the same token counts through the engine (interleaved, so a
        drifting machine moves both alike), kept in ``Sample.engine``."""
        if repetitions < 1:
            raise UsageError(f"repetitions={repetitions}: must be >= 1")
        for _ in range(max(warmup, 0)):
            self.run_once(request)
            engine()
        samples: list[Sample] = []
        for _ in range(repetitions):
            before = devices.cpu_snapshot()
            sample = self.run_once(request)
            sample.contention = devices.contention(before, devices.cpu_snapshot())
            beside = engine()
            sample.engine = {k: v for k, v in beside.metrics().items() if k in ENGINE_METRICS}
            for key, value in beside.contention.items():
                sample.contention[key] = max(value, sample.contention.get(key, 0.0))
            samples.append(sample)
        return samples

    @staticmethod
    def overrun(wl: StreamWorkload, samples: list[Sample]) -> str:
        """A note when the stream sampled more tokens than requested (else "")."""
        extra = sorted({s.n_gen - wl.n_gen for s in samples if s.n_gen > wl.n_gen})
        if not extra:
            return ""
        return (
            f"llama-cpp-python sampled {'/'.join(map(str, extra))} token(s) past max_tokens="
            f"{wl.n_gen} to complete a character split across tokens; the stream metrics "
            "count the tokens it sampled"
        )

    def describe(self) -> dict[str, Any]:
        """What resolved["stream"] says of the Llama itself."""
        out: dict[str, Any] = {
            "load": "llama-cpp-python's Llama: a second load of the model file in this "
            "process, beside the engine's model",
            "load_ms": self.load_ms,
            "overridden_tensors": self.overridden,
            "gc": "enabled during streamed runs, as in an application",
        }
        if self.not_applied:
            out["not_applied"] = dict(self.not_applied)
        return out

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None
        self._keep.clear()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass
