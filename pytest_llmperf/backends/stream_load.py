"""llama-cpp-python's ``Llama`` for the streaming path, loaded the way the engine loaded its model.

- ``Llama(...)``'s keyword arguments are the :class:`~pytest_llmperf.backends.protocol.Keyword`
  entries of the streaming path's knob table (:data:`~pytest_llmperf.backends.protocol.STREAM`),
  with the values the engine uses (:mod:`~pytest_llmperf.backends.llama_values`); flash
  attention is the engine's resolved on or off;
- what ``Llama`` has no argument for goes into llama.cpp's default model params while it
  loads: the table's model params fields (repack, no_host) and the engine's tensor
  overrides (its patterns and buffer types; llama.cpp's log must then show as many tensors
  overridden as the engine's load did);
- the knobs ``Llama`` cannot take, set away from their defaults, are listed with why
  (``not_applied``), never dropped without a word.

The ``Llama`` is a subclass that notes the time of each sampled token (and can stop at
``generate``, to count a prompt's tokens without decoding).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pytest_llmperf.backends.protocol import STREAM, Keyword, StructField
from pytest_llmperf.errors import BackendError
from pytest_llmperf.model.params import KNOBS, LoadParams
from pytest_llmperf.native import llama_lib, llama_log
from pytest_llmperf.native import model as native


class Probed(Exception):
    """The probe reached ``generate``: the prompt's tokens are counted, nothing decoded."""


_LLAMA_CLASS: Any = None


def llama_class() -> Any:
    """``llama_cpp.Llama`` noting the time of each sampled token and the prompt's length
    (and stopping at ``generate`` while probing). Nothing else changes."""
    global _LLAMA_CLASS
    if _LLAMA_CLASS is None:
        llama_lib.load()  # our log callback and backend first
        from llama_cpp import Llama

        class TimedLlama(Llama):
            stamps: list[int]
            probing: bool = False
            n_prompt_tokens: int = 0

            def sample(self, *args: Any, **kwargs: Any) -> Any:
                token = super().sample(*args, **kwargs)
                self.stamps.append(time.perf_counter_ns())
                return token

            def generate(self, tokens: Any, *args: Any, **kwargs: Any) -> Any:
                self.n_prompt_tokens = len(tokens)
                if self.probing:
                    raise Probed
                return super().generate(tokens, *args, **kwargs)

        _LLAMA_CLASS = TimedLlama
    return _LLAMA_CLASS


def _wanted(params: LoadParams, name: str, only_when_set: bool) -> bool:
    return not only_when_set or KNOBS[name].shown(getattr(params, name))


def llama_kwargs(
    params: LoadParams, resolved: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """``Llama(...)`` keyword arguments for ``params`` (the table's keywords; flash
    attention as the engine resolved it), and the knobs Llama cannot take, with why.
    Tensor overrides, repack and no_host go through the model params instead
    (:func:`model_params_fields`)."""
    kwargs: dict[str, Any] = {
        e.keyword: e.value(params)
        for name, e in STREAM.entries(Keyword).items()
        if _wanted(params, name, e.only_when_set)
    }
    fa = str(resolved.get("flash_attn", params.flash_attn))
    kwargs["flash_attn"] = fa == "on"
    kwargs["verbose"] = False
    not_applied = STREAM.not_applied(params)
    if fa not in ("on", "off"):
        not_applied["flash_attn"] = (
            f"llama.cpp's choice for {fa!r} is not known; Llama takes on or off: off"
        )
    return kwargs, not_applied


def model_params_fields(
    params: LoadParams, overrides: list[tuple[str, str, int]], keep: list[Any]
) -> dict[str, Any]:
    """The model params fields Llama's constructor has no argument for: the engine's
    tensor overrides (pattern, buffer type name, buffer type) and the table's fields."""
    fields: dict[str, Any] = {}
    if overrides:
        fields["tensor_buft_overrides"] = native.override_array(
            [(pattern, buft) for pattern, _name, buft in overrides], keep
        )
    for name, e in STREAM.entries(StructField).items():
        if _wanted(params, name, e.only_when_set):
            fields[e.field] = e.value(params)
    return fields


@dataclass
class LlamaLoad:
    """A loaded ``Llama`` and what its load said."""

    llm: Any
    load_ms: float
    #: how many tensors llama.cpp's log shows overridden
    overridden: int
    not_applied: dict[str, str] = field(default_factory=dict)


def load_llama(
    path: str,
    params: LoadParams,
    resolved: dict[str, Any],
    keep: list[Any],
    *,
    overrides: list[tuple[str, str, int]],
    expected_overridden: int | None,
) -> LlamaLoad:
    """Load ``Llama`` on ``path`` with ``params`` as the engine resolved them (``keep``
    holds what the model params point to); the overridden tensors must number
    ``expected_overridden`` (the engine's), when given."""
    kwargs, not_applied = llama_kwargs(params, resolved)
    cls = llama_class()
    fields = model_params_fields(params, overrides, keep)
    with llama_lib.captured_log() as lines:
        try:
            with native.default_model_params_with(fields) as skipped:
                t0 = time.perf_counter_ns()
                llm = cls(path, **kwargs)
                t1 = time.perf_counter_ns()
        except (ValueError, RuntimeError) as exc:
            tail = "\n  ".join([ln for ln in lines if ln.strip()][-8:])
            raise BackendError(
                f"llama-cpp-python's Llama could not load {path} for streaming "
                f"({params.to_args() or 'default params'}): {exc}"
                + (f"; llama.cpp said:\n  {tail}" if tail else "")
            ) from None
    not_applied.update(skipped)
    overridden = len(llama_log.overridden_tensors(lines))
    if expected_overridden is not None and overridden != expected_overridden:
        llm.close()
        raise BackendError(
            f"tensor override check failed for the streaming load of {path}: llama.cpp's "
            f"log shows {overridden} tensors overridden, the engine's load "
            f"{expected_overridden}"
        )
    return LlamaLoad(llm, (t1 - t0) / 1e6, overridden, not_applied)
