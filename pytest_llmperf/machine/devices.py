"""Host memory (psutil, /proc), GPU memory (NVML through pynvml) and hardware description.

NVML is reached through a module object with pynvml's interface, so tests can hand in a
fake one (tests/fake_nvml.py, ``FakeNVML``). Where there is no NVML or no GPU, VRAM is
*absent with a reason*, never 0 or a guess.
"""

from __future__ import annotations

import os
import platform
import re
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pytest_llmperf.errors import ModelFileError
from pytest_llmperf.model.metrics import CONTAMINATION_LIMIT

MB = 1024 * 1024

_nvml_override: Any = None
_nvml_lock = threading.Lock()


def set_nvml_module(module: Any) -> None:
    """Use ``module`` (pynvml's interface) instead of pynvml; ``None`` restores pynvml."""
    global _nvml_override
    _nvml_override = module


class NVMLUnavailable(Exception):
    pass


def nvml() -> Any:
    """An initialised NVML module, or raise NVMLUnavailable with the reason."""
    with _nvml_lock:
        mod = _nvml_override
        if mod is None:
            try:
                with warnings.catch_warnings():  # the pynvml shim's deprecation notice
                    warnings.simplefilter("ignore", FutureWarning)
                    import pynvml

                mod = pynvml
            except ImportError as exc:
                raise NVMLUnavailable(f"pynvml is not installed ({exc})") from exc
        try:
            mod.nvmlInit()
        except Exception as exc:
            raise NVMLUnavailable(f"NVML did not initialise: no NVIDIA driver ({exc})") from exc
        try:
            count = int(mod.nvmlDeviceGetCount())
        except Exception as exc:
            raise NVMLUnavailable(f"NVML could not count devices ({exc})") from exc
        if count == 0:
            raise NVMLUnavailable("NVML reports no GPU")
        return mod


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def visible_gpu_indices(mod: Any) -> list[int]:
    """NVML indices of the GPUs this process may use (CUDA_VISIBLE_DEVICES honoured)."""
    count = int(mod.nvmlDeviceGetCount())
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None or env.strip() == "":
        return list(range(count)) if env is None else []
    out: list[int] = []
    for part in env.split(","):
        part = part.strip()
        if part.isdigit() and int(part) < count:
            out.append(int(part))
        elif part.startswith("GPU-") or part.startswith("MIG-"):
            for i in range(count):
                h = mod.nvmlDeviceGetHandleByIndex(i)
                if _text(mod.nvmlDeviceGetUUID(h)).startswith(part):
                    out.append(i)
    return out


@dataclass
class GPUInfo:
    name: str
    driver: str
    total_mb: float
    count: int


def gpu_info() -> tuple[GPUInfo | None, str]:
    """The GPU(s) this process sees, or (None, reason)."""
    try:
        mod = nvml()
    except NVMLUnavailable as exc:
        return None, str(exc)
    idx = visible_gpu_indices(mod)
    if not idx:
        return None, "no GPU visible to this process (CUDA_VISIBLE_DEVICES)"
    handles = [mod.nvmlDeviceGetHandleByIndex(i) for i in idx]
    names = sorted({_text(mod.nvmlDeviceGetName(h)) for h in handles})
    total = sum(float(mod.nvmlDeviceGetMemoryInfo(h).total) for h in handles) / MB
    return GPUInfo(
        name=" + ".join(names),
        driver=_text(mod.nvmlSystemGetDriverVersion()),
        total_mb=total,
        count=len(idx),
    ), ""


def device_used_mb() -> float | None:
    """Memory used on the GPUs this process sees, by every process (NVML's device
    figure), in MiB; None without NVML or a visible GPU."""
    try:
        mod = nvml()
    except NVMLUnavailable:
        return None
    idx = visible_gpu_indices(mod)
    if not idx:
        return None
    handles = [mod.nvmlDeviceGetHandleByIndex(i) for i in idx]
    return sum(float(mod.nvmlDeviceGetMemoryInfo(h).used) for h in handles) / MB


