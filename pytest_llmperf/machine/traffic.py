"""What a token costs the machine, from the model file's tensor table: the bytes a
generated token reads (decode is bound by memory bandwidth) and the floating-point
operations a prompt token needs (prompt processing is bound by compute).

**Bytes per generated token** (:func:`decode_traffic`), each tensor of the GGUF table at
its size in the file (quantization blocks included):

- every weight tensor whole (the output projection included), except
- the token embedding (and position or per-layer embeddings): a lookup reads one row per
  token, ``bytes / rows``; a model without ``output.weight`` uses the token embedding as
  its output projection (tied), which then reads it whole, on the output layer's side;
- the expert tensors of a mixture of experts (``ffn_{gate,up,down,gate_up}_exps``, their
  biases too): a token reads ``n_expert_used / n_expert`` of them (``{arch}.expert_used_count``
  and ``{arch}.expert_count``), the shared tensors (router, shared experts) whole;
- the KV cache: per layer, the K and V rows of every cached position its attention reads
  (``n_head_kv x head_dim`` elements each, at the cache types' sizes: ``q8_0`` is 34 bytes
  per 32 elements), at most the window on a sliding-window layer. A workload's decode
  reads a growing cache: the figure is the mean over its timed tokens
  (:func:`decode_lengths`).

**Where they live** (:class:`Placement`): llama.cpp puts the token embedding on the host,
layer ``il`` (0..n_layer-1, the output layer is n_layer) on the GPU when the build offloads
and ``il >= n_layer + 1 - n_gpu_layers``, a layer's KV cache beside it unless
``no_kv_offload``; tensor overrides (``-ot PATTERN=BUFT``, then cpu-moe's and n-cpu-moe's
expert patterns, the first match wins) move the matching weights to the buffer type named.
On a build without a GPU everything is host memory.

**FLOPs per prompt token** (:func:`prompt_flops`): ``2 x`` the weights every token
multiplies (each layer's matrices, experts at ``n_expert_used / n_expert``), the output
projection once per batch of ``n_batch`` tokens (llama.cpp computes logits for the last
token only), and attention's two products over the positions each token attends to.

A figure that cannot be computed honestly (a tensor type the gguf package does not know,
a recurrent or MLA cache, a sliding window whose layers the file does not state) raises
:class:`Unknown` with the reason; nothing here guesses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pytest_llmperf.machine.gguf_info import EXPERT_TENSOR_RE, TensorEntry, TensorTable
from pytest_llmperf.model.params import LoadParams

Side = Literal["host", "gpu"]

_LAYER_RE = re.compile(r"^blk\.(\d+)\.")
#: tensors read one row per token (lookups), not whole
_LOOKUP_RE = re.compile(r"^(token_embd|position_embd|token_types|per_layer_token_embd)\.weight$")
_OUTPUT_RE = re.compile(r"^output(_norm)?\.")
#: llama.cpp's sliding-window layer pattern of architectures whose files do not state it
#: (``hparams.set_swa_pattern(n)``: layer il slides unless il % n == n - 1)
SWA_PATTERNS: dict[str, int] = {"gemma2": 2, "gemma3": 6, "cohere2": 4, "gpt-oss": 2}


class Unknown(Exception):
    """A figure this module cannot compute honestly; the message says why."""


# -- the model's attention, from its metadata ---------------------------------------------


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _per_layer(table: TensorTable, key: str, n_layer: int, default: int | None) -> tuple[int, ...]:
    value = table.arch_value(key)
    if isinstance(value, tuple):
        if len(value) != n_layer or not all(isinstance(v, int) for v in value):
            raise Unknown(f"{table.arch}.{key} is not one integer per layer")
        return tuple(int(v) for v in value)
    n = _int(value)
    if n is None:
        n = default
    if n is None:
        raise Unknown(f"the model file has no {table.arch}.{key}")
    return (n,) * n_layer


@dataclass(frozen=True)
class Attention:
    """Per-layer attention shapes: what the KV cache and attention's products need."""

    n_layer: int
    n_head: tuple[int, ...]
    n_head_kv: tuple[int, ...]
    head_dim_k: int
    head_dim_v: int
    #: the sliding window (0: none) and which layers slide
    window: int
    swa: tuple[bool, ...]

    @classmethod
    def of(cls, table: TensorTable) -> Attention:
        arch = table.arch
        for key in table.metadata:
            if key.startswith(f"{arch}.ssm.") or key.startswith(f"{arch}.wkv."):
                raise Unknown(f"{arch} has recurrent layers ({key}): their state is not modelled")
        if table.arch_value("attention.kv_lora_rank") is not None:
            raise Unknown(f"{arch} caches a compressed latent (MLA): not modelled")
        n_layer = _int(table.arch_value("block_count"))
        n_embd = _int(table.arch_value("embedding_length"))
        if not n_layer:
            raise Unknown(f"the model file has no {arch}.block_count")
        n_head = _per_layer(table, "attention.head_count", n_layer, None)
        n_head_kv = (
            _per_layer(table, "attention.head_count_kv", n_layer, None)
            if (table.arch_value("attention.head_count_kv") is not None)
            else n_head
        )
        default_dim = n_embd // n_head[0] if n_embd and n_head[0] else None
        dim_k = _int(table.arch_value("attention.key_length")) or default_dim
        dim_v = _int(table.arch_value("attention.value_length")) or default_dim
        if not dim_k or not dim_v:
            raise Unknown(f"the model file states no head size ({arch}.attention.key_length)")
        window = _int(table.arch_value("attention.sliding_window")) or 0
        swa = (False,) * n_layer
        if window:
            pattern = table.arch_value("attention.sliding_window_pattern")
            if isinstance(pattern, tuple) and len(pattern) == n_layer:
                swa = tuple(bool(x) for x in pattern)
            else:
                n = _int(pattern) or SWA_PATTERNS.get(arch)
                if n is None:
                    swa = (True,) * n_layer  # checked where the window matters: _swa_known
                    window = -window
                else:
                    swa = tuple(n == 0 or il % n < n - 1 for il in range(n_layer))
        return cls(n_layer, n_head, n_head_kv, dim_k, dim_v, window, swa)

    def read_positions(self, il: int, length: int) -> int:
        """The cache positions layer ``il`` attends to at a cache of ``length``."""
        if self.window < 0 and length > -self.window:
            raise Unknown(
                f"a sliding window of {-self.window} positions whose layers the model file "
                f"does not state, at a cache of {length} positions"
            )
        if self.window > 0 and self.swa[il]:
            return min(length, self.window)
        return length


