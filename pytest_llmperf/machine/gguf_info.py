"""Read a GGUF file's header without llama.cpp: validates it before any native code runs.

A missing path, a directory, an empty file, random bytes, a truncated file: each is a
:class:`ModelFileError` that names the file and the fix, raised here instead of a crash
(or a bare NULL) inside llama.cpp.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import re
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_llmperf import paths
from pytest_llmperf.errors import ModelFileError
from pytest_llmperf.fileio import write_atomic

GGUF_MAGIC = b"GGUF"
#: GGUF format versions llama.cpp and the gguf package read
GGUF_VERSIONS = (2, 3)
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


# -- a fast header reader ---------------------------------------------------------------
# gguf.GGUFReader builds numpy views of every array element: about 10 s for the token
# list of a 256k-vocabulary model. Validation needs only scalars, array lengths and the
# tensor table, read here straight from the file with struct.

_SCALARS: dict[int, str] = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class _Tensor:
    name: str
    n_elements: int
    ggml_type: int
    offset: int
    #: the dimensions, GGUF order (the first is the row length)
    dims: tuple[int, ...] = ()


class _Truncated(Exception):
    pass


class _Cursor:
    def __init__(self, buf: Any, size: int, small_arrays: int = 0) -> None:
        self.buf, self.size, self.pos = buf, size, 0
        #: arrays of numbers up to this length are read as tuples (per-layer head counts,
        #: sliding-window patterns); longer ones, and every array by default, as a length
        self.small_arrays = small_arrays

    def unpack(self, fmt: str) -> Any:
        n = struct.calcsize(fmt)
        if self.pos + n > self.size:
            raise _Truncated
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += n
        return value

    def string(self) -> str:
        n = self.unpack("<Q")
        if self.pos + n > self.size:
            raise _Truncated
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        unpack_from, buf, pos, size = struct.unpack_from, self.buf, self.pos, self.size
        for _ in range(count):
            if pos + 8 > size:
                raise _Truncated
            pos += 8 + unpack_from("<Q", buf, pos)[0]
        if pos > size:
            raise _Truncated
        self.pos = pos

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype, count = self.unpack("<I"), self.unpack("<Q")
            if etype == _STRING:
                self.skip_strings(count)
            elif etype in _SCALARS:
                fmt = _SCALARS[etype]
                start = self.pos
                self.pos += struct.calcsize(fmt) * count
                if self.pos > self.size:
                    raise _Truncated
                if count <= self.small_arrays:
                    return struct.unpack_from(f"<{count}{fmt[1:]}", self.buf, start)
            else:
                raise ValueError(f"unsupported array element type {etype}")
            return _ArrayLen(count)
        raise ValueError(f"unknown value type {vtype}")


@dataclass(frozen=True)
class _ArrayLen:
    count: int


def _read_header(
    p: Path, size: int, small_arrays: int = 0
) -> tuple[dict[str, Any], list[_Tensor], int]:
    """(key-values, tensors, data start) of a GGUF file; raises _Truncated or ValueError."""
    with open(p, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        cur = _Cursor(mm, size, small_arrays)
        cur.pos = 4
        version = cur.unpack("<I")
        if version not in GGUF_VERSIONS:
            raise ValueError(f"GGUF version {version} (this reader knows 2 and 3)")
        n_tensors, n_kv = cur.unpack("<Q"), cur.unpack("<Q")
        if n_tensors > 1 << 24 or n_kv > 1 << 24:
            raise ValueError(f"implausible counts ({n_tensors} tensors, {n_kv} keys)")
        kv: dict[str, Any] = {}
        for _ in range(n_kv):
            key = cur.string()
            kv[key] = cur.value(cur.unpack("<I"))
        tensors: list[_Tensor] = []
        for _ in range(n_tensors):
            name = cur.string()
            n_dims = cur.unpack("<I")
            if n_dims > 8:
                raise ValueError(f"tensor {name}: {n_dims} dimensions")
            dims = tuple(int(cur.unpack("<Q")) for _d in range(n_dims))
            n = 1
            for d in dims:
                n *= d
            tensors.append(_Tensor(name, n, cur.unpack("<I"), cur.unpack("<Q"), dims))
        align = kv.get("general.alignment", 32)
        align = align if isinstance(align, int) and align > 0 else 32
        start = (cur.pos + align - 1) // align * align
        return kv, tensors, start


def _tensor_bytes(t: _Tensor) -> int:
    import gguf

    try:
        block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(t.ggml_type)]
    except (KeyError, ValueError):
        raise ValueError(f"tensor {t.name}: unknown ggml type {t.ggml_type}") from None
    return t.n_elements // block * type_size


_inspect_cache: dict[tuple[str, int, int], ModelInfo] = {}

#: what a model path that is not a regular file is, by its file type
_FILE_TYPES = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^(www\.)?(huggingface\.co|hf\.co)/", re.IGNORECASE)
#: a Hugging Face repository and file or quantization, as llama.cpp's -hf takes it
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+:[\w.-]+$")


def not_a_local_path(text: str) -> str | None:
    """Why ``text`` (a model path as the user wrote it) names no local file, or None: a
    URL, or a hub id (``org/name:file``), with what to do instead."""
    fix = (
        "download the .gguf file (e.g. huggingface-cli download ORG/REPO FILE.gguf "
        "--local-dir models/) and give the registry its local path"
    )
    if _URL.match(text):
        return f"{text!r} is a URL, not a local file: {fix}"
    if _HUB_ID.match(text) and not os.path.exists(text):
        return f"{text!r} looks like a model hub id (ORG/REPO:FILE), not a local file: {fix}"
    return None


def not_a_regular_file(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` is when it exists and is not a regular file (a directory, a FIFO, a
    device such as /dev/zero, a socket), or None. Never opens it (a FIFO would block)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _FILE_TYPES if test(mode)), "not a regular file")


def inspect(path: str | os.PathLike[str]) -> ModelInfo:
    """Validate ``path`` as a GGUF model and read what the engine needs from its header.

    Cached per (path, size, mtime) within the process.
    """
    p = Path(path)
    fix = "check the path in your model registry (llmperf.yaml / [tool.llmperf.models])"
    if not p.exists():
        raise ModelFileError(f"model file {p} does not exist; {fix}")
    kind = not_a_regular_file(p)
    if kind is not None:
        raise ModelFileError(f"model path {p} is {kind}, not a .gguf file; {fix}")
    st = p.stat()
    size = st.st_size
    if size == 0:
        raise ModelFileError(f"model file {p} is empty (0 bytes): re-download or rebuild it")
    cache_key = (str(p.resolve()), size, st.st_mtime_ns)
    if cache_key in _inspect_cache:
        return _inspect_cache[cache_key]
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise ModelFileError(
            f"model file {p} is not a GGUF file (starts with {magic!r}, expected b'GGUF'); "
            "convert it with llama.cpp's convert_hf_to_gguf.py or point to a .gguf file"
        )
    redo = "re-download or rebuild it"
    try:
        kv, tensors, data_start = _read_header(p, size)
        end = max((data_start + t.offset + _tensor_bytes(t) for t in tensors), default=0)
    except _Truncated:
        raise ModelFileError(f"model file {p} is truncated inside its header; {redo}") from None
    except ValueError as exc:
        raise ModelFileError(f"model file {p} is not a readable GGUF ({exc}); {redo}") from None
    if end > size:
        raise ModelFileError(
            f"model file {p} is truncated: its tensors need {end} bytes, the file has {size}; "
            f"{redo}"
        )
    arch = kv.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise ModelFileError(f"model file {p} has no general.architecture key: not a model GGUF")

    def num(key: str) -> int:
        v = kv.get(f"{arch}.{key}")
        return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0

    tokens = kv.get("tokenizer.ggml.tokens")
    n_vocab = tokens.count if isinstance(tokens, _ArrayLen) else num("vocab_size")
    info = ModelInfo(
        path=str(p),
        file_size=size,
        arch=arch,
        name=str(kv.get("general.name") or p.stem),
        n_layer=num("block_count"),
        n_expert=num("expert_count"),
        n_vocab=int(n_vocab),
        n_ctx_train=num("context_length"),
        quant=_quant_name(kv.get("general.file_type"), tensors),
        tensor_names=tuple(t.name for t in tensors),
    )
    _inspect_cache[cache_key] = info
    return info


def _quant_name(ftype: Any, tensors: list[_Tensor]) -> str:
    import gguf

    if isinstance(ftype, int) and not isinstance(ftype, bool):
        try:
            return str(gguf.LlamaFileType(ftype).name).removeprefix("MOSTLY_")
        except ValueError:
            pass
    counts: dict[int, int] = {}
    for t in tensors:  # else the type holding the most weights
        counts[t.ggml_type] = counts.get(t.ggml_type, 0) + t.n_elements
    if not counts:
        return "unknown"
    top = max(counts, key=lambda k: counts[k])
    try:
        return str(gguf.GGMLQuantizationType(top).name)
    except ValueError:
        return f"type{top}"


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of the table: its dimensions (GGUF order: the first is the row length),
    ggml type and size in the file (None for a type the gguf package does not know)."""

    name: str
    dims: tuple[int, ...]
    type_name: str
    n_bytes: int | None

    @property
    def rows(self) -> int:
        """Rows of the tensor (every dimension but the first, multiplied)."""
        n = 1
        for d in self.dims[1:]:
            n *= d
        return n


