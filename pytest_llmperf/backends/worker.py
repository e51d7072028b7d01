"""The child process of IsolatedRunner: ``python -m pytest_llmperf.backends.worker R W``.

Reads one JSON request per line from fd R, writes one JSON reply per line to fd W.
stdout is pointed at stderr so nothing native can corrupt the protocol.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

#: the distribution that provides a module the worker imports, for the install hint
_DISTRIBUTIONS = {"llama_cpp": "llama-cpp-python", "yaml": "pyyaml", "pynvml": "nvidia-ml-py"}


def _cannot_import(exc: ImportError) -> str:
    """One line: which module this interpreter lacks, and how to install it."""
    name = (exc.name or str(exc)).split(".")[0]
    dist = _DISTRIBUTIONS.get(name, name)
    version = ".".join(map(str, sys.version_info[:2]))
    return (
        f"the worker's interpreter {sys.executable} (Python {version}) cannot import "
        f"{name!r}: install it there ({sys.executable} -m pip install {dist}), or name an "
        "interpreter that has llama-cpp-python and numpy (llmperf build NAME --version V "
        "makes one)"
    )


def _refuse(reader: Any, writer: Any, message: str) -> int:
    """Answer the first request with ``message`` (the worker cannot serve), then exit."""
    for _line in reader:
        writer.write(json.dumps({"ok": False, "error": "BackendError", "message": message}))
        writer.write("\n")
        writer.flush()
        break
    return 1


def serve(req_fd: int, resp_fd: int) -> int:
    reader = os.fdopen(req_fd, "r")
    writer = os.fdopen(resp_fd, "w", buffering=1)
    try:
        from pytest_llmperf.backends.inprocess import InProcessRunner
        from pytest_llmperf.errors import LLMPerfError
        from pytest_llmperf.model.params import LoadParams
        from pytest_llmperf.model.workloads import Workload
    except ImportError as exc:  # an interpreter without numpy, llama-cpp-python, ...
        return _refuse(reader, writer, _cannot_import(exc))
    runner: InProcessRunner | None = None

    def reply(obj: dict[str, Any]) -> None:
        writer.write(json.dumps(obj) + "\n")
        writer.flush()

    for line in reader:
        try:
            req = json.loads(line)
            op = req.get("op")
            if op == "close":
                break
            if op == "load":
                runner = InProcessRunner(
                    req["path"],
                    LoadParams.from_dict(req["params"]),
                    req.get("model_id", ""),
                    check_memory=bool(req.get("check_memory", True)),
                    dedicated=True,
                )
                reply(
                    {
                        "ok": True,
                        "load_ms": runner.load_ms,
                        "resolved": runner.resolved,
                        "warnings": runner.warnings,
                        "software": runner.software,
                        "pid": os.getpid(),
                    }
                )
            elif op == "measure":
                if runner is None:
                    raise RuntimeError("measure before load")
                wl = dict(req["workload"])
                wl.pop("name", None)
                m = runner.measure(
                    Workload.from_dict(wl),
                    int(req.get("repetitions", 3)),
                    int(req.get("warmup", 1)),
                )
                m.resolved["worker_pid"] = os.getpid()
                reply({"ok": True, "measurement": m.to_dict()})
            elif op == "stream":  # a streamed request (backends/stream.py)
                if runner is None:
                    raise RuntimeError("stream before load")
                from pytest_llmperf.model.workloads import StreamWorkload

                m = runner.measure_stream(
                    StreamWorkload.from_dict(req["workload"]),
                    int(req.get("repetitions", 3)),
                    int(req.get("warmup", 1)),
                )
                m.resolved["worker_pid"] = os.getpid()
                reply({"ok": True, "measurement": m.to_dict()})
            elif op == "crash":  # for the tests of crash containment
                import signal

                os.kill(os.getpid(), getattr(signal, str(req.get("signal", "SIGSEGV"))))
            else:
                raise RuntimeError(f"unknown op {op!r}")
        except LLMPerfError as exc:
            reply({"ok": False, "error": type(exc).__name__, "message": str(exc)})
        except ImportError as exc:  # llama_cpp missing, or a dependency of it
            reply({"ok": False, "error": "BackendError", "message": _cannot_import(exc)})
        except Exception as exc:
            # one line for the user; the traceback goes to the worker's log (its stderr)
            traceback.print_exc(file=sys.stderr)
            first = (str(exc).strip().splitlines() or [""])[0]
            reply(
                {"ok": False, "error": "BackendError", "message": f"{type(exc).__name__}: {first}"}
            )
    if runner is not None:
        runner.close()
    return 0


def die_with_parent(parent_pid: int | None) -> None:
    """Linux: have the kernel SIGKILL this worker when its parent dies (a pytest killed by
    SIGTERM, SIGKILL or the OOM killer runs no cleanup), so no orphan keeps burning CPU on a
    measurement nobody waits for. Exits now if the parent is already gone. (The kernel
    watches the thread that started the worker: start runners from a long-lived thread.)"""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - no prctl here
        return
    if parent_pid is not None and os.getppid() != parent_pid and not _alive(parent_pid):
        os._exit(1)  # the parent died before prctl took effect (a launcher may sit between)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main() -> int:
    req_fd, resp_fd = int(sys.argv[1]), int(sys.argv[2])
    die_with_parent(int(sys.argv[3]) if len(sys.argv) > 3 else None)
    os.dup2(2, 1)  # anything printed to stdout goes to stderr, never into the protocol
    return serve(req_fd, resp_fd)


if __name__ == "__main__":
    sys.exit(main())
