"""The one place that imports llama-cpp-python's low-level bindings.

Initialises the backend once, routes llama.cpp's log through a capture buffer (the
cpu-moe check reads it), and binds the few ggml device functions that llama-cpp-python
does not wrap (needed for tensor_buft_overrides).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from typing import Any

_lock = threading.Lock()
_state: dict[str, Any] = {}


class _LogCapture:
    """Collects llama.cpp log lines while active; forwards them to stderr when verbose."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.active = False
        self.verbose = bool(os.environ.get("LLMPERF_VERBOSE_LLAMA"))
        self._partial = ""

    def __call__(self, level: int, text: bytes | None, user_data: Any) -> None:
        if not text:
            return
        s = text.decode("utf-8", errors="replace")
        if self.verbose:
            sys.stderr.write(s)
        if self.active:
            s = self._partial + s
            *full, self._partial = s.split("\n")
            self.lines.extend(full)


def load() -> Any:
    """The ``llama_cpp.llama_cpp`` module, with the backend initialised once."""
    with _lock:
        if "lc" in _state:
            return _state["lc"]
        try:
            import llama_cpp.llama_cpp as lc
        except (ImportError, OSError) as exc:  # pragma: no cover - depends on install
            from pytest_llmperf.errors import BackendError

            raise BackendError(
                f"llama-cpp-python is not usable here ({exc}); build it with "
                "scripts/build-llama-cpp.sh (see README, 'Set up')"
            ) from exc
        capture = _LogCapture()
        callback = lc.llama_log_callback(capture)
        lc.llama_log_set(callback, ctypes.c_void_p(0))
        lc.llama_backend_init()
        _state.update(lc=lc, capture=capture, callback=callback)
        return lc


def log_capture() -> _LogCapture:
    load()
    capture: _LogCapture = _state["capture"]
    return capture


def _ggml_fn(name: str, restype: Any, argtypes: list[Any]) -> Any:
    lc = load()
    fn = getattr(lc._lib, name)
    fn.restype = restype
    fn.argtypes = argtypes
    return fn


def devices() -> list[dict[str, Any]]:
    """ggml's backend devices: name, description, type (0 CPU, 1 GPU, 2 ACCEL, 3 IGPU)."""
    count = _ggml_fn("ggml_backend_dev_count", ctypes.c_size_t, [])
    get = _ggml_fn("ggml_backend_dev_get", ctypes.c_void_p, [ctypes.c_size_t])
    name = _ggml_fn("ggml_backend_dev_name", ctypes.c_char_p, [ctypes.c_void_p])
    desc = _ggml_fn("ggml_backend_dev_description", ctypes.c_char_p, [ctypes.c_void_p])
    dtype = _ggml_fn("ggml_backend_dev_type", ctypes.c_int, [ctypes.c_void_p])
    out = []
    for i in range(int(count())):
        dev = get(i)
        out.append(
            {
                "index": i,
                "name": (name(dev) or b"").decode(),
                "description": (desc(dev) or b"").decode(),
                "type": int(dtype(dev)),
                "handle": dev,
            }
        )
    return out


def cpu_buffer_type() -> int:
    """The CPU device's buffer type (a ``ggml_backend_buffer_type_t``)."""
    buft = _ggml_fn("ggml_backend_dev_buffer_type", ctypes.c_void_p, [ctypes.c_void_p])
    for dev in devices():
        if dev["name"].upper() == "CPU":
            ptr = buft(dev["handle"])
            if ptr:
                return int(ptr)
    from pytest_llmperf.errors import BackendError

    raise BackendError("llama.cpp has no CPU device: cannot keep expert tensors on the CPU")


def system_info() -> str:
    lc = load()
    return str(lc.llama_print_system_info().decode("utf-8", errors="replace")).strip()


def version() -> str:
    try:
        import llama_cpp

        return str(llama_cpp.__version__)
    except Exception:  # pragma: no cover
        return "unknown"


def library() -> dict[str, str]:
    """Which llama.cpp library this process runs: its file, sha256, and the version and
    commit ggml reports (where the build has those functions)."""
    import hashlib

    lc = load()
    out: dict[str, str] = {}
    path = str(getattr(lc._lib, "_name", "") or "")
    if path:
        out["lib"] = path
        try:
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            out["lib_sha256"] = h.hexdigest()
        except OSError:
            pass
    for name in ("ggml_version", "ggml_commit"):
        try:
            fn = _ggml_fn(name, ctypes.c_char_p, [])
            value = fn()
        except (AttributeError, OSError):
            continue
        if value:
            out[name] = value.decode("utf-8", errors="replace")
    return out
