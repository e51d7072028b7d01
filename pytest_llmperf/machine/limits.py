"""The machine's measured limits: sustained memory read bandwidth and an f32 GEMM rate,
with a given thread count, measured once and cached per machine id and thread count.

**Read bandwidth** is a STREAM-style read kernel through numpy: ``T`` threads each take
``np.maximum.reduce`` over a disjoint slice of one float32 buffer at least 4x the
last-level cache (sized from ``/sys/devices/system/cpu/cpu*/cache``; this project's
2-core machine reports a 300 MiB L3, so 1.2 GiB), one pass = every thread over its slice,
timed from a barrier to the last thread's end. numpy rather than a C kernel compiled at
run time: it is already a dependency (no compiler needed on the machine), it releases
the GIL inside a reduction over numbers, so the threads read concurrently, and its SIMD
max runs far faster than memory from cache (about 64 GB/s a core from L2 here, against
about 10 GB/s from DRAM), so the figure is memory's, not the kernel's.

**Compute** is a float32 matrix product (``np.matmul``, numpy's BLAS, its threads set to
``T`` through the environment) of ``n x n`` matrices: 2 n^3 operations a pass. It is the
rate of a well-tuned f32 kernel on these cores, not a ceiling for llama.cpp's quantized
prompt kernels, which multiply int8 (VNNI, AMX) and can do several times more operations
a cycle: a prompt share above 100% means they did.

Each figure is several passes after a warm-up one, kept as median, min and max, with the
CPU time other processes took meanwhile (a busy machine's figure is said to be one). The
probe runs in a child process (the BLAS thread count is fixed when numpy loads; the
buffer goes with the child). Measuring is explicit (``llmperf machine --measure``), never
inside a test session: the probe saturates the memory bus and the cores, which would
disturb the session's own timings, or another session's.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmperf import paths
from pytest_llmperf.errors import BackendError, UsageError
from pytest_llmperf.fileio import loads_json, write_atomic
from pytest_llmperf.machine import devices
from pytest_llmperf.machine import fingerprint as fp_mod
from pytest_llmperf.model import ownership

#: the cache file's format: {"kind": MACHINE_LIMITS_TAG, "version": 1, "limits": {key: ...}}
VERSION = 1
#: the buffer is at least this many times the last-level cache
CACHE_MULTIPLE = 4
MIN_BUFFER = 256 << 20
DEFAULT_PASSES = 5
#: the variables BLAS libraries read for their thread count
_BLAS_THREADS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


@dataclass(frozen=True)
class Spread:
    """Several passes of one figure: the median is the figure, min..max its spread."""

    median: float
    min: float
    max: float
    passes: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("a spread needs at least one pass")
        return cls(statistics.median(values), min(values), max(values), tuple(values))

    def text(self, digits: int = 1) -> str:
        return (
            f"{self.median:.{digits}f} [{self.min:.{digits}f}, {self.max:.{digits}f}] "
            f"x{len(self.passes)}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "passes": list(self.passes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Spread:
        passes = tuple(float(x) for x in data["passes"])
        if not passes or not all(math.isfinite(x) and x > 0 for x in passes):
            raise ValueError("passes must be positive numbers")
        return cls.of(passes)


@dataclass(frozen=True)
class Limits:
    """What one thread count of this machine reaches."""

    machine_id: str
    threads: int
    #: sustained read bandwidth, GB/s (10^9 bytes a second)
    bandwidth_gbs: Spread
    #: float32 GEMM, GFLOP/s; None with the reason in gflops_absent
    gflops: Spread | None
    gflops_absent: str = ""
    buffer_bytes: int = 0
    llc_bytes: int = 0
    gemm_n: int = 0
    #: how each figure was measured, in words
    method: dict[str, str] = field(default_factory=dict)
    #: the largest share other processes took during a pass (devices.contention)
    contention: dict[str, float] = field(default_factory=dict)
    measured_at: str = ""
    machine: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return cache_key(self.machine_id, self.threads)

    @property
    def busy(self) -> bool:
        """Another process competed for the CPU during a pass."""
        from pytest_llmperf.model.metrics import CONTAMINATION_LIMIT

        return any(v > CONTAMINATION_LIMIT for v in self.contention.values())

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["bandwidth_gbs"] = self.bandwidth_gbs.to_dict()
        out["gflops"] = None if self.gflops is None else self.gflops.to_dict()
        out["notes"] = list(self.notes)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Limits:
        gflops = data.get("gflops")
        return cls(
            machine_id=str(data["machine_id"]),
            threads=int(data["threads"]),
            bandwidth_gbs=Spread.from_dict(data["bandwidth_gbs"]),
            gflops=None if gflops is None else Spread.from_dict(gflops),
            gflops_absent=str(data.get("gflops_absent", "")),
            buffer_bytes=int(data.get("buffer_bytes", 0)),
            llc_bytes=int(data.get("llc_bytes", 0)),
            gemm_n=int(data.get("gemm_n", 0)),
            method={str(k): str(v) for k, v in dict(data.get("method") or {}).items()},
            contention={str(k): float(v) for k, v in dict(data.get("contention") or {}).items()},
            measured_at=str(data.get("measured_at", "")),
            machine=dict(data.get("machine") or {}),
            notes=tuple(str(x) for x in data.get("notes") or ()),
        )


def cache_key(machine_id: str, threads: int) -> str:
    return f"{machine_id}|t{threads}"


# -- the machine's caches ------------------------------------------------------------------


def last_level_cache(root: str | os.PathLike[str] = "/sys/devices/system/cpu") -> int:
    """Bytes of the last-level cache, every instance of it (two sockets: both L3s); 0 where
    the system does not tell."""
    level_max = 0
    instances: dict[str, int] = {}
    for index in sorted(Path(root).glob("cpu[0-9]*/cache/index[0-9]*")):
        try:
            level = int((index / "level").read_text())
            size = _size((index / "size").read_text())
            shared = (index / "shared_cpu_list").read_text().strip()
            kind = (index / "type").read_text().strip()
        except (OSError, ValueError):
            continue
        if kind == "Instruction" or level < level_max:
            continue
        if level > level_max:
            level_max, instances = level, {}
        instances[shared] = size
    return sum(instances.values())


def _size(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


def buffer_size(llc: int | None = None) -> tuple[int, list[str]]:
    """The probe's buffer: 4x the last-level cache (at least 256 MiB), at most a quarter of
    the available memory; with a note when it could not be that large."""
    import psutil

    llc = last_level_cache() if llc is None else llc
    wanted = max(CACHE_MULTIPLE * llc, MIN_BUFFER)
    cap = int(psutil.virtual_memory().available) // 4
    notes = [] if llc else ["the last-level cache size is unknown (no /sys cache entries)"]
    if cap < wanted:
        notes.append(f"the buffer is held to a quarter of the available memory ({cap >> 20} MiB)")
    return min(wanted, cap) >> 20 << 20, notes


def gemm_size(threads: int) -> int:
    """A matrix size whose product keeps ``threads`` cores busy for a measurable time."""
    return 2048 if threads <= 4 else 4096 if threads <= 32 else 8192


# -- the probe (runs in a child process) -----------------------------------------------------


def _worst(into: dict[str, float], seen: Mapping[str, float]) -> None:
    for k, v in seen.items():
        into[k] = max(into.get(k, 0.0), float(v))


def barrier_passes(
    parts: Sequence[Any], kernel: Callable[[Any], object], rounds: int
) -> Iterator[float]:
    """One thread per part, kept for all ``rounds``: each round every thread runs
    ``kernel(part)``, timed from a barrier to the last thread's end; yields each round's
    seconds. The caller's code between rounds runs before the next round starts (outside
    the timing). numpy releases the GIL inside its operations, so the threads run at once.
    The machine speed probe (``machine/speed.py``) times its passes here too."""
    start, end = threading.Barrier(len(parts) + 1), threading.Barrier(len(parts) + 1)

    def work(part: Any) -> None:
        for _ in range(rounds):
            start.wait()
            kernel(part)
            end.wait()

    workers = [threading.Thread(target=work, args=(p,), daemon=True) for p in parts]
    for w in workers:
        w.start()
    try:
        for _ in range(rounds):
            start.wait()
            t0 = time.perf_counter()
            end.wait()
            yield time.perf_counter() - t0
    finally:
        for w in workers:
            w.join()


def _read_passes(threads: int, n_bytes: int, passes: int, busy: dict[str, float]) -> list[float]:
    import numpy as np

    buf = np.ones(n_bytes // 4, dtype=np.float32)  # written once: every page is mapped
    out: list[float] = []
    before = devices.cpu_snapshot()
    # the first round is a warm-up
    for i, seconds in enumerate(
        barrier_passes(np.array_split(buf, threads), np.maximum.reduce, passes + 1)
    ):
        if i:
            out.append(buf.nbytes / seconds / 1e9)
            _worst(busy, devices.contention(before, devices.cpu_snapshot()))
        before = devices.cpu_snapshot()
    return out


def _gemm_passes(n: int, passes: int, busy: dict[str, float]) -> list[float]:
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=c)  # warm-up: BLAS threads started, buffers touched
    out = []
    for _ in range(passes):
        before = devices.cpu_snapshot()
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        seconds = time.perf_counter() - t0
        out.append(2.0 * n**3 / seconds / 1e9)
        _worst(busy, devices.contention(before, devices.cpu_snapshot()))
    return out


def _blas_name() -> str:
    import numpy as np

    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name', 'BLAS')} {blas.get('version', '')}".strip()
    except Exception:  # an older numpy, another build: say less
        return "numpy's BLAS"


def probe(threads: int, n_bytes: int, passes: int, gemm_n: int) -> dict[str, Any]:
    """The measurement itself, in this process (the child's side of :func:`measure`)."""
    busy: dict[str, float] = {}
    out: dict[str, Any] = {"bandwidth": _read_passes(threads, n_bytes, passes, busy)}
    out["blas"] = _blas_name()
    out["gflops"] = _gemm_passes(gemm_n, passes, busy) if gemm_n else None
    out["contention"] = busy
    return out


def measure(
    threads: int,
    *,
    n_bytes: int | None = None,
    passes: int = DEFAULT_PASSES,
    gemm_n: int | None = None,
    timeout_s: float = 600.0,
) -> Limits:
    """Measure this machine with ``threads`` threads in a child process (see the module
    docstring); ``n_bytes`` (the buffer) and ``gemm_n`` default to the machine's sizes,
    ``gemm_n=0`` skips the compute figure."""
    if threads < 1 or passes < 1:
        raise UsageError(f"threads={threads}, passes={passes}: each must be >= 1")
    llc = last_level_cache()
    notes: list[str] = []
    if n_bytes is None:
        n_bytes, notes = buffer_size(llc)
    n_bytes = max(n_bytes // (4 * threads) * 4 * threads, 4 * threads)
    if llc and n_bytes < CACHE_MULTIPLE * llc:
        notes.append(
            f"the buffer ({n_bytes >> 20} MiB) is {n_bytes / llc:.2g}x the last-level cache "
            f"({llc >> 20} MiB), not {CACHE_MULTIPLE}x: the figure is partly the cache's"
        )
    n = gemm_size(threads) if gemm_n is None else gemm_n
    env = dict(os.environ, **{name: str(threads) for name in _BLAS_THREADS})
    args = [str(threads), str(n_bytes), str(passes), str(n)]
    cmd = [sys.executable, "-m", "pytest_llmperf.machine.limits", *args]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        raise BackendError(f"the machine probe took more than {timeout_s:.0f} s") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise BackendError(
            f"the machine probe failed (exit {done.returncode}): " + " | ".join(tail)
        )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    gflops = result.get("gflops")
    return Limits(
        machine_id=fp_mod.machine_id(),
        threads=threads,
        bandwidth_gbs=Spread.of(result["bandwidth"]),
        gflops=Spread.of(gflops) if gflops else None,
        gflops_absent="" if gflops else "not measured (gemm size 0)",
        buffer_bytes=n_bytes,
        llc_bytes=llc,
        gemm_n=n,
        method={
            "bandwidth": f"numpy maximum.reduce over float32, {threads} thread(s) each a "
            f"slice of one {n_bytes >> 20} MiB buffer",
            "compute": f"numpy float32 matmul {n}x{n} ({result.get('blas', 'BLAS')}, "
            f"{threads} thread(s))",
        },
        contention=dict(result.get("contention") or {}),
        measured_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        machine=fp_mod.machine(),
        notes=tuple(notes),
    )


# -- the cache -----------------------------------------------------------------------------


@dataclass
class Cache:
    """The cache file's entries, and why it could not be used (else "")."""

    path: Path
    entries: dict[str, Limits]
    problem: str = ""

    def lookup(self, threads: int, machine_id: str | None = None) -> tuple[Limits | None, str]:
        """This machine's limits with ``threads`` threads, or None and why not."""
        if self.problem:
            return None, self.problem
        mid = machine_id or fp_mod.machine_id()
        hit = self.entries.get(cache_key(mid, threads))
        if hit is not None:
            return hit, ""
        return None, (
            f"the machine's limits with {threads} thread(s) are not measured: run "
            f"`llmperf machine --measure --threads {threads}` on a quiet machine (never "
            "inside a session: the probe would disturb its timings)"
        )


def load(path: str | os.PathLike[str] | None = None) -> Cache:
    """The cache as it is on disk (missing: empty). A file that is not ours is not read,
    nor written: the cache says why."""
    p = Path(path) if path is not None else paths.machine_limits_file()
    if not p.exists():
        return Cache(p, {})
    refused = ownership.refusal(p, "machine-limits", "the machine limits cache")
    if refused is not None:
        return Cache(p, {}, refused)
    try:
        text = p.read_text(encoding="utf-8")
        data = loads_json(text, str(p)) if text.strip() else {}
    except (OSError, ValueError, UsageError) as exc:
        return Cache(p, {}, f"the machine limits cache {p} cannot be read: {exc}")
    entries: dict[str, Limits] = {}
    for key, raw in dict(data.get("limits") or {}).items():
        try:
            limits = Limits.from_dict(raw)
        except (KeyError, TypeError, ValueError):
            continue  # an entry of another version: re-measured on request
        if limits.key == key:
            entries[key] = limits
    return Cache(p, entries)


def save(limits: Limits, path: str | os.PathLike[str] | None = None) -> Path:
    """Add or replace ``limits`` in the cache (through the one atomic writer); a file that
    is not ours is refused (UsageError), untouched."""
    p = Path(path) if path is not None else paths.machine_limits_file()
    ownership.check(p, "machine-limits", "llmperf machine --measure")
    cache = load(p)
    if cache.problem:
        raise UsageError(cache.problem)
    cache.entries[limits.key] = limits
    doc = {
        "kind": ownership.MACHINE_LIMITS_TAG,
        "version": VERSION,
        "limits": {k: v.to_dict() for k, v in sorted(cache.entries.items())},
    }
    p.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(p, json.dumps(doc, indent=1, sort_keys=True) + "\n", durable=False)
    return p


# -- the GPU's figure ------------------------------------------------------------------------


def gpu_bandwidth_gbs() -> tuple[float | None, str]:
    """The visible GPUs' memory bandwidth from NVML's figures, GB/s: bus width (bits) / 8
    x the maximum memory clock x 2 (double data rate): the datasheet's figure (H100 SXM:
    5120 bits at 2619 MHz, 3352 GB/s), not a measurement. None and why where NVML gives
    no such figures, or the GPUs differ."""
    try:
        mod = devices.nvml()
        figures = set()
        for i in devices.visible_gpu_indices(mod):
            h = mod.nvmlDeviceGetHandleByIndex(i)
            bits = int(mod.nvmlDeviceGetMemoryBusWidth(h))
            mhz = int(mod.nvmlDeviceGetMaxClockInfo(h, getattr(mod, "NVML_CLOCK_MEM", 2)))
            figures.add(bits / 8 * mhz * 1e6 * 2 / 1e9)
    except devices.NVMLUnavailable as exc:
        return None, f"no GPU memory bandwidth: {exc}"
    except Exception as exc:  # pynvml's NVMLError, a driver without the query
        return None, f"NVML gives no memory bus width or clock ({type(exc).__name__}: {exc})"
    if len(figures) != 1 or not all(f > 0 for f in figures):
        return None, f"the visible GPUs' memory bandwidths differ or are unknown ({figures})"
    return figures.pop(), ""


if __name__ == "__main__":  # the child of measure(): threads bytes passes gemm_n
    t, nb, ps, gn = (int(x) for x in sys.argv[1:5])
    print(json.dumps(probe(t, nb, ps, gn)))
