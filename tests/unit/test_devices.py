"""VRAM and host memory through the same interfaces as a real GPU (FakeNVML here)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from pytest_llmperf.machine import devices
from tests.fake_nvml import FakeGPU, FakeNVML


@pytest.fixture
def fake() -> Iterator[FakeNVML]:
    nv = FakeNVML([FakeGPU()])
    devices.set_nvml_module(nv)
    yield nv
    devices.set_nvml_module(None)


def test_vram_is_the_process_peak_minus_before(fake: FakeNVML) -> None:
    gpu = fake.gpus[0]
    mon = devices.VRAMMonitor()
    mon.start()
    assert mon.mode == "process"
    gpu.processes[os.getpid()] = 1200  # the model is loaded
    mon.sample()
    gpu.processes[os.getpid()] = 1500  # compute buffers during a run
    mon.sample()
    gpu.processes[os.getpid()] = 1300
    mon.sample()
    gpu.processes[4242] = 9000  # another process: not ours
    mon.sample()
    assert mon.value_mb() == (1500.0, "")


def test_device_wide_fallback_without_per_process_figures(fake: FakeNVML) -> None:
    fake.per_process = False
    gpu = fake.gpus[0]
    mon = devices.VRAMMonitor()
    mon.start()
    gpu.used_mb += 800
    mon.sample()
    assert mon.mode == "device"
    assert mon.value_mb() == (800.0, "")


def test_absent_with_a_reason_never_zero() -> None:
    devices.set_nvml_module(FakeNVML(fail_init=True))
    try:
        mon = devices.VRAMMonitor()
        mon.start()
        mon.sample()
        value, reason = mon.value_mb()
        assert value is None and "NVML did not initialise" in reason
        devices.set_nvml_module(FakeNVML([]))
        value, reason = devices.VRAMMonitor().value_mb()
        assert value is None and reason == "NVML reports no GPU"
    finally:
        devices.set_nvml_module(None)


def test_cuda_visible_devices(fake: FakeNVML, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.gpus.append(FakeGPU(name="NVIDIA Other", uuid="GPU-11111111"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    info, _ = devices.gpu_info()
    assert info is not None and info.name == "NVIDIA Other" and info.count == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-1111")
    assert devices.visible_gpu_indices(fake) == [1]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    info, reason = devices.gpu_info()
    assert info is None and "CUDA_VISIBLE_DEVICES" in reason


def test_machine_info_with_and_without_gpu(fake: FakeNVML) -> None:
    info = devices.machine_info()
    assert info["gpu"] == "NVIDIA Fake H200" and info["gpu_driver"] == "570.00"
    assert info["vram_total_mb"] == 141_000
    devices.set_nvml_module(FakeNVML(fail_init=True))
    info = devices.machine_info()
    assert info["gpu"] is None and info["gpu_absent_reason"]
    assert info["cores"] >= 1 and info["ram_gb"] > 0


def test_peak_rss() -> None:
    mon = devices.RSSMonitor()
    mon.start()
    block = bytearray(64 * 1024 * 1024)
    block[::4096] = b"x" * len(block[::4096])
    mon.sample()
    assert mon.peak_mb >= 64
    del block


def test_wait_quiet_waits_while_another_process_takes_the_cpu() -> None:
    """A real busy child: the machine is not quiet, so the wait lasts its most."""
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        waited = devices.wait_quiet(window_s=0.2, most_s=0.6)
    finally:
        burner.kill()
        burner.wait()
    assert waited >= 0.6