class VRAMMonitor:
    """VRAM used by this process's model: before the load, then peak during runs.

    Uses NVML's per-process figure (what nvidia-smi shows for the process) when the
    driver reports it, else the device-wide used memory. ``value_mb()`` is peak - before.
    """

    def __init__(self, pid: int | None = None) -> None:
        self.pid = pid or os.getpid()
        self.reason = ""
        self.mode = ""
        self.before_mb: float | None = None
        self.peak_mb: float | None = None
        try:
            self._mod = nvml()
            self._handles = [
                self._mod.nvmlDeviceGetHandleByIndex(i) for i in visible_gpu_indices(self._mod)
            ]
            if not self._handles:
                raise NVMLUnavailable("no GPU visible to this process (CUDA_VISIBLE_DEVICES)")
        except NVMLUnavailable as exc:
            self._mod = None
            self._handles = []
            self.reason = str(exc)

    @property
    def available(self) -> bool:
        return self._mod is not None

    def _process_mb(self) -> float | None:
        mod = self._mod
        total = 0.0
        seen = False
        for h in self._handles:
            try:
                procs = mod.nvmlDeviceGetComputeRunningProcesses(h)
            except Exception:
                return None
            for p in procs:
                if int(p.pid) == self.pid:
                    used = getattr(p, "usedGpuMemory", None)
                    if used is None:
                        return None
                    total += float(used) / MB
                    seen = True
        return total if seen else 0.0

    def _device_mb(self) -> float:
        return sum(float(self._mod.nvmlDeviceGetMemoryInfo(h).used) for h in self._handles) / MB

    def read_mb(self) -> float | None:
        if not self.available:
            return None
        if self.mode in ("", "process"):
            value = self._process_mb()
            if value is not None:
                self.mode = "process"
                return value
            self.mode = "device"
        return self._device_mb()

    def start(self) -> None:
        value = self.read_mb()
        self.before_mb = value
        self.peak_mb = value

    def sample(self) -> None:
        value = self.read_mb()
        if value is not None and (self.peak_mb is None or value > self.peak_mb):
            self.peak_mb = value

    def value_mb(self) -> tuple[float | None, str]:
        if not self.available:
            return None, self.reason
        if self.before_mb is None or self.peak_mb is None:
            return None, "VRAM was not sampled"
        return max(self.peak_mb - self.before_mb, 0.0), ""


# -- host memory ---------------------------------------------------------------------------


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark for this process (Linux); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def current_rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / MB


def peak_rss_mb() -> float:
    """The process's peak RSS since the last reset (VmHWM), else its current RSS."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) * 1024 / MB
    except OSError:
        pass
    return current_rss_mb()


@dataclass
class RSSMonitor:
    """Peak RSS while a model is loaded and run; falls back to sampled psutil RSS."""

    exact: bool = False
    peak_mb: float = 0.0
    notes: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.exact = reset_peak_rss()
        self.peak_mb = current_rss_mb()

    def sample(self) -> None:
        value = peak_rss_mb() if self.exact else current_rss_mb()
        self.peak_mb = max(self.peak_mb, value)


def _size(n_bytes: int) -> str:
    """``1.5 GiB`` or, below a GiB, ``12.3 MiB`` (never a bare ``0.0 GiB``)."""
    if n_bytes >= 1024 * MB:
        return f"{n_bytes / MB / 1024:.1f} GiB"
    return f"{n_bytes / MB:.1f} MiB"


def check_fits_in_memory(path: str, file_size: int, params: Any) -> None:
    """Refuse up front a model whose file is larger than the memory available for it."""
    import psutil

    if os.environ.get("LLMPERF_SKIP_MEMORY_CHECK"):
        return
    available = int(psutil.virtual_memory().available)
    on_gpu = getattr(params, "n_gpu_layers", 0) != 0
    if on_gpu:
        return  # weights may live in VRAM; llama.cpp reports allocation failures itself
    if file_size > available:
        raise ModelFileError(
            f"model file {path} ({_size(file_size)}) is larger than the memory "
            f"available ({_size(available)}): it cannot run on this machine's "
            "CPU. Use a smaller quantization, offload layers to a GPU (n_gpu_layers), or set "
            "LLMPERF_SKIP_MEMORY_CHECK=1 to try anyway"
        )


# -- hardware description ----------------------------------------------------------------


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if not line.strip():
                    if out:
                        break
                    continue
                name, sep, value = line.partition(":")
                if sep:
                    out.setdefault(name.strip().lower(), value.strip())
    except OSError:
        pass
    return out


def _thread_files(name: str) -> Iterator[str]:
    """The text of ``/proc/self/task/<tid>/<name>`` for each thread of this process (a
    thread gone meanwhile is skipped; nothing where /proc does not tell)."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/{name}") as fh:
                yield fh.read()
        except OSError:
            continue


