"""llama.cpp's model and context as the backends use them: every struct and every call.

- the enum tables that turn knob values into llama.cpp's numbers (:data:`GGML_TYPES`,
  :data:`FLASH_ATTN_TYPES`, :data:`SPLIT_MODES`, :data:`LOAD_MODES`);
- the params structs (:func:`model_params`, :func:`context_params`) and the one setter
  that refuses a field the struct does not declare (:func:`set_fields`); a field an older
  release has under another name (``load_mode`` was ``use_mmap`` and ``use_mlock`` before
  0.3.35, ``flash_attn_type`` was the on/off ``flash_attn`` before 0.3.17) is set
  through that name (:func:`field_problem` says what a release cannot take);
- the arrays those structs point to: tensor buffer type overrides, devices, tensor split
  (each kept alive in the caller's ``keep`` list as long as the model);
- load and free, the context's sizes, its memory, llama.cpp's perf counters, the
  vocabulary, llama.cpp's greedy sampler;
- :class:`TokenLoop`: the functions the engine's timed loop calls, bound once, so the
  loop calls llama.cpp with no Python layer between.

Handles (model, context, sampler) are the integers llama-cpp-python's bindings return.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from pytest_llmperf.errors import BackendError
from pytest_llmperf.native import llama_lib

#: ggml's type numbers of the KV cache types (enum ggml_type)
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
#: llama_context_params.flash_attn_type
FLASH_ATTN_TYPES: dict[str, int] = {"auto": -1, "off": 0, "on": 1}
#: llama_model_params.split_mode
SPLIT_MODES: dict[str, int] = {"none": 0, "layer": 1, "row": 2, "tensor": 3}
#: llama_model_params.load_mode
LOAD_MODES: dict[str, int] = {"auto": -1, "none": 0, "mmap": 1, "mlock": 2, "mmap+mlock": 3}
#: n_gpu_layers of every layer
ALL_LAYERS = 0x7FFFFFFF


class BuftOverride(ctypes.Structure):
    """``struct llama_model_tensor_buft_override``: a pattern and a buffer type."""

    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


# -- params structs -------------------------------------------------------------------------


def declared_fields(struct: Any) -> set[str]:
    """The fields a ctypes struct declares."""
    return {f[0] for f in type(struct)._fields_}


def _load_mode_fields(mode: int) -> dict[str, Any]:
    """``load_mode`` (:data:`LOAD_MODES`) as the fields of releases before 0.3.35."""
    return {"use_mmap": mode in (-1, 1, 3), "use_mlock": mode in (2, 3)}


def _flash_attn_fields(fa_type: int) -> dict[str, Any]:
    """``flash_attn_type`` (:data:`FLASH_ATTN_TYPES`) as the on/off field of releases
    before 0.3.17 (which have no auto)."""
    if fa_type not in (0, 1):
        raise ValueError("its flash_attn is on or off: it has no auto")
    return {"flash_attn": fa_type == 1}


#: fields an older release has under other names: (struct, newer field) -> (the older
#: fields, the newer field's value turned into them; ValueError: a value it cannot take)
OLDER_FIELDS: dict[tuple[str, str], tuple[tuple[str, ...], Any]] = {
    ("llama_model_params", "load_mode"): (("use_mmap", "use_mlock"), _load_mode_fields),
    ("llama_context_params", "flash_attn_type"): (("flash_attn",), _flash_attn_fields),
}


def _older(struct: Any, name: str) -> Any:
    """The function turning ``name``'s value into the older fields this struct declares
    instead, or None."""
    older = OLDER_FIELDS.get((type(struct).__name__, name))
    if older is None or not set(older[0]) <= declared_fields(struct):
        return None
    return older[1]


def field_problem(struct: Any, name: str, value: Any) -> str:
    """Why this llama-cpp-python's ``struct`` cannot take ``name = value`` ("" when it
    can: the field is declared, or is an older one's newer name and the value has an
    older form)."""
    if name in declared_fields(struct):
        return ""
    where = f"llama-cpp-python {llama_lib.version()}'s {type(struct).__name__}"
    convert = _older(struct, name)
    if convert is None:
        return f"{where} has no field {name!r}"
    try:
        convert(value)
    except ValueError as exc:
        older = ", ".join(OLDER_FIELDS[(type(struct).__name__, name)][0])
        return f"{where} has {older} instead of {name}, and {exc}"
    return ""


def set_fields(struct: Any, **fields: Any) -> None:
    """Set fields of a ctypes struct, refusing a name the struct does not declare (ctypes
    would silently add a Python attribute that llama.cpp never sees) unless this release
    has it under older names (:data:`OLDER_FIELDS`)."""
    declared = declared_fields(struct)
    for name, value in fields.items():
        if name in declared:
            setattr(struct, name, value)
            continue
        why = field_problem(struct, name, value)
        if why:
            raise BackendError(f"{why}: the knob cannot be applied by this release")
        for older, v in _older(struct, name)(value).items():
            setattr(struct, older, v)


def model_params() -> Any:
    """llama.cpp's default ``llama_model_params``."""
    return llama_lib.load().llama_model_default_params()


