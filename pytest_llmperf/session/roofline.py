"""How close a measurement came to the machine's limit: the roofline metrics of the
registry, computed where a measurement gets its fingerprint (the Recorder), one value per
repetition, so they reach the gate, the baselines and results.json like any other.

- ``tg_bw_gbs`` = the bytes a generated token reads (host and GPU,
  :func:`~pytest_llmperf.machine.traffic.decode_traffic`) x ``tg_tps``;
- ``tg_roofline_pct`` = ``tg_tps`` x (host bytes / the host's measured read bandwidth with
  the test's ``n_threads`` + GPU bytes / the GPU's datasheet bandwidth) x 100: the share
  of each token's time the memory traffic alone needs;
- ``pp_roofline_pct`` = FLOPs per prompt token x ``pp_tps`` / the f32 GEMM rate measured
  with ``n_threads_batch`` x 100 (CPU builds only).

A figure that cannot be computed is absent with the reason (``Measurement.absent``): the
machine not measured for that thread count (``llmperf machine --measure``: never measured
here, inside a session's timing), a GPU without NVML bandwidth figures, a model whose
traffic the tensor table cannot tell. ``resolved["roofline"]`` keeps what the figures
rest on (bytes per token by side, the limits used and their spread) for the reports.
"""

from __future__ import annotations

import re
from typing import Any

from pytest_llmperf.errors import LLMPerfError
from pytest_llmperf.machine import gguf_info, limits, traffic
from pytest_llmperf.model.results import Measurement


def _threads(m: Measurement, name: str) -> int | None:
    for source in (m.resolved, m.resolved.get("llama_bench") or {}):
        value = source.get(name) if isinstance(source, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    value = getattr(m.params, name, None)
    return value if isinstance(value, int) and value > 0 else None


def _gpu_build(m: Measurement) -> bool:
    """The llama.cpp that ran has a GPU backend (its system info names one)."""
    info = str(m.fingerprint.get("software", {}).get("llama_system_info", ""))
    return bool(set(re.findall(r"(\w+) : ", info)) - {"CPU", "BLAS"})


def _offload(m: Measurement) -> bool:
    """Whether layers or tensors of this load can live on a GPU."""
    backend = m.resolved.get("backend")
    if isinstance(backend, str) and backend != "CPU":
        return True
    if not isinstance(backend, str) and m.params.n_gpu_layers != 0 and _gpu_build(m):
        return True
    # an override to a device's buffer loads only on a build that has that device
    parts = filter(None, m.params.override_tensor.split(";"))
    return any(not traffic.host_buffer(part.rpartition("=")[2]) for part in parts)


def _absent(m: Measurement, names: tuple[str, ...], reason: str) -> None:
    for name in names:
        if name not in m.values:
            m.absent[name] = reason


def _decode(m: Measurement, table: gguf_info.TensorTable, cache: limits.Cache) -> dict[str, Any]:
    wl = m.workload
    tg = m.values["tg_tps"]
    bench = m.resolved.get("backend_kind") == "llama-bench"
    lengths = traffic.decode_lengths(wl.n_depth, wl.n_prompt, wl.n_gen, start_token=not bench)
    try:
        tr = traffic.decode_traffic(table, m.params, lengths, offload=_offload(m))
    except traffic.Unknown as exc:
        _absent(m, ("tg_bw_gbs", "tg_roofline_pct"), f"bytes per token unknown: {exc}")
        return {}
    m.values["tg_bw_gbs"] = [tr.total * v / 1e9 for v in tg]
    doc: dict[str, Any] = {"bytes_per_token": tr.to_dict()}
    seconds = 0.0
    if tr.host:
        threads = _threads(m, "n_threads")
        found, why = cache.lookup(threads) if threads else (None, "the thread count is unknown")
        if found is None:
            _absent(m, ("tg_roofline_pct",), why)
            return doc
        doc.update(
            threads=threads,
            bandwidth_gbs=found.bandwidth_gbs.to_dict(),
            limits_measured_at=found.measured_at,
            limits_busy=found.busy,
        )
        seconds += tr.host / (found.bandwidth_gbs.median * 1e9)
    if tr.gpu:
        gpu_bw, why = limits.gpu_bandwidth_gbs()
        if gpu_bw is None:
            _absent(m, ("tg_roofline_pct",), why)
            return doc
        doc["gpu_bandwidth_gbs"] = gpu_bw
        seconds += tr.gpu / (gpu_bw * 1e9)
    m.values["tg_roofline_pct"] = [100.0 * v * seconds for v in tg]
    return doc


def _prompt(m: Measurement, table: gguf_info.TensorTable, cache: limits.Cache) -> dict[str, Any]:
    wl = m.workload
    name = ("pp_roofline_pct",)
    if _gpu_build(m) or _offload(m):
        _absent(
            m,
            name,
            "a GPU build: llama.cpp may run the prompt's matrix products on the GPU, whose "
            "compute is not measured",
        )
        return {}
    try:
        flops = traffic.prompt_flops(table, wl.n_depth, wl.n_prompt, m.params.n_batch)
    except traffic.Unknown as exc:
        _absent(m, name, f"FLOPs per prompt token unknown: {exc}")
        return {}
    threads = _threads(m, "n_threads_batch") or _threads(m, "n_threads")
    found, why = cache.lookup(threads) if threads else (None, "the thread count is unknown")
    if found is None or found.gflops is None:
        _absent(m, name, why or f"no f32 GEMM rate measured: {found and found.gflops_absent}")
        return {"flops_per_prompt_token": flops}
    rate = found.gflops.median * 1e9
    m.values["pp_roofline_pct"] = [100.0 * flops * v / rate for v in m.values["pp_tps"]]
    return {
        "flops_per_prompt_token": flops,
        "threads_batch": threads,
        "gflops": found.gflops.to_dict(),
        "gemm_n": found.gemm_n,
    }


def attach(m: Measurement, cache: limits.Cache | None = None) -> None:
    """Add the roofline metrics to ``m`` (per repetition of its tg_tps and pp_tps), or
    the reasons they are absent; ``resolved["roofline"]`` says what they rest on.
    ``cache``: the machine limits (default: the cache file, read now)."""
    has_tg, has_pp = bool(m.values.get("tg_tps")), bool(m.values.get("pp_tps"))
    if not (has_tg or has_pp) or m.workload.kind == "stream":
        return
    wanted = (("tg_bw_gbs", has_tg), ("tg_roofline_pct", has_tg), ("pp_roofline_pct", has_pp))
    names = tuple(n for n, on in wanted if on)
    try:
        table = gguf_info.tensor_table(m.model_path)
        cache = cache if cache is not None else limits.load()
        doc = _decode(m, table, cache) if has_tg else {}
        if has_pp:
            doc.update(_prompt(m, table, cache))
    except (LLMPerfError, OSError, ValueError) as exc:
        _absent(m, names, f"not computed: {exc}")
        return
    if doc:
        m.resolved["roofline"] = doc