@dataclass(frozen=True)
class TensorTable:
    """A model file's tensor table and its metadata: scalars, and arrays of up to
    :data:`SMALL_ARRAYS` numbers as tuples (longer arrays are left out)."""

    path: str
    arch: str
    metadata: dict[str, Any]
    tensors: tuple[TensorEntry, ...]

    def arch_value(self, key: str) -> Any:
        """The architecture's ``{arch}.{key}`` value (None when absent)."""
        return self.metadata.get(f"{self.arch}.{key}")


#: the longest metadata array :func:`tensor_table` keeps (per-layer values)
SMALL_ARRAYS = 4096
_table_cache: dict[tuple[str, int, int], TensorTable] = {}


def tensor_table(path: str | os.PathLike[str]) -> TensorTable:
    """The tensor table of a valid GGUF model (validated by :func:`inspect` first, so a
    bad file is the same :class:`ModelFileError`). Cached per (path, size, mtime)."""
    import gguf

    info = inspect(path)
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key in _table_cache:
        return _table_cache[key]
    try:
        kv, tensors, _start = _read_header(p, st.st_size, SMALL_ARRAYS)
    except (_Truncated, ValueError) as exc:  # pragma: no cover - inspect() read it
        raise ModelFileError(f"model file {p} is not a readable GGUF ({exc})") from None
    entries = []
    for t in tensors:
        try:
            type_name = str(gguf.GGMLQuantizationType(t.ggml_type).name)
            n_bytes: int | None = _tensor_bytes(t)
        except ValueError:
            type_name, n_bytes = f"type{t.ggml_type}", None
        entries.append(TensorEntry(t.name, t.dims, type_name, n_bytes))
    metadata = {k: v for k, v in kv.items() if not isinstance(v, _ArrayLen)}
    table = TensorTable(str(p), info.arch, metadata, tuple(entries))
    _table_cache[key] = table
    return table