def thread_affinities() -> list[str]:
    """The CPUs each thread of this process may run on (Cpus_allowed_list), distinct,
    sorted: after a run, where the compute threads were placed."""
    return sorted(
        {
            line.split(":", 1)[1].strip()
            for text in _thread_files("status")
            for line in text.splitlines()
            if line.startswith("Cpus_allowed_list:")
        }
    )


#: environment variables that change how llama.cpp, ggml or their OpenMP threads run
LLAMA_ENV_PREFIXES = ("GGML_", "LLAMA_", "OMP_", "GOMP_", "KMP_", "MKL_", "OPENBLAS_", "CUDA_")
LLAMA_ENV_NAMES = frozenset({"LD_PRELOAD", "LD_LIBRARY_PATH", "MALLOC_ARENA_MAX"})


def llama_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment variables of this process that llama.cpp, ggml, OpenMP or the
    dynamic loader read: two sides of a paired run must see the same."""
    source = os.environ if env is None else env
    return {
        k: v
        for k, v in sorted(source.items())
        if k.startswith(LLAMA_ENV_PREFIXES) or k in LLAMA_ENV_NAMES
    }


def mapped_libraries(pattern: str = r"lib(llama|ggml)[^/]*\.so") -> dict[str, dict[str, int]]:
    """The shared libraries of llama.cpp this process has mapped, each with its mapped
    size and how much of it huge pages back (kB, from /proc/self/smaps): where two sides'
    code is mapped differently, their speed can differ with nothing else changed."""
    rx = re.compile(pattern)
    out: dict[str, dict[str, int]] = {}
    current: dict[str, int] | None = None
    try:
        with open("/proc/self/smaps") as fh:
            for line in fh:
                head = line.split()
                if head and "-" in head[0] and len(head) >= 5 and not line[0].isupper():
                    path = head[5] if len(head) >= 6 else ""
                    current = (
                        out.setdefault(path, {"size_kb": 0, "huge_kb": 0})
                        if path and rx.search(path)
                        else None
                    )
                elif current is not None and len(head) >= 2 and head[1].isdigit():
                    if head[0] == "Size:":
                        current["size_kb"] += int(head[1])
                    elif head[0] in ("AnonHugePages:", "FilePmdMapped:"):
                        current["huge_kb"] += int(head[1])
    except OSError:
        return {}
    return out


def thread_cpus() -> list[int]:
    """The CPUs this process's threads last ran on (field 39 of /proc/self/task/*/stat),
    distinct, sorted."""
    out: set[int] = set()
    for text in _thread_files("stat"):
        try:
            out.add(int(text.rsplit(")", 1)[1].split()[36]))
        except (IndexError, ValueError):
            continue
    return sorted(out)


def cpu_time_ns(pid: int) -> int | None:
    """The CPU time all threads of process ``pid`` have run so far, in ns (the first
    field of each /proc/PID/task/TID/schedstat); None where the system does not tell."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                total += int(fh.read().split()[0])
        except (OSError, IndexError, ValueError):
            continue
    return total


