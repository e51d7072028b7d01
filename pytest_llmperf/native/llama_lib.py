"""The one place that imports llama-cpp-python's low-level bindings: the library.

Initialises the backend once, routes llama.cpp's log through a capture buffer
(:func:`captured_log`: the tensor override check reads it), and binds what the library
offers beside models and contexts: ggml's devices and buffer types (which
llama-cpp-python does not wrap), NUMA, ggml threadpools, what the build supports, and
the library's identity. Models and contexts are :mod:`pytest_llmperf.native.model`'s.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from collections.abc import Iterator
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


@contextlib.contextmanager
def captured_log() -> Iterator[list[str]]:
    """The lines llama.cpp logs while the block runs (the list fills as they come)."""
    capture = log_capture()
    capture.lines = []
    capture.active = True
    try:
        yield capture.lines
    finally:
        capture.active = False


def supports_gpu_offload() -> bool:
    """Whether this build has a GPU backend (llama_supports_gpu_offload)."""
    return bool(load().llama_supports_gpu_offload())


def max_devices() -> int:
    """llama_max_devices(): the length of a tensor split."""
    return int(load().llama_max_devices())


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


def device_facts() -> list[dict[str, Any]]:
    """ggml's backend devices as facts to record: name, description, type (no handle)."""
    return [{k: d[k] for k in ("name", "description", "type")} for d in devices()]


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


# -- buffer types, NUMA, threadpools ----------------------------------------------------


def buffer_types() -> dict[str, int]:
    """Buffer types by name, as llama-bench's -ot knows them: each device's own (CPU,
    CUDA0, ...) and its host buffer type (CUDA_Host, ...)."""
    dev_buft = _ggml_fn("ggml_backend_dev_buffer_type", ctypes.c_void_p, [ctypes.c_void_p])
    host_buft = _ggml_fn("ggml_backend_dev_host_buffer_type", ctypes.c_void_p, [ctypes.c_void_p])
    name = _ggml_fn("ggml_backend_buft_name", ctypes.c_char_p, [ctypes.c_void_p])
    out: dict[str, int] = {}
    for dev in devices():
        for fn in (dev_buft, host_buft):
            ptr = fn(dev["handle"])
            if ptr:
                out.setdefault((name(ptr) or b"").decode(), int(ptr))
    return out


_NUMA = {"disabled": 0, "distribute": 1, "isolate": 2, "numactl": 3, "mirror": 4}


def numa_init(mode: str) -> None:
    """llama_numa_init, once per process (llama.cpp keeps the first)."""
    if mode == "disabled" or _state.get("numa"):
        return
    lc = load()
    lc.llama_numa_init(_NUMA[mode])
    _state["numa"] = mode


#: ggml's GGML_MAX_N_THREADS (the size of a threadpool's cpumask)
MAX_N_THREADS = 512


class ThreadpoolParams(ctypes.Structure):
    """``struct ggml_threadpool_params``."""

    _fields_ = [
        ("cpumask", ctypes.c_bool * MAX_N_THREADS),
        ("n_threads", ctypes.c_int),
        ("prio", ctypes.c_int),
        ("poll", ctypes.c_uint32),
        ("strict_cpu", ctypes.c_bool),
        ("paused", ctypes.c_bool),
    ]


def _cpu_fn(name: str, restype: Any, argtypes: list[Any]) -> Any:
    """A function of ggml's CPU backend: linked in, or through the backend registry (a
    GGML_BACKEND_DL build loads the CPU backend as a module)."""
    lc = load()
    try:
        fn = getattr(lc._lib, name)
    except AttributeError:
        get = _ggml_fn("ggml_backend_dev_by_type", ctypes.c_void_p, [ctypes.c_int])
        reg = _ggml_fn("ggml_backend_dev_backend_reg", ctypes.c_void_p, [ctypes.c_void_p])
        proc = _ggml_fn(
            "ggml_backend_reg_get_proc_address", ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]
        )
        addr = proc(reg(get(0)), name.encode())
        if not addr:
            from pytest_llmperf.errors import BackendError

            raise BackendError(f"this llama.cpp build has no {name}") from None
        fn = ctypes.CFUNCTYPE(restype, *argtypes)(addr)
        return fn
    fn.restype = restype
    fn.argtypes = argtypes
    return fn


def new_threadpool(n_threads: int, cpumask: list[int], strict: bool, poll: int, prio: int) -> int:
    """A ggml threadpool with these settings (ggml_threadpool_new); free it with
    :func:`free_threadpool` after the context that uses it."""
    defaults = _ggml_fn("ggml_threadpool_params_default", ThreadpoolParams, [ctypes.c_int])
    params = defaults(n_threads)
    for cpu in cpumask:
        if 0 <= cpu < MAX_N_THREADS:
            params.cpumask[cpu] = True
    params.strict_cpu = strict
    params.poll = poll
    params.prio = prio
    new = _cpu_fn("ggml_threadpool_new", ctypes.c_void_p, [ctypes.POINTER(ThreadpoolParams)])
    tp = new(ctypes.byref(params))
    if not tp:
        from pytest_llmperf.errors import BackendError

        raise BackendError("ggml_threadpool_new failed")
    return int(tp)


def free_threadpool(tp: int) -> None:
    free = _cpu_fn("ggml_threadpool_free", None, [ctypes.c_void_p])
    free(ctypes.c_void_p(tp))


def attach_threadpool(ctx: int, tp: int, tp_batch: int | None = None) -> None:
    fn = _ggml_fn(
        "llama_attach_threadpool", None, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    )
    fn(ctypes.c_void_p(ctx), ctypes.c_void_p(tp), ctypes.c_void_p(tp_batch or 0))


def numa_nodes() -> int:
    """NUMA nodes of this machine (1 where the system does not say)."""
    import glob

    return max(1, len(glob.glob("/sys/devices/system/node/node[0-9]*")))
