"""The isolated runner: llama.cpp in a child process kept alive for one configuration.

``IsolatedRunner`` (the default in the plugin) talks JSON lines to its worker
(:mod:`pytest_llmperf.backends.worker`, which runs an
:class:`~pytest_llmperf.backends.inprocess.InProcessRunner`) over a dedicated pipe: a
crash (SIGILL, SIGSEGV, an abort, the OOM killer) or a hang past the timeout fails only
the tests that used it, with the signal and a hint. Another build or a launcher starts
the worker with its interpreter, environment or command prefix.

Also the runners' timeouts, and :class:`~pytest_llmperf.backends.protocol.Runner` for the
session's modules that import it from here.
"""

from __future__ import annotations

import json
import os
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from pytest_llmperf.backends.protocol import Runner
from pytest_llmperf.errors import (
    BackendCrash,
    BackendError,
    LLMPerfError,
    ModelFileError,
    UsageError,
)
from pytest_llmperf.machine import devices
from pytest_llmperf.machine.builds import DEFAULT as DEFAULT_BUILD
from pytest_llmperf.machine.builds import Runtime
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.results import Measurement
from pytest_llmperf.model.workloads import StreamWorkload, Workload, require_request

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "LOAD_TIMEOUT_S",
    "IsolatedRunner",
    "Runner",
    "signal_name",
]

DEFAULT_TIMEOUT_S = 600.0
#: the least time a model load is given (the per-measurement timeout may be shorter)
LOAD_TIMEOUT_S = 300.0

HINTS = {
    "SIGILL": "llama.cpp was built for CPU features this machine lacks (AMX, AVX-512, ...): "
    "rebuild llama-cpp-python for this machine with scripts/build-llama-cpp.sh "
    "(LLMPERF_LLAMA_BUILD=native switches AMX off where the kernel forbids it; "
    "LLMPERF_LLAMA_BUILD=portable runs anywhere)",
    "SIGKILL": "the process was killed, probably by the out-of-memory killer: lower n_ctx, "
    "n_batch or n_gpu_layers, or use a smaller model",
    "SIGSEGV": "llama.cpp crashed (segmentation fault): a damaged model file or a llama.cpp "
    "bug; LLMPERF_VERBOSE_LLAMA=1 shows its log",
    "SIGABRT": "llama.cpp aborted (a failed GGML_ASSERT or an uncaught C++ exception); its "
    "message is above",
    "SIGBUS": "the model file changed or vanished while mapped (SIGBUS): do not rewrite model "
    "files during a run",
}

_ERROR_TYPES: dict[str, type[LLMPerfError]] = {
    "UsageError": UsageError,
    "ModelFileError": ModelFileError,
    "BackendError": BackendError,
}


def signal_name(returncode: int) -> str:
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


def without_tracebacks(lines: Sequence[str]) -> list[str]:
    """``lines`` of a worker's output with every Python traceback reduced to its last
    line, the exception (what the user needs; the frames are the package's insides)."""
    out: list[str] = []
    inside = False
    for line in lines:
        if line.startswith("Traceback (most recent call last):"):
            inside = True
            continue
        if line.startswith(("During handling of the above", "The above exception was")):
            continue
        if inside and (not line.strip() or line.startswith((" ", "\t"))):
            continue
        inside = False
        out.append(line)
    return out