def wait_idle(
    pid: int, *, window_s: float = 0.002, busy: float = 0.1, most_s: float = 0.2
) -> float:
    """Wait until process ``pid`` stops using the CPU: its threads ran less than ``busy``
    of one CPU over a ``window_s`` window (at most ``most_s``). llama.cpp's compute
    threads keep spinning for a while after their last work (OpenMP's spin count, ggml's
    polling); a paired round that starts the other side then would have both compete for
    the cores. Returns the seconds waited."""
    start = time.monotonic()
    before = cpu_time_ns(pid)
    if before is None:
        return 0.0
    while time.monotonic() - start < most_s:
        time.sleep(window_s)
        now = cpu_time_ns(pid)
        if now is None or now - before < busy * window_s * 1e9:
            break
        before = now
    return time.monotonic() - start


def wait_quiet(*, window_s: float = 0.5, most_s: float = 10.0) -> float:
    """Wait until no other process competes for the CPU over a ``window_s`` window (by
    :func:`contention`, against :data:`CONTAMINATION_LIMIT`), at most ``most_s``: before
    re-measuring what was measured while something else ran. Returns the seconds waited
    (0 where the system does not tell)."""
    start = time.monotonic()
    while time.monotonic() - start < most_s:
        before = cpu_snapshot()
        time.sleep(window_s)
        seen = contention(before, cpu_snapshot())
        if not seen or max(seen.values()) <= CONTAMINATION_LIMIT:
            break
    return time.monotonic() - start


@dataclass(frozen=True)
class Placement:
    """Where the calling thread may run (its CPU affinity) and how it is scheduled (policy,
    static priority). ggml's threadpool places its caller, its worker 0, by the pool's CPU
    mask and priority (llama.cpp's -C and --prio) when the pool is made: :func:`placed`
    confines that to the model's own loads and runs."""

    cpus: frozenset[int]
    policy: int
    priority: int

    @staticmethod
    def current() -> Placement | None:
        """The calling thread's placement; None where the platform cannot say."""
        try:
            return Placement(
                frozenset(os.sched_getaffinity(0)),
                os.sched_getscheduler(0),
                os.sched_getparam(0).sched_priority,
            )
        except (AttributeError, OSError):
            return None

    def apply(self) -> None:
        """Place the calling thread so (best effort: what the OS refuses stays as it is)."""
        try:
            if frozenset(os.sched_getaffinity(0)) != self.cpus:
                os.sched_setaffinity(0, self.cpus)
            if (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority) != (
                self.policy,
                self.priority,
            ):
                os.sched_setscheduler(0, self.policy, os.sched_param(self.priority))
        except (AttributeError, OSError):
            pass


@contextmanager
def placed(inside: Placement | None = None) -> Iterator[Placement | None]:
    """Run the block with the calling thread placed as ``inside`` (when given), then put it
    back where it was, whatever the block (or the native code it calls) did to it. Yields
    the placement it will put back."""
    before = Placement.current()
    if inside is not None and before is not None:
        inside.apply()
    try:
        yield before
    finally:
        if before is not None:
            before.apply()


def default_threads() -> int:
    """llama-bench's default thread count: the number of physical cores."""
    import psutil

    return int(psutil.cpu_count(logical=False) or os.cpu_count() or 1)


def cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


#: x86-64 micro-architecture levels (psABI), highest first, and the flags each needs
_X86_LEVELS: tuple[tuple[str, frozenset[str]], ...] = (
    ("x86-64-v4", frozenset({"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"})),
    ("x86-64-v3", frozenset({"avx2", "bmi1", "bmi2", "f16c", "fma", "movbe"})),
    ("x86-64-v2", frozenset({"sse4_2", "popcnt", "ssse3"})),
)
#: extensions that change which llama.cpp kernels run, named after the level
_X86_EXTRAS = ("avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile")


