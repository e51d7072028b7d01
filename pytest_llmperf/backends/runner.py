"""Runners: a loaded model configuration that turns workloads into Measurements.

``InProcessRunner`` runs llama.cpp in this process. ``IsolatedRunner`` (the default in
the plugin) runs it in a child process kept alive for the configuration, talking JSON
lines over a dedicated pipe: a crash (SIGILL, SIGSEGV, an abort, the OOM killer) or a
hang past the timeout fails only the tests that used it, with the signal and a hint.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from pytest_llmperf.errors import (
    BackendCrash,
    BackendError,
    LLMPerfError,
    ModelFileError,
    UsageError,
)
from pytest_llmperf.machine import devices, fingerprint
from pytest_llmperf.machine.builds import DEFAULT as DEFAULT_BUILD
from pytest_llmperf.machine.builds import Runtime
from pytest_llmperf.model.metrics import Sample
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.results import Measurement
from pytest_llmperf.model.workloads import StreamWorkload, Workload, require_request

if TYPE_CHECKING:
    from pytest_llmperf.backends.stream import StreamModel

DEFAULT_TIMEOUT_S = 600.0
#: the least time a model load is given (the per-measurement timeout may be shorter)
LOAD_TIMEOUT_S = 300.0


class Runner(Protocol):
    model_id: str
    path: str
    params: LoadParams
    load_ms: float
    resolved: dict[str, Any]
    warnings: list[str]
    #: the llama.cpp this runner runs: version, build and system info
    software: dict[str, Any]

    def measure(self, workload: Workload, repetitions: int = 3, warmup: int = 1) -> Measurement: ...

    def measure_load(self, repetitions: int = 3) -> Measurement: ...

    def measure_stream(
        self, workload: StreamWorkload, repetitions: int = 3, warmup: int = 1
    ) -> Measurement: ...

    def close(self) -> None: ...


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class InProcessRunner:
    """llama.cpp in this process. Cheapest, but a native crash takes the process down."""

    def __init__(
        self,
        path: str,
        params: LoadParams,
        model_id: str = "",
        check_memory: bool = True,
        dedicated: bool = False,
    ) -> None:
        """``dedicated``: this process runs nothing but this model (the isolated worker),
        so its peak RSS is the model's; otherwise rss_peak_mb is absent with the reason."""
        from pytest_llmperf.backends.engine import LoadedModel

        self.dedicated = dedicated
        self.path = path
        self.params = params
        self.model_id = model_id or os.path.basename(path)
        self._rss = devices.RSSMonitor()
        self._vram = devices.VRAMMonitor()
        self._rss.start()
        self._vram.start()
        self._model = LoadedModel(path, params, model_id=self.model_id, check_memory=check_memory)
        #: llama-cpp-python's Llama for streamed requests: loaded on the first one
        self._stream: StreamModel | None = None
        self._rss.sample()
        self._vram.sample()
        self.load_ms = self._model.load.load_ms
        self.resolved = dict(self._model.load.resolved)
        self.warnings = list(self._model.warnings)
        self.software = fingerprint.software()

    def _run_values(self, load_ms: list[float]) -> tuple[dict[str, list[float]], dict[str, str]]:
        values: dict[str, list[float]] = {
            "load_ms": load_ms,
            "model_size_mb": [self._model.info.file_size / devices.MB],
        }
        absent: dict[str, str] = {}
        # after a streamed request, the process holds the model twice
        two = (
            "this process also holds llama-cpp-python's copy of the model (loaded for "
            "streamed requests), so its memory is not the engine model's alone"
        )
        if not self.dedicated:
            absent["rss_peak_mb"] = (
                "in-process run: the test process's memory is not the model's alone "
                "(run isolated, the default, to measure it)"
            )
        elif self._stream is not None:
            absent["rss_peak_mb"] = two
        else:
            values["rss_peak_mb"] = [round(self._rss.peak_mb, 1)]
        vram, reason = self._vram.value_mb()
        if vram is None:
            absent["vram_mb"] = reason
        elif self._stream is not None:
            absent["vram_mb"] = two
        else:
            values["vram_mb"] = [round(vram, 1)]
        if self._stream is not None:
            values["stream_load_ms"] = [self._stream.load_ms]
        return values, absent

    def measure(self, workload: Workload, repetitions: int = 3, warmup: int = 1) -> Measurement:
        if workload.kind == "load":
            return self.measure_load(repetitions)
        if isinstance(workload, StreamWorkload):
            return self.measure_stream(workload, repetitions, warmup)
        started = _now()
        samples = self._model.run(workload, repetitions=repetitions, warmup=warmup)
        self._rss.sample()
        self._vram.sample()
        resolved = dict(
            self.resolved,
            vram_mode=self._vram.mode or None,
            rss_exact=self._rss.exact,
            thread_affinity=devices.thread_affinities(),
        )
        return self._measurement(workload, samples, warmup, started, repetitions, resolved)

    def measure_load(self, repetitions: int = 3) -> Measurement:
        """Cold load time: close this configuration's model, then load it R times."""
        from pytest_llmperf.backends.engine import LoadedModel

        started = _now()
        self._model.close()
        times: list[float] = []
        for _ in range(repetitions):
            m = LoadedModel(self.path, self.params, model_id=self.model_id, check_memory=False)
            times.append(m.load.load_ms)
            self._rss.sample()
            self._vram.sample()
            m.close()
        self._model = LoadedModel(
            self.path, self.params, model_id=self.model_id, check_memory=False
        )
        return self._measurement(
            Workload(), [], 0, started, repetitions, dict(self.resolved), load_times=times
        )

    def measure_stream(
        self, workload: StreamWorkload, repetitions: int = 3, warmup: int = 1
    ) -> Measurement:
        """A streamed request through llama-cpp-python's high-level path (its Llama is
        loaded on the first such request and kept), each repetition followed by the
        engine on the same token counts (see :mod:`pytest_llmperf.backends.stream`)."""
        require_request(workload)
        started = _now()
        stream = self._stream_model()
        request = stream.prepare(workload)
        engine_wl = Workload(n_prompt=request.n_prompt, n_gen=workload.n_gen)
        self._model.check_fits(engine_wl)
        samples = stream.measure(
            request,
            repetitions,
            warmup,
            lambda: self._model.run(engine_wl, repetitions=1, warmup=0)[0],
        )
        self._rss.sample()
        self._vram.sample()
        info = {**stream.describe(), **request.info}
        overrun = stream.overrun(workload, samples)
        if overrun:
            info["overrun"] = overrun
        resolved = dict(
            self.resolved,
            stream=info,
            thread_affinity=devices.thread_affinities(),
        )
        return self._measurement(workload, samples, warmup, started, repetitions, resolved)

    def _measurement(
        self,
        workload: Workload,
        samples: list[Sample],
        warmup: int,
        started: str,
        repetitions: int,
        resolved: dict[str, Any],
        load_times: list[float] | None = None,
    ) -> Measurement:
        values, absent = self._run_values(load_times or [self.load_ms])
        return Measurement.from_samples(
            model=self.model_id,
            model_path=self.path,
            params=self.params,
            workload=workload,
            samples=samples,
            run_values=values,
            absent=absent,
            resolved=resolved,
            started_at=started,
            repetitions=repetitions,
            warmup=warmup,
        )

    def _stream_model(self) -> StreamModel:
        if self._stream is None:
            from pytest_llmperf.backends.stream import StreamModel

            m = self._model
            self._stream = StreamModel(
                self.path,
                self.params,
                self.resolved,
                overrides=m.overrides(),  # the engine's, resolved the engine's way
                model_name=m.info.name,
                expected_overridden=self.resolved.get("overridden_tensors"),
            )
            self._rss.sample()
            self._vram.sample()
        return self._stream

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._model.close()


