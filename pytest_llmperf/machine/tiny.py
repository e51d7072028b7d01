"""Built-in tiny GGUF models: deterministic random-weight llama-architecture files.

A dense model and an MoE model (experts in ``ffn_{gate,up,down}_exps`` tensors, so
cpu-moe applies), each in F16, Q8_0, Q4_K_M and MXFP4. The F16 file is written with
the ``gguf`` package; the others are quantized from it with llama.cpp's own quantizer
(``llama_model_quantize``). MXFP4 is llama.cpp's MXFP4_MOE type: expert tensors (and,
for the dense model, the FFN tensors) in MXFP4, the rest Q8_0.

Files are built on demand into a cache directory (``$LLMPERF_CACHE_DIR`` or
``~/.cache/pytest-llmperf/models``), named by a hash of the full spec and
``GENERATOR_VERSION``, so a changed spec never reuses a stale file. Each file is written
to a temporary name and renamed into place: concurrent builders never see, nor leave, a
half-written model.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pytest_llmperf import paths
from pytest_llmperf.errors import UsageError
from pytest_llmperf.fileio import atomic_path

#: bump when the bytes written for a given spec change
GENERATOR_VERSION = 2

QUANTS: tuple[str, ...] = ("f16", "q8_0", "q4_k_m", "mxfp4")
#: the start of the GGUF name (general.name) of every built-in tiny model
TINY_NAME_PREFIX = "pytest-llmperf tiny"
CACHE_ENV = paths.CACHE_ENV


@dataclass(frozen=True)
class TinySpec:
    """The shape of a tiny model. Rows must be multiples of 256 for the K-quants."""

    n_layer: int = 8
    n_embd: int = 512
    n_ff: int = 2048
    n_head: int = 8
    n_head_kv: int = 4
    n_vocab: int = 8192
    n_ctx_train: int = 8192
    #: 0 for a dense model; otherwise the experts per layer
    n_expert: int = 0
    n_expert_used: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or value < 0:
                raise UsageError(f"tiny model spec: {f.name}={value!r} must be an integer >= 0")
        if self.n_layer < 1 or self.n_embd < 1 or self.n_vocab < 262:
            raise UsageError("tiny model spec: needs n_layer >= 1, n_embd >= 1, n_vocab >= 262")
        if self.n_embd % 256 or self.n_ff % 256:
            raise UsageError(
                f"tiny model spec: n_embd={self.n_embd} and n_ff={self.n_ff} must be multiples "
                "of 256 (llama.cpp's K-quants quantize rows in blocks of 256)"
            )
        if self.n_embd % self.n_head or self.n_head % max(self.n_head_kv, 1):
            raise UsageError("tiny model spec: n_embd must divide by n_head, n_head by n_head_kv")
        if self.n_expert and not 0 < self.n_expert_used <= self.n_expert:
            raise UsageError("tiny model spec: need 0 < n_expert_used <= n_expert")

    @property
    def is_moe(self) -> bool:
        return self.n_expert > 0

    def key(self) -> str:
        blob = json.dumps(
            {"spec": dataclasses.asdict(self), "generator": GENERATOR_VERSION}, sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


DENSE = TinySpec()
MOE = TinySpec(n_layer=8, n_ff=512, n_expert=8, n_expert_used=4)

#: the built-in families; variant names are "<family>-<quant>", e.g. "tiny-moe-mxfp4"
FAMILIES: dict[str, TinySpec] = {"tiny-dense": DENSE, "tiny-moe": MOE}


def variant_names() -> list[str]:
    return [f"{family}-{quant}" for family in FAMILIES for quant in QUANTS]


def parse_variant(name: str) -> tuple[str, TinySpec, str]:
    """``"tiny-moe-mxfp4"`` (or ``"moe-mxfp4"``) -> (family, spec, quant)."""
    text = name.strip().lower()
    if not text.startswith("tiny-"):
        text = "tiny-" + text
    for family, spec in FAMILIES.items():
        prefix = family + "-"
        if text.startswith(prefix) and text[len(prefix) :] in QUANTS:
            return family, spec, text[len(prefix) :]
    raise UsageError(
        f"unknown tiny model {name!r}; built-in variants: {', '.join(variant_names())}"
    )


cache_dir = paths.models_dir


def model_path(
    spec: TinySpec,
    quant: str,
    directory: str | os.PathLike[str] | None = None,
    family: str = "tiny",
) -> Path:
    if quant not in QUANTS:
        raise UsageError(f"unknown quantization {quant!r}; built-in: {', '.join(QUANTS)}")
    return cache_dir(directory) / f"{family}-{quant}-{spec.key()}.gguf"


def stale_files(directory: str | os.PathLike[str] | None = None) -> list[Path]:
    """Cached built-in variants whose spec or generator version is no longer current."""
    root = cache_dir(directory)
    if not root.is_dir():
        return []
    current = {
        model_path(spec, q, root, family).name for family, spec in FAMILIES.items() for q in QUANTS
    }
    ours = re.compile(
        rf"({'|'.join(map(re.escape, FAMILIES))})-({'|'.join(map(re.escape, QUANTS))})"
        r"-[0-9a-f]{16}\.gguf"
    )
    out = []
    for path in sorted(root.glob("tiny-*.gguf")):
        # only names this module writes: a user's tiny-moe-mine.gguf beside them stays
        if ours.fullmatch(path.name) and path.name not in current:
            out.append(path)
    return out


@dataclass(frozen=True)
class BuildInfo:
    path: Path
    built: bool
    seconds: float


def ensure_variant(name: str, directory: str | os.PathLike[str] | None = None) -> Path:
    """The path of a built-in variant, building it (and its F16 base) when absent."""
    family, spec, quant = parse_variant(name)
    return ensure_model(spec, quant, directory, family=family).path


def ensure_model(
    spec: TinySpec,
    quant: str = "f16",
    directory: str | os.PathLike[str] | None = None,
    family: str = "tiny",
) -> BuildInfo:
    """Build (or reuse) the tiny model ``spec`` in quantization ``quant``."""
    out = model_path(spec, quant, directory, family)
    if out.is_file():
        return BuildInfo(out, False, 0.0)
    start = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    if quant == "f16":
        with atomic_path(out) as tmp:
            write_f16(spec, tmp)
    else:
        base = ensure_model(spec, "f16", directory, family).path
        with atomic_path(out) as tmp:
            quantize(base, tmp, quant, moe=spec.is_moe)
    return BuildInfo(out, True, time.perf_counter() - start)


# -- writing the F16 model -------------------------------------------------------------


def _vocab(n_vocab: int) -> tuple[list[bytes], list[float], list[int]]:
    import gguf

    tt = gguf.TokenType
    tokens: list[bytes] = [b"<unk>", b"<s>", b"</s>"]
    types: list[int] = [int(tt.UNKNOWN), int(tt.CONTROL), int(tt.CONTROL)]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>".encode())
        types.append(int(tt.BYTE))
    # ordinary tokens: single printable characters first, then numbered pieces
    singles = [chr(c) for c in range(0x21, 0x7F)]
    i = 0
    while len(tokens) < n_vocab:
        piece = ("\u2581" + singles[i]) if i < len(singles) else f"\u2581w{i}"
        tokens.append(piece.encode())
        types.append(int(tt.NORMAL))
        i += 1
    scores = [0.0] * 3 + [0.0] * 256 + [-float(k) for k in range(n_vocab - 259)]
    return tokens, scores, types


def write_f16(
    spec: TinySpec, path: str | os.PathLike[str], *, omit: frozenset[str] = frozenset()
) -> None:
    """Write ``spec`` as an F16 llama-architecture GGUF with random weights (seeded).

    ``omit`` leaves the named tensors out (a valid GGUF that llama.cpp refuses: for the
    bad-input tests).
    """
    import gguf

    rng = np.random.default_rng(spec.seed)
    n_embd, n_ff, n_vocab = spec.n_embd, spec.n_ff, spec.n_vocab
    head_dim = n_embd // spec.n_head
    n_embd_kv = head_dim * spec.n_head_kv

    class _Writer(gguf.GGUFWriter):  # type: ignore[misc,unused-ignore]
        def add_tensor(self, name: str, tensor: Any, *a: Any, **kw: Any) -> None:
            if name not in omit:
                super().add_tensor(name, tensor, *a, **kw)

    w = _Writer(os.fspath(path), "llama")
    w.add_name(f"{TINY_NAME_PREFIX} {'moe' if spec.is_moe else 'dense'} {spec.key()}")
    w.add_block_count(spec.n_layer)
    w.add_context_length(spec.n_ctx_train)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(spec.n_head)
    w.add_head_count_kv(spec.n_head_kv)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    w.add_file_type(int(gguf.LlamaFileType.MOSTLY_F16))
    if spec.is_moe:
        w.add_expert_count(spec.n_expert)
        w.add_expert_used_count(spec.n_expert_used)
    tokens, scores, types = _vocab(n_vocab)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)

    def mat(*shape: int) -> np.ndarray[Any, np.dtype[np.float16]]:
        scale = 1.0 / float(np.sqrt(shape[-1]))
        return (rng.standard_normal(shape, dtype=np.float32) * scale).astype(np.float16)

    def norm() -> np.ndarray[Any, np.dtype[np.float32]]:
        return np.ones(n_embd, dtype=np.float32)

    w.add_tensor("token_embd.weight", mat(n_vocab, n_embd))
    w.add_tensor("output_norm.weight", norm())
    w.add_tensor("output.weight", mat(n_vocab, n_embd))
    for i in range(spec.n_layer):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", norm())
        w.add_tensor(p + "attn_q.weight", mat(n_embd, n_embd))
        w.add_tensor(p + "attn_k.weight", mat(n_embd_kv, n_embd))
        w.add_tensor(p + "attn_v.weight", mat(n_embd_kv, n_embd))
        w.add_tensor(p + "attn_output.weight", mat(n_embd, n_embd))
        w.add_tensor(p + "ffn_norm.weight", norm())
        if spec.is_moe:
            e = spec.n_expert
            w.add_tensor(
                p + "ffn_gate_inp.weight", rng.standard_normal((e, n_embd), dtype=np.float32)
            )
            w.add_tensor(p + "ffn_gate_exps.weight", mat(e, n_ff, n_embd))
            w.add_tensor(p + "ffn_up_exps.weight", mat(e, n_ff, n_embd))
            w.add_tensor(p + "ffn_down_exps.weight", mat(e, n_embd, n_ff))
        else:
            w.add_tensor(p + "ffn_gate.weight", mat(n_ff, n_embd))
            w.add_tensor(p + "ffn_up.weight", mat(n_ff, n_embd))
            w.add_tensor(p + "ffn_down.weight", mat(n_embd, n_ff))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# -- quantizing with llama.cpp ---------------------------------------------------------


def quantize(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    quant: str,
    *,
    moe: bool = True,
    nthread: int | None = None,
) -> None:
    """Quantize ``src`` to ``dst`` with llama.cpp's ``llama_model_quantize``.

    ``quant`` is q8_0, q4_k_m or mxfp4 (llama.cpp's MXFP4_MOE: experts MXFP4, the rest
    Q8_0; for a dense model the FFN tensors are forced to MXFP4 too, so the variant is
    what its name says).
    """
    from pytest_llmperf.native import llama_lib

    lc = llama_lib.load()
    ftypes = {
        "q8_0": lc.LLAMA_FTYPE_MOSTLY_Q8_0,
        "q4_k_m": lc.LLAMA_FTYPE_MOSTLY_Q4_K_M,
        "mxfp4": lc.LLAMA_FTYPE_MOSTLY_MXFP4_MOE,
    }
    if quant not in ftypes:
        raise UsageError(f"cannot quantize to {quant!r}; accepted: {', '.join(ftypes)}")
    params = lc.llama_model_quantize_default_params()
    params.ftype = ftypes[quant]
    params.nthread = nthread or os.cpu_count() or 1
    keep: list[Any] = []
    if quant == "mxfp4" and not moe:
        overrides = (lc.llama_model_tensor_override * 2)()
        pattern = b"ffn_(gate|up|down)\\.weight"
        keep.append(pattern)
        overrides[0].pattern = pattern
        overrides[0].type = lc.GGML_TYPE_MXFP4
        overrides[1].pattern = None
        params.tt_overrides = ctypes.cast(overrides, ctypes.POINTER(lc.llama_model_tensor_override))
        keep.append(overrides)
    rc = lc.llama_model_quantize(
        os.fspath(src).encode(), os.fspath(dst).encode(), ctypes.byref(params)
    )
    if rc != 0:
        from pytest_llmperf.errors import BackendError

        raise BackendError(f"llama_model_quantize({src} -> {quant}) failed with code {rc}")