def context_params() -> Any:
    """llama.cpp's default ``llama_context_params``."""
    return llama_lib.load().llama_context_default_params()


@contextlib.contextmanager
def default_model_params_with(fields: Mapping[str, Any]) -> Iterator[dict[str, str]]:
    """While the block runs, llama.cpp's default model params (as llama-cpp-python's
    ``Llama`` asks for them) carry ``fields``: what ``Llama``'s constructor has no
    argument for. Yields the fields this llama-cpp-python's struct lacks, with why
    (filled when ``Llama`` asks)."""
    lc = llama_lib.load()
    original = lc.llama_model_default_params
    skipped: dict[str, str] = {}

    def patched() -> Any:
        mparams = original()
        declared = declared_fields(mparams)
        for name, value in fields.items():
            if name in declared:
                setattr(mparams, name, value)
            else:
                skipped[name] = "this llama-cpp-python's model params have no such field"
        return mparams

    lc.llama_model_default_params = patched
    try:
        yield skipped
    finally:
        lc.llama_model_default_params = original


# -- arrays the params point to ---------------------------------------------------------------


def override_array(overrides: Sequence[tuple[str, int]], keep: list[Any]) -> ctypes.c_void_p:
    """``tensor_buft_overrides``: a NULL-terminated array of (pattern, buffer type); the
    array and its strings go into ``keep`` (they must outlive the model)."""
    arr = (BuftOverride * (len(overrides) + 1))()
    for i, (pattern, buft) in enumerate(overrides):
        raw = pattern.encode()
        keep.append(raw)
        arr[i].pattern = raw
        arr[i].buft = buft
    arr[len(overrides)].pattern = None
    arr[len(overrides)].buft = None
    keep.append(arr)
    return ctypes.cast(arr, ctypes.c_void_p)


def device_array(handles: Sequence[Any], keep: list[Any]) -> ctypes.c_void_p:
    """``devices``: a NULL-terminated array of ggml device handles (kept in ``keep``)."""
    arr = (ctypes.c_void_p * (len(handles) + 1))(*handles, None)
    keep.append(arr)
    return ctypes.cast(arr, ctypes.c_void_p)


def tensor_split_array(proportions: Sequence[float], keep: list[Any]) -> Any:
    """``tensor_split``: llama_max_devices() floats, the first ones ``proportions`` (the
    array is kept in ``keep``)."""
    split = (ctypes.c_float * llama_lib.max_devices())()
    for i, v in enumerate(proportions[: len(split)]):
        split[i] = float(v)
    keep.append(split)
    return ctypes.cast(split, ctypes.POINTER(ctypes.c_float))


# -- model and context ------------------------------------------------------------------------


def load_model(path: str, mparams: Any) -> int | None:
    """llama_model_load_from_file; None when it failed (llama.cpp's log says why)."""
    model = llama_lib.load().llama_model_load_from_file(path.encode(), mparams)
    return int(model) if model else None


def init_context(model: int, cparams: Any) -> int | None:
    """llama_init_from_model; None when it failed (llama.cpp's log says why)."""
    ctx = llama_lib.load().llama_init_from_model(model, cparams)
    return int(ctx) if ctx else None


def free_context(ctx: int) -> None:
    llama_lib.load().llama_free(ctx)


def free_model(model: int) -> None:
    llama_lib.load().llama_model_free(model)


def n_ctx(ctx: int) -> int:
    return int(llama_lib.load().llama_n_ctx(ctx))


def n_ubatch(ctx: int) -> int:
    return int(llama_lib.load().llama_n_ubatch(ctx))


def n_params(model: int) -> int:
    return int(llama_lib.load().llama_model_n_params(model))