def tensor_types(path: str | os.PathLike[str]) -> dict[str, str]:
    """Tensor name -> ggml type name (e.g. ``"MXFP4"``)."""
    import gguf

    reader = gguf.GGUFReader(Path(path), "r")
    return {str(t.name): str(t.tensor_type.name) for t in reader.tensors}


# -- sha256, cached by (path, size, mtime) ----------------------------------------------


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a (possibly large) file, cached by absolute path, size and mtime."""
    p = Path(path).resolve()
    st = p.stat()
    key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
    cache_path = paths.sha256_cache_file()
    cache: dict[str, str] = {}
    writable = True  # only our own cache file (absent, empty or path -> digest) is rewritten
    try:
        text = cache_path.read_text()
        loaded = json.loads(text) if text.strip() else {}
        if isinstance(loaded, dict) and all(isinstance(v, str) for v in loaded.values()):
            cache = {str(k): v for k, v in loaded.items()}
        else:
            writable = False
    except FileNotFoundError:
        pass
    except (OSError, ValueError):
        writable = False
    if key in cache:
        return cache[key]
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    digest = h.hexdigest()
    cache = {k: v for k, v in cache.items() if not k.startswith(f"{p}|")}
    cache[key] = digest
    if not writable:
        return digest
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cache_path, json.dumps(cache, sort_keys=True), durable=False)
    except OSError:
        pass
    return digest
