"""FakeNVML: a stand-in with pynvml's interface, for machines without an NVIDIA GPU.

Only what pytest_llmperf.machine.devices calls. Memory figures are set by the test; a process's
usage can grow as if a model were loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MB = 1024 * 1024


class NVMLError(Exception):
    pass


@dataclass
class _Memory:
    total: int
    used: int
    free: int


@dataclass
class _Process:
    pid: int
    usedGpuMemory: int | None


@dataclass
class FakeGPU:
    name: str = "NVIDIA Fake H200"
    total_mb: int = 141_000
    used_mb: int = 500
    uuid: str = "GPU-00000000-fake"
    #: pid -> MB used by that process
    processes: dict[int, int] = field(default_factory=dict)


class FakeNVML:
    """Module-like object: ``devices.set_nvml_module(FakeNVML([FakeGPU()]))``."""

    def __init__(
        self,
        gpus: list[FakeGPU] | None = None,
        *,
        fail_init: bool = False,
        per_process: bool = True,
        driver: str = "570.00",
    ) -> None:
        self.gpus = gpus if gpus is not None else [FakeGPU()]
        self.fail_init = fail_init
        self.per_process = per_process
        self.driver = driver
        self.init_calls = 0

    def nvmlInit(self) -> None:
        self.init_calls += 1
        if self.fail_init:
            raise NVMLError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> FakeGPU:
        return self.gpus[i]

    def nvmlDeviceGetName(self, h: FakeGPU) -> str:
        return h.name

    def nvmlDeviceGetUUID(self, h: FakeGPU) -> str:
        return h.uuid

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlDeviceGetMemoryInfo(self, h: FakeGPU) -> _Memory:
        used = (h.used_mb + sum(h.processes.values())) * MB
        return _Memory(total=h.total_mb * MB, used=used, free=h.total_mb * MB - used)

    def nvmlDeviceGetComputeRunningProcesses(self, h: FakeGPU) -> list[Any]:
        if not self.per_process:
            raise NVMLError("Not Supported")
        return [_Process(pid, mb * MB) for pid, mb in h.processes.items()]
