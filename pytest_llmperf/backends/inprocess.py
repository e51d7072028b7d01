"""The in-process runner: llama.cpp in this process, one model configuration.

Cheapest, but a native crash takes the process down: the plugin runs it inside the
isolated runner's worker (:mod:`pytest_llmperf.backends.runner`). It holds the engine's
:class:`~pytest_llmperf.backends.engine.LoadedModel` and, from the first streamed request
on, the streaming path's :class:`~pytest_llmperf.backends.stream.StreamModel`; it turns
their samples into Measurements with the run's memory values.
"""

from __future__ import annotations

import datetime as _dt
import os
from typing import TYPE_CHECKING, Any

from pytest_llmperf.backends.answers import check_measurement
from pytest_llmperf.machine import devices, fingerprint
from pytest_llmperf.model.metrics import Sample
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.results import Measurement
from pytest_llmperf.model.workloads import StreamWorkload, Workload, require_request
from pytest_llmperf.native import llama_lib

if TYPE_CHECKING:
    from pytest_llmperf.backends.stream import StreamModel


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
        # what could make two processes of one configuration differ: the libraries they
        # mapped (and how: huge pages), the environment llama.cpp and OpenMP read
        self.resolved["libraries"] = devices.mapped_libraries()
        self.resolved["environment"] = devices.llama_environment()
        # the build's ggml devices, and whether it can offload to a GPU at all
        self.resolved["ggml_devices"] = llama_lib.device_facts()
        self.resolved["supports_gpu_offload"] = llama_lib.supports_gpu_offload()
        self.warnings = list(self._model.warnings)
        self.software = fingerprint.software()
        self.pid: int | None = os.getpid()

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
            thread_cpus=devices.thread_cpus(),
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
            thread_cpus=devices.thread_cpus(),
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
        measured = Measurement.from_samples(
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
        return check_measurement(
            measured, workload.name, repetitions, f"llama.cpp ({self.model_id})"
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

    def settle(self) -> None:
        """Nothing to wait for: this process's threads are the caller's."""

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._model.close()