def cpu_identity() -> dict[str, Any]:
    """What tells CPUs with the same model name apart (a virtual machine often reports
    just "AMD EPYC"): family and model numbers, and the ISA level with the extensions
    llama.cpp uses, e.g. ``x86-64-v4+avx512_bf16+avx512_vnni``."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    isa = ""
    for level, needed in _X86_LEVELS:
        if needed <= flags:
            isa = level
            break
    if isa:
        isa = "+".join([isa, *[x for x in _X86_EXTRAS if x in flags]])
    elif info.get("features"):  # arm64: the feature list llama.cpp checks
        feats = set(info["features"].split())
        isa = "+".join(
            ["arm64", *[f for f in ("asimddp", "i8mm", "sve", "sve2", "bf16") if f in feats]]
        )
    out: dict[str, Any] = {}
    if info.get("cpu family"):
        out["cpu_family"] = info["cpu family"]
    if info.get("model"):
        out["cpu_model"] = info["model"]
    if isa:
        out["isa"] = isa
    return out


def machine_info() -> dict[str, Any]:
    import psutil

    gpu, reason = gpu_info()
    return {
        "cpu": cpu_model(),
        **cpu_identity(),
        "cores": int(os.cpu_count() or 1),
        "physical_cores": int(psutil.cpu_count(logical=False) or os.cpu_count() or 1),
        "ram_gb": round(psutil.virtual_memory().total / MB / 1024, 1),
        "gpu": gpu.name if gpu else None,
        "gpu_count": gpu.count if gpu else 0,
        "gpu_driver": gpu.driver if gpu else None,
        "vram_total_mb": round(gpu.total_mb) if gpu else None,
        "gpu_absent_reason": reason or None,
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
    }


# -- contention -----------------------------------------------------------------------


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU accounting at one moment: the machine's busy jiffies (all CPUs, steal
    included), this process's own (all its threads), and the kernel's CPU pressure
    counter (microseconds some task waited for a CPU; None without PSI)."""

    wall: float
    busy: int
    own: int
    stall_us: int | None


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_snapshot() -> CpuSnapshot | None:
    """Now's counters, or None where /proc does not tell (not Linux)."""
    import time

    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()[1:]
        with open("/proc/self/stat") as fh:
            own_fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal: busy is all but idle and iowait
    vals = [int(x) for x in fields[:8]]
    busy = sum(vals) - vals[3] - vals[4]
    own = int(own_fields[11]) + int(own_fields[12])  # utime + stime, all threads
    stall: int | None = None
    try:
        with open("/proc/pressure/cpu") as fh:
            for line in fh:
                if line.startswith("some"):
                    stall = int(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        stall = None
    return CpuSnapshot(time.perf_counter(), busy, own, stall)


def contention(before: CpuSnapshot | None, after: CpuSnapshot | None) -> dict[str, float]:
    """What other processes did between two snapshots: ``others_cpu``, the share of the
    machine's CPU capacity they used (busy time minus this process's own); and
    ``cpu_stall``, the share of the wall time some task waited for a CPU (PSI). Jiffies
    are 10 ms: below a few of them the first figure is noise, so it is reported as 0."""
    if before is None or after is None:
        return {}
    wall = after.wall - before.wall
    if wall <= 0:
        return {}
    cpus = os.cpu_count() or 1
    others = max(0, (after.busy - before.busy) - (after.own - before.own))
    out = {"others_cpu": 0.0 if others <= 2 else others / _TICKS / (wall * cpus)}
    if before.stall_us is not None and after.stall_us is not None:
        out["cpu_stall"] = max(0, after.stall_us - before.stall_us) / 1e6 / wall
    return {k: round(v, 4) for k, v in out.items()}
