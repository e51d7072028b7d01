"""Read a GGUF file's header without llama.cpp: validates it before any native code runs.

A missing path, a directory, an empty file, random bytes, a truncated file: each is a
:class:`ModelFileError` that names the file and the fix, raised here instead of a crash
(or a bare NULL) inside llama.cpp.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_llmperf.errors import ModelFileError

GGUF_MAGIC = b"GGUF"
EXPERT_TENSOR_RE = re.compile(r"\.ffn_(up|down|gate|gate_up)_(ch|)exps")


@dataclass(frozen=True)
class ModelInfo:
    path: str
    file_size: int
    arch: str
    name: str
    n_layer: int
    n_expert: int
    n_vocab: int
    n_ctx_train: int
    quant: str
    tensor_names: tuple[str, ...]

    @property
    def expert_tensors(self) -> tuple[str, ...]:
        return tuple(n for n in self.tensor_names if EXPERT_TENSOR_RE.search(n))


def _field(reader: Any, key: str) -> Any:
    f = reader.fields.get(key)
    if f is None:
        return None
    try:
        return f.contents()
    except Exception:  # pragma: no cover - older gguf
        return None


def inspect(path: str | os.PathLike[str]) -> ModelInfo:
    """Validate ``path`` as a GGUF model and read what the engine needs from its header."""
    p = Path(path)
    fix = "check the path in your model registry (llmperf.yaml / [tool.llmperf.models])"
    if not p.exists():
        raise ModelFileError(f"model file {p} does not exist; {fix}")
    if p.is_dir():
        raise ModelFileError(f"model path {p} is a directory, not a .gguf file; {fix}")
    size = p.stat().st_size
    if size == 0:
        raise ModelFileError(f"model file {p} is empty (0 bytes): re-download or rebuild it")
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise ModelFileError(
            f"model file {p} is not a GGUF file (starts with {magic!r}, expected b'GGUF'); "
            "convert it with llama.cpp's convert_hf_to_gguf.py or point to a .gguf file"
        )
    import gguf

    try:
        reader = gguf.GGUFReader(p, "r")
    except Exception as exc:
        raise ModelFileError(
            f"model file {p} is not a readable GGUF ({type(exc).__name__}: {exc}); "
            "it may be truncated: re-download or rebuild it"
        ) from exc
    names = []
    end = 0
    for t in reader.tensors:
        names.append(str(t.name))
        end = max(end, int(t.data_offset) + int(t.n_bytes))
    if end > size:
        raise ModelFileError(
            f"model file {p} is truncated: its tensors need {end} bytes, the file has {size}; "
            "re-download or rebuild it"
        )
    arch = str(_field(reader, "general.architecture") or "")
    if not arch:
        raise ModelFileError(f"model file {p} has no general.architecture key: not a model GGUF")

    def num(key: str) -> int:
        v = _field(reader, f"{arch}.{key}")
        return int(v) if isinstance(v, (int, float)) else 0

    tokens = reader.fields.get("tokenizer.ggml.tokens")
    n_vocab = len(tokens.data) if tokens is not None else num("vocab_size")
    ftype = _field(reader, "general.file_type")
    quant = _quant_name(ftype, reader)
    return ModelInfo(
        path=str(p),
        file_size=size,
        arch=arch,
        name=str(_field(reader, "general.name") or p.stem),
        n_layer=num("block_count"),
        n_expert=num("expert_count"),
        n_vocab=int(n_vocab),
        n_ctx_train=num("context_length"),
        quant=quant,
        tensor_names=tuple(names),
    )


def _quant_name(ftype: Any, reader: Any) -> str:
    import gguf

    if isinstance(ftype, int):
        try:
            return str(gguf.LlamaFileType(ftype).name).removeprefix("MOSTLY_")
        except ValueError:
            pass
    # fall back to the most common tensor type
    counts: dict[str, int] = {}
    for t in reader.tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + int(t.n_elements)
    return max(counts, key=lambda k: counts[k]) if counts else "unknown"


def tensor_types(path: str | os.PathLike[str]) -> dict[str, str]:
    """Tensor name -> ggml type name (e.g. ``"MXFP4"``)."""
    import gguf

    reader = gguf.GGUFReader(Path(path), "r")
    return {str(t.name): str(t.tensor_type.name) for t in reader.tensors}


# -- sha256, cached by (path, size, mtime) ----------------------------------------------


def _sha_cache_file() -> Path:
    from pytest_llmperf.tiny import cache_dir

    return cache_dir().parent / "sha256-cache.json"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a (possibly large) file, cached by absolute path, size and mtime."""
    p = Path(path).resolve()
    st = p.stat()
    key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
    cache_path = _sha_cache_file()
    cache: dict[str, str] = {}
    try:
        loaded = json.loads(cache_path.read_text())
        if isinstance(loaded, dict):
            cache = {str(k): str(v) for k, v in loaded.items()}
    except (OSError, ValueError):
        pass
    if key in cache:
        return cache[key]
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    digest = h.hexdigest()
    cache = {k: v for k, v in cache.items() if not k.startswith(f"{p}|")}
    cache[key] = digest
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_name(f".{cache_path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, sort_keys=True))
        os.replace(tmp, cache_path)
    except OSError:
        pass
    return digest