class IsolatedRunner:
    """The same interface as InProcessRunner, with llama.cpp in a child process."""

    def __init__(
        self,
        path: str,
        params: LoadParams,
        model_id: str = "",
        check_memory: bool = True,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        runtime: Runtime | None = None,
        launcher: Sequence[str] = (),
        build: str = DEFAULT_BUILD,
    ) -> None:
        """``runtime``: the interpreter and environment of a build (default: this one);
        ``launcher``: a command prefix for the worker (``taskset -c 0``); ``build``: the
        build's name, for messages."""
        self.path = path
        self.params = params
        self.model_id = model_id or os.path.basename(path)
        self.timeout_s = timeout_s
        self.build = build
        rt = runtime or Runtime(sys.executable, {})
        #: what starts the worker, named when it dies before answering
        self.started_by = (
            (f"launcher {shlex.join(launcher)} with " if launcher else "")
            + f"interpreter {rt.python}"
            + (f" (build {build!r})" if build != DEFAULT_BUILD else "")
        )
        self._stderr = tempfile.TemporaryFile(mode="w+b")
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        env = {**os.environ, **rt.env}
        if "PYTHONPATH" in rt.env and os.environ.get("PYTHONPATH"):
            env["PYTHONPATH"] = rt.env["PYTHONPATH"] + os.pathsep + os.environ["PYTHONPATH"]
        try:
            self._proc = subprocess.Popen(
                [
                    *launcher,
                    rt.python,
                    "-m",
                    "pytest_llmperf.backends.worker",
                    str(req_r),
                    str(resp_w),
                    str(os.getpid()),  # the worker dies with this process
                ],
                pass_fds=(req_r, resp_w),
                stdin=subprocess.DEVNULL,
                stdout=self._stderr,
                stderr=self._stderr,
                env=env,
                close_fds=True,
            )
        except OSError as exc:
            for fd in (req_r, req_w, resp_r, resp_w):
                os.close(fd)
            self._stderr.close()
            what = f"launcher {' '.join(launcher)}" if launcher else f"interpreter {rt.python}"
            raise BackendError(
                f"cannot start the worker for {self.model_id}: {what}: {exc}"
            ) from None
        os.close(req_r)
        os.close(resp_w)
        self._w = os.fdopen(req_w, "w", buffering=1)
        self._r = os.fdopen(resp_r, "r")
        #: a request was sent and its reply not read (an interrupted call): the protocol
        #: is out of step, so the worker can only be killed
        self._pending = False
        try:
            reply = self._call(
                {
                    "op": "load",
                    "path": path,
                    "params": params.to_dict(),
                    "model_id": self.model_id,
                    "check_memory": check_memory,
                },
                timeout_s=max(timeout_s, LOAD_TIMEOUT_S),
            )
        except BackendError as exc:
            self.close()  # a failed load must not leave the worker process behind
            if build == DEFAULT_BUILD:
                raise
            hint = (
                ""  # the message says what to install
                if "cannot import" in str(exc)
                else "\nhint: a build's library must match llama-cpp-python's C API (rebuild "
                "it with `llmperf build`), and a build's interpreter needs llama-cpp-python "
                "and numpy installed"
            )
            raise type(exc)(
                f"build {build!r}: the worker could not load llama.cpp or the model: {exc}{hint}"
            ) from None
        except BaseException:
            self.close()
            raise
        self.load_ms = float(reply["load_ms"])
        self.resolved = dict(reply["resolved"])
        self.warnings = list(reply.get("warnings", []))
        self.software = dict(reply.get("software", {}))
        self.pid: int | None = self._proc.pid

    def _stderr_tail(self, lines: int = 15) -> str:
        try:
            self._stderr.seek(0)
            text = self._stderr.read().decode("utf-8", errors="replace")
        except (OSError, ValueError):
            return ""
        tail = [ln for ln in without_tracebacks(text.splitlines()) if ln.strip()][-lines:]
        return "\n".join(f"  | {ln}" for ln in tail)

    def _crash(self, what: str) -> BackendCrash:
        try:
            rc = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            rc = self._proc.wait()
        name = signal_name(rc)
        tail = self._stderr_tail()
        said = "its last lines below say why" if tail else "it printed nothing"
        hint = HINTS.get(name, f"the worker stopped before answering; {said}")
        msg = (
            f"the llama.cpp backend process for {self.model_id} ({self.path}, "
            f"{self.params.to_args() or 'default params'}) died during {what}: {name}\n"
            f"started by: {self.started_by}\nhint: {hint}"
            + (f"\nits output (last lines):\n{tail}" if tail else "")
        )
        return BackendCrash(msg, signal_name=name)

    def _call(self, request: dict[str, Any], timeout_s: float | None = None) -> dict[str, Any]:
        what = request["op"] + (f" {request['workload']['name']}" if "workload" in request else "")
        if self._proc.poll() is not None:
            raise self._crash(what)
        if self._pending:
            self._proc.kill()
            self._proc.wait()
            raise BackendCrash(
                f"the llama.cpp backend for {self.model_id} was stopped: an earlier request "
                f"was interrupted before its reply, so {what} cannot run on it",
                signal_name="interrupted",
            )
        self._pending = True
        try:
            self._w.write(json.dumps(request) + "\n")
            self._w.flush()
        except (BrokenPipeError, OSError):
            raise self._crash(what) from None
        limit = timeout_s if timeout_s is not None else self.timeout_s
        deadline = time.monotonic() + limit
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self._proc.kill()
                self._proc.wait()
                raise BackendCrash(
                    f"the llama.cpp backend for {self.model_id} did not finish {what} within "
                    f"{limit:.0f} s and was killed; raise --perf-timeout (or llmperf_timeout) "
                    "if the workload is legitimately this slow",
                    signal_name="timeout",
                )
            ready, _, _ = select.select([self._r], [], [], min(left, 1.0))
            if ready:
                line = self._r.readline()
                if not line:
                    raise self._crash(what)
                self._pending = False
                reply: dict[str, Any] = json.loads(line)
                if not reply.get("ok"):
                    etype = _ERROR_TYPES.get(str(reply.get("error")), BackendError)
                    raise etype(str(reply.get("message")))
                return reply

    def measure(self, workload: Workload, repetitions: int = 3, warmup: int = 1) -> Measurement:
        if isinstance(workload, StreamWorkload):
            return self.measure_stream(workload, repetitions, warmup)
        reply = self._call(
            {
                "op": "measure",
                "workload": {**workload.to_dict(), "name": workload.name},
                "repetitions": repetitions,
                "warmup": warmup,
            }
        )
        return Measurement.from_dict(reply["measurement"])

    def measure_load(self, repetitions: int = 3) -> Measurement:
        return self.measure(Workload(), repetitions=repetitions, warmup=0)

    def measure_stream(
        self, workload: StreamWorkload, repetitions: int = 3, warmup: int = 1
    ) -> Measurement:
        require_request(workload)
        reply = self._call(
            {
                "op": "stream",
                "workload": {**workload.to_dict(), "name": workload.name},
                "repetitions": repetitions,
                "warmup": warmup,
            }
        )
        return Measurement.from_dict(reply["measurement"])

    def settle(self) -> None:
        """Wait until the worker's compute threads stopped spinning after its last call."""
        if self._proc.poll() is None:
            devices.wait_idle(self._proc.pid)

    def close(self) -> None:
        if self._proc.poll() is None and self._pending:
            # interrupted mid-request (Ctrl-C): the worker is busy and would only read the
            # close request after finishing; stop it now
            self._proc.kill()
            self._proc.wait()
        if self._proc.poll() is None:
            try:
                self._w.write(json.dumps({"op": "close"}) + "\n")
                self._w.flush()
                self._proc.wait(timeout=10)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        for fh in (self._w, self._r, self._stderr):
            try:
                fh.close()
            except OSError:
                pass

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            if self._proc.poll() is None:
                self._proc.kill()
        except Exception:
            pass