# -- sizes of cache types -----------------------------------------------------------------


def row_bytes(type_name: str, n_elements: int) -> int:
    """Bytes of ``n_elements`` in ggml type ``type_name`` (``"q8_0"``: 34 bytes a block of
    32), as ggml's ``ggml_row_size``."""
    import gguf

    try:
        block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[type_name.upper()]]
    except KeyError:
        raise Unknown(f"cache type {type_name!r} is not a ggml type this gguf knows") from None
    if n_elements % block:
        raise Unknown(f"{n_elements} elements are not whole {type_name} blocks of {block}")
    return n_elements // block * size


# -- where tensors live -------------------------------------------------------------------


def host_buffer(name: str) -> bool:
    """A buffer type in host memory (CPU, CPU_REPACK, CUDA_Host: pinned host memory)."""
    upper = name.upper()
    return upper.startswith("CPU") or upper.endswith("_HOST")


@dataclass(frozen=True)
class Placement:
    """Where llama.cpp puts each layer's weights and KV cache, from the load params and
    whether the build offloads to a GPU (a CPU build puts everything on the host)."""

    n_layer: int
    offload: bool
    n_gpu_layers: int
    kv_offload: bool
    #: (pattern, host?) of every tensor override, in llama.cpp's order
    overrides: tuple[tuple[re.Pattern[str], bool], ...] = ()

    @classmethod
    def of(cls, params: LoadParams, n_layer: int, *, offload: bool) -> Placement:
        overrides: list[tuple[re.Pattern[str], bool]] = []
        for part in filter(None, params.override_tensor.split(";")):
            pattern, _sep, buft = part.rpartition("=")
            overrides.append((re.compile(pattern), host_buffer(buft)))
        expert = EXPERT_TENSOR_RE.pattern
        if params.cpu_moe:
            overrides.append((re.compile(expert), True))
        for il in range(params.n_cpu_moe):
            overrides.append((re.compile(rf"blk\.{il}{expert}"), True))
        ngl = n_layer + 1 if params.n_gpu_layers < 0 else min(params.n_gpu_layers, n_layer + 1)
        return cls(n_layer, offload, ngl, not params.no_kv_offload, tuple(overrides))

    def layer_side(self, il: int) -> Side:
        """Layer ``il``'s device (``n_layer`` is the output layer)."""
        gpu = self.offload and self.n_gpu_layers > 0 and il >= self.n_layer + 1 - self.n_gpu_layers
        return "gpu" if gpu else "host"

    def tensor_side(self, name: str) -> Side:
        if not self.offload:
            return "host"
        for pattern, host in self.overrides:
            if pattern.search(name):
                return "host" if host else "gpu"
        m = _LAYER_RE.match(name)
        if m:
            return self.layer_side(int(m.group(1)))
        if _OUTPUT_RE.match(name):
            return self.layer_side(self.n_layer)
        return "host"  # the input layer: llama.cpp keeps it on the CPU

    def kv_side(self, il: int) -> Side:
        return self.layer_side(il) if self.kv_offload else "host"