# -- isolation ----------------------------------------------------------------------------

_HINTS = {
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
            raise type(exc)(
                f"build {build!r}: the worker could not load llama.cpp or the model: "
                f"{exc}\nhint: a build's library must match llama-cpp-python's C API "
                "(rebuild it with `llmperf build`), and a build's interpreter needs "
                "llama-cpp-python and numpy installed"
            ) from None
        except BaseException:
            self.close()
            raise
        self.load_ms = float(reply["load_ms"])
        self.resolved = dict(reply["resolved"])
        self.warnings = list(reply.get("warnings", []))
        self.software = dict(reply.get("software", {}))
        self.pid = self._proc.pid

    def _stderr_tail(self, lines: int = 15) -> str:
        try:
            self._stderr.seek(0)
            text = self._stderr.read().decode("utf-8", errors="replace")
        except (OSError, ValueError):
            return ""
        tail = [ln for ln in text.splitlines() if ln.strip()][-lines:]
        return "\n".join(f"  | {ln}" for ln in tail)

    def _crash(self, what: str) -> BackendCrash:
        try:
            rc = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            rc = self._proc.wait()
        name = signal_name(rc)
        hint = _HINTS.get(name, "see the backend's output above")
        tail = self._stderr_tail()
        msg = (
            f"the llama.cpp backend process for {self.model_id} ({self.path}, "
            f"{self.params.to_args() or 'default params'}) died during {what}: {name}\n"
            f"hint: {hint}" + (f"\nbackend output (last lines):\n{tail}" if tail else "")
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


def make_runner(
    path: str,
    params: LoadParams,
    model_id: str = "",
    *,
    isolate: bool = True,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    check_memory: bool = True,
    runtime: Runtime | None = None,
    launcher: Sequence[str] = (),
    build: str = DEFAULT_BUILD,
) -> Runner:
    """A runner for one configuration; another build or a launcher always runs isolated
    (a process can hold one llama.cpp library only)."""
    if isolate or build != DEFAULT_BUILD or launcher:
        return IsolatedRunner(
            path,
            params,
            model_id,
            check_memory=check_memory,
            timeout_s=timeout_s,
            runtime=runtime,
            launcher=launcher,
            build=build,
        )
    return InProcessRunner(path, params, model_id, check_memory=check_memory)
