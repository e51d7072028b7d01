"""Runners: in-process and isolated give the same measurements; crashes are contained."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from pytest_llmperf.backends.inprocess import InProcessRunner
from pytest_llmperf.backends.runner import IsolatedRunner
from pytest_llmperf.errors import BackendCrash, ModelFileError, UsageError
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.results import Measurement
from pytest_llmperf.model.workloads import Workload

P = LoadParams(n_threads=2, n_ctx=512)


@pytest.fixture(scope="module")
def model(tiny_model) -> Path:
    return tiny_model("moe-mxfp4")


@pytest.mark.parametrize("cls", [InProcessRunner, IsolatedRunner])
def test_measurement_shape(cls, model: Path) -> None:
    r = cls(str(model), P, "tiny-moe-mxfp4")
    try:
        m = r.measure(Workload.parse("pg32,16"), repetitions=3, warmup=1)
        assert isinstance(m, Measurement)
        assert len(m.samples) == 3 and m.repetitions == 3
        for name in ("tg_tps", "pp_tps", "ttft_ms", "itl_p95_ms", "e2e_ms"):
            assert len(m.values[name]) == 3
        assert m.values["load_ms"] == [pytest.approx(r.load_ms)]
        if cls is IsolatedRunner:  # a process of its own: its peak RSS is the model's
            assert m.values["rss_peak_mb"][0] > 50
        else:
            assert "rss_peak_mb" not in m.values and "in-process" in m.absent["rss_peak_mb"]
        assert "vram_mb" not in m.values and m.absent["vram_mb"]
        # the runner reports the llama.cpp it runs; the session composes the fingerprint
        assert r.software["llama_cpp"] and "CPU" in r.software["llama_system_info"]
        assert m.resolved["n_threads"] == 2
        load = r.measure_load(repetitions=2)
        assert load.workload.name == "load" and len(load.values["load_ms"]) == 2
        again = r.measure(Workload.parse("tg8"), repetitions=1, warmup=0)
        assert len(again.samples[0].token_ns) == 8  # still usable after the reloads
    finally:
        r.close()


def test_isolated_runs_in_another_process(model: Path) -> None:
    r = IsolatedRunner(str(model), P, "m")
    try:
        m = r.measure(Workload.parse("tg4"), 1, 0)
        assert m.resolved["worker_pid"] == r.pid != os.getpid()
    finally:
        r.close()


@pytest.mark.parametrize(
    ("sig", "hint"),
    [
        ("SIGSEGV", "segmentation fault"),
        ("SIGILL", "CPU features this machine lacks"),
        ("SIGKILL", "out-of-memory killer"),
        ("SIGABRT", "GGML_ASSERT"),
    ],
)
def test_crash_names_the_signal_and_gives_a_hint(model: Path, sig: str, hint: str) -> None:
    r = IsolatedRunner(str(model), P, "m")
    try:
        with pytest.raises(BackendCrash) as info:
            r._call({"op": "crash", "signal": sig})
        assert sig in str(info.value) and hint in str(info.value)
        assert info.value.signal_name == sig
        with pytest.raises(BackendCrash):  # the dead runner stays dead, clearly
            r.measure(Workload.parse("tg4"), 1, 0)
    finally:
        r.close()


def test_killed_mid_run(model: Path) -> None:
    r = IsolatedRunner(str(model), LoadParams(n_threads=2, n_ctx=4096), "m")
    try:
        threading.Timer(0.5, lambda: os.kill(r.pid, signal.SIGKILL)).start()
        with pytest.raises(BackendCrash, match="SIGKILL"):
            r.measure(Workload.parse("tg4000"), repetitions=50, warmup=0)
    finally:
        r.close()


def test_timeout_kills_a_hung_backend(model: Path) -> None:
    r = IsolatedRunner(str(model), LoadParams(n_threads=2, n_ctx=4096), "m", timeout_s=1.0)
    try:
        start = time.monotonic()
        with pytest.raises(BackendCrash, match="did not finish measure tg4000 within 1 s"):
            r.measure(Workload.parse("tg4000"), repetitions=50, warmup=0)
        assert time.monotonic() - start < 10
    finally:
        r.close()


def test_errors_cross_the_process_boundary_with_their_type(tmp_path: Path, model: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        IsolatedRunner(str(tmp_path / "x.gguf"), P, "x")
    r = IsolatedRunner(str(model), LoadParams(n_threads=1, n_ctx=64), "m")
    try:
        with pytest.raises(UsageError, match="raise n_ctx"):
            r.measure(Workload.parse("tg300"), 1, 0)
        assert len(r.measure(Workload.parse("tg4"), 1, 0).samples) == 1  # still alive
    finally:
        r.close()