# -- bytes per generated token ------------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    """The bytes one generated token reads, by where they live (a mean over the timed
    tokens, so not always whole bytes)."""

    weights_host: float
    weights_gpu: float
    kv_host: float
    kv_gpu: float
    #: the mean cache positions a token's attention reads (before any sliding window)
    kv_positions: float

    @property
    def host(self) -> float:
        return self.weights_host + self.kv_host

    @property
    def gpu(self) -> float:
        return self.weights_gpu + self.kv_gpu

    @property
    def total(self) -> float:
        return self.host + self.gpu

    def to_dict(self) -> dict[str, float]:
        return {
            "weights_host": self.weights_host,
            "weights_gpu": self.weights_gpu,
            "kv_host": self.kv_host,
            "kv_gpu": self.kv_gpu,
            "kv_positions": self.kv_positions,
        }


def _experts(table: TensorTable) -> tuple[int, int]:
    """(n_expert_used, n_expert) of a mixture of experts; (1, 1) for a dense model."""
    if not any(EXPERT_TENSOR_RE.search(t.name) for t in table.tensors):
        return 1, 1
    used = _int(table.arch_value("expert_used_count"))
    total = _int(table.arch_value("expert_count"))
    if not used or not total or used > total:
        raise Unknown(
            f"expert tensors, but no usable {table.arch}.expert_used_count / expert_count "
            f"({used} of {total})"
        )
    return used, total


def _sized(table: TensorTable) -> list[tuple[TensorEntry, int]]:
    out = []
    for t in table.tensors:
        if t.n_bytes is None:
            raise Unknown(f"tensor {t.name}: ggml type {t.type_name} is unknown to this gguf")
        out.append((t, t.n_bytes))
    return out


def weight_bytes(table: TensorTable, placement: Placement) -> dict[Side, float]:
    """The weight bytes one generated token reads, host and GPU."""
    used, n_expert = _experts(table)
    tied = not any(t.name == "output.weight" for t in table.tensors)
    out: dict[Side, float] = {"host": 0.0, "gpu": 0.0}
    for t, size in _sized(table):
        side = placement.tensor_side(t.name)
        if _LOOKUP_RE.match(t.name):
            if tied and t.name == "token_embd.weight":
                out_side = placement.layer_side(placement.n_layer)
                out[out_side] += size  # the output projection reads it whole
                if out_side == "host":
                    continue  # the lookup's row is part of what was read
            out[side] += size / max(t.rows, 1)
        elif EXPERT_TENSOR_RE.search(t.name):
            out[side] += size * used / n_expert
        else:
            out[side] += size
    return out


def kv_bytes(
    table: TensorTable,
    type_k: str,
    type_v: str,
    lengths: Sequence[int],
    placement: Placement | None = None,
) -> dict[Side, float]:
    """The KV cache bytes one token reads, host and GPU: per layer, the K and V rows of
    the positions it attends to at a cache of each of ``lengths`` positions (the mean over
    them)."""
    att = Attention.of(table)
    out: dict[Side, float] = {"host": 0.0, "gpu": 0.0}
    if not lengths:
        return out
    for il in range(att.n_layer):
        per_position = row_bytes(type_k, att.n_head_kv[il] * att.head_dim_k) + row_bytes(
            type_v, att.n_head_kv[il] * att.head_dim_v
        )
        positions = sum(att.read_positions(il, n) for n in lengths) / len(lengths)
        side: Side = "host" if placement is None else placement.kv_side(il)
        out[side] += per_position * positions
    return out


def decode_lengths(n_depth: int, n_prompt: int, n_gen: int, *, start_token: bool = True) -> range:
    """The cache positions each timed generated token's attention reads, its own
    included. The engine times tokens 2..N (tg_tps spans the first token to the last):
    the token decoded for token k sits at position ``n_depth + max(n_prompt, 1) + k - 2``
    (a tg workload starts from one start token), so the cache holds one more.
    ``start_token=False``: llama-bench times every one of its N decodes from the depth."""
    if not start_token:
        first = n_depth + n_prompt + 1
        return range(first, first + n_gen)
    first = n_depth + max(n_prompt, 1) + 1
    return range(first, first + max(n_gen - 1, 0))


def decode_traffic(
    table: TensorTable,
    params: LoadParams,
    lengths: Sequence[int],
    *,
    offload: bool = False,
) -> Traffic:
    """The bytes one generated token reads (see the module docstring), host and GPU, at
    the mean over ``lengths`` (:func:`decode_lengths`)."""
    att = Attention.of(table)
    placement = Placement.of(params, att.n_layer, offload=offload)
    weights = weight_bytes(table, placement)
    kv = kv_bytes(table, params.type_k, params.type_v, lengths, placement)
    mean = sum(lengths) / len(lengths) if lengths else 0.0
    return Traffic(weights["host"], weights["gpu"], kv["host"], kv["gpu"], mean)


# -- FLOPs per prompt token ---------------------------------------------------------------


def prompt_flops(table: TensorTable, n_depth: int, n_prompt: int, n_batch: int) -> float:
    """Floating-point operations per prompt token of a prompt of ``n_prompt`` tokens
    after ``n_depth`` cached ones (see the module docstring)."""
    if n_prompt < 1:
        raise Unknown("no prompt")
    used, n_expert = _experts(table)
    att = Attention.of(table)
    tied = not any(t.name == "output.weight" for t in table.tensors)
    per_token = 0.0
    output = 0.0
    for t in table.tensors:
        n = math.prod(t.dims)
        if t.name == "output.weight" or (tied and t.name == "token_embd.weight"):
            output += 2.0 * n
        elif _LAYER_RE.match(t.name) and len(t.dims) >= 2 and not t.name.endswith(".bias"):
            per_token += 2.0 * n * (used / n_expert if EXPERT_TENSOR_RE.search(t.name) else 1)
    batches = math.ceil(n_prompt / max(n_batch, 1))
    lengths = range(n_depth + 1, n_depth + n_prompt + 1)
    attention = 0.0
    for il in range(att.n_layer):
        positions = sum(att.read_positions(il, n) for n in lengths) / n_prompt
        attention += 2.0 * att.n_head[il] * (att.head_dim_k + att.head_dim_v) * positions
    return per_token + attention + output * batches / n_prompt


__all__ = [
    "SWA_PATTERNS",
    "Attention",
    "Placement",
    "Traffic",
    "Unknown",
    "decode_lengths",
    "decode_traffic",
    "host_buffer",
    "kv_bytes",
    "prompt_flops",
    "row_bytes",
    "weight_bytes",
]
