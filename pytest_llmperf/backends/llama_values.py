"""Each load knob's value as llama.cpp takes it, computed in one place.

One function per converted value (``LoadParams`` -> the number or flag llama.cpp's struct
field, or llama-cpp-python's keyword, wants). The knob tables of
:mod:`pytest_llmperf.backends.protocol` name these functions: the engine sets its struct
fields and the streaming path its ``Llama(...)`` keywords from the same ones, so the two
never convert a knob apart.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from pytest_llmperf.machine import devices
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.native.model import (
    ALL_LAYERS,
    FLASH_ATTN_TYPES,
    GGML_TYPES,
    LOAD_MODES,
    SPLIT_MODES,
)

#: a function of the load params giving the value a backend passes on
Value = Callable[[LoadParams], Any]


def param(name: str) -> Value:
    """The knob's own value, unconverted."""
    getter: Value = operator.attrgetter(name)
    return getter


def n_threads(p: LoadParams) -> int:
    """Decode threads: the physical cores when unset."""
    return p.n_threads or devices.default_threads()


def n_threads_batch(p: LoadParams) -> int:
    """Prompt threads: n_threads when unset."""
    return p.n_threads_batch or n_threads(p)


def n_ubatch(p: LoadParams) -> int:
    """The micro-batch: n_ubatch, or min(512, n_batch)."""
    return p.ubatch


def n_gpu_layers(p: LoadParams) -> int:
    """Offloaded layers; -1 is every layer."""
    return ALL_LAYERS if p.n_gpu_layers < 0 else p.n_gpu_layers


def flash_attn_type(p: LoadParams) -> int:
    return FLASH_ATTN_TYPES[p.flash_attn]


def type_k(p: LoadParams) -> int:
    return GGML_TYPES[p.type_k]


def type_v(p: LoadParams) -> int:
    return GGML_TYPES[p.type_v]


def load_mode(p: LoadParams) -> int:
    """use_mmap / use_mlock as llama.cpp's load mode (its default, auto, maps the file)."""
    if p.use_mlock:
        return LOAD_MODES["mmap+mlock" if p.use_mmap else "mlock"]
    return LOAD_MODES["auto" if p.use_mmap else "none"]


def split_mode(p: LoadParams) -> int:
    return SPLIT_MODES[p.split_mode]


def offload_kqv(p: LoadParams) -> bool:
    return not p.no_kv_offload


def op_offload(p: LoadParams) -> bool:
    return not p.no_op_offload


def tensor_split(p: LoadParams) -> list[float]:
    """The proportion of the model on each GPU (``3/1`` -> [3.0, 1.0])."""
    return [float(v) for v in p.tensor_split.split("/")] if p.tensor_split else []


def mask_cpus(p: LoadParams) -> list[int]:
    """The CPUs of the hexadecimal cpu_mask (``0x5`` -> [0, 2]); none for no mask."""
    if not p.cpu_mask:
        return []
    bits = int(p.cpu_mask, 16)
    return [i for i in range(bits.bit_length()) if bits >> i & 1]