def vocab(model: int) -> tuple[int, int]:
    """The model's vocabulary size and its BOS token (-1: none)."""
    lc = llama_lib.load()
    v = lc.llama_model_get_vocab(model)
    return int(lc.llama_vocab_n_tokens(v)), int(lc.llama_vocab_bos(v))


def eog_tokens(vocab_handle: Any, n_vocab: int) -> list[int]:
    """Every end-of-generation token of a vocabulary (``llama_vocab``)."""
    lc = llama_lib.load()
    return [i for i in range(n_vocab) if lc.llama_vocab_is_eog(vocab_handle, i)]


def memory_clear(ctx: int) -> None:
    """Empty the context's memory (the KV cache), data included."""
    lc = llama_lib.load()
    lc.llama_memory_clear(lc.llama_get_memory(ctx), True)


def memory_keep(ctx: int, n_tokens: int) -> bool:
    """Remove every position from ``n_tokens`` on (sequence 0), keeping the prefix before
    it; False where this memory cannot cut a sequence (a recurrent model's state)."""
    lc = llama_lib.load()
    return bool(lc.llama_memory_seq_rm(lc.llama_get_memory(ctx), 0, n_tokens, -1))


def synchronize(ctx: int) -> None:
    llama_lib.load().llama_synchronize(ctx)


def perf_reset(ctx: int) -> None:
    """Reset llama.cpp's perf counters of the context."""
    llama_lib.load().llama_perf_context_reset(ctx)


def perf_counters(ctx: int) -> dict[str, float]:
    """llama.cpp's perf counters of the context since the last reset."""
    perf = llama_lib.load().llama_perf_context(ctx)
    return {
        "n_p_eval": float(perf.n_p_eval),
        "t_p_eval_ms": float(perf.t_p_eval_ms),
        "n_eval": float(perf.n_eval),
        "t_eval_ms": float(perf.t_eval_ms),
    }


def greedy_sampler() -> Any:
    """llama.cpp's sampler chain of one greedy sampler; free it with :func:`sampler_free`."""
    lc = llama_lib.load()
    chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
    lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_greedy())
    return chain


def sampler_reset(sampler: Any) -> None:
    llama_lib.load().llama_sampler_reset(sampler)


def sampler_free(sampler: Any) -> None:
    llama_lib.load().llama_sampler_free(sampler)


# -- the timed loop's calls ---------------------------------------------------------------------


class TokenLoop:
    """The llama.cpp functions of the engine's timed loop, bound once: the loop calls
    ``decode``, ``logits_ith``, ``synchronize`` and ``sample`` directly, and reuses one
    single-token batch (``token``, ``token_batch``)."""

    def __init__(self) -> None:
        lc = llama_lib.load()
        lib = lc._lib
        self.decode: Any = lib.llama_decode
        self.logits_ith: Any = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32)(
            ("llama_get_logits_ith", lib)
        )
        self.synchronize: Any = lc.llama_synchronize
        self.sample: Any = lc.llama_sampler_sample
        self._batch_get_one: Any = lc.llama_batch_get_one
        self.token: Any = (ctypes.c_int32 * 1)()
        self.token_batch: Any = lc.llama_batch_get_one(self.token, 1)

    @staticmethod
    def tokens(ids: np.ndarray[Any, np.dtype[np.int32]]) -> Any:
        """A token array llama.cpp can read, holding ``ids`` (at least one slot)."""
        arr = (ctypes.c_int32 * max(len(ids), 1))()
        ctypes.memmove(arr, ids.ctypes.data, 4 * len(ids))
        return arr

    def decode_tokens(self, ctx: int, tokens: Any, n: int, step: int) -> None:
        """Decode ``n`` tokens of the array ``tokens`` in chunks of ``step`` (n_batch)."""
        decode, get_one = self.decode, self._batch_get_one
        base = ctypes.addressof(tokens)
        for off in range(0, n, step):
            cnt = min(step, n - off)
            ptr = ctypes.cast(base + 4 * off, ctypes.POINTER(ctypes.c_int32))
            rc = decode(ctx, get_one(ptr, cnt))
            if rc != 0:
                raise BackendError(f"llama_decode failed with code {rc} (prompt chunk at {off})")

    @staticmethod
    def logits(addr: int, n_vocab: int) -> np.ndarray[Any, np.dtype[np.float32]]:
        """A zero-copy view of the ``n_vocab`` logits at ``addr`` (llama.cpp's buffer)."""
        return np.ctypeslib.as_array((ctypes.c_float * n_vocab).from_address(addr))
