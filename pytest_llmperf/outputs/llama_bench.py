"""llama-bench's view of a measurement: its JSON fields (``-o json``, kept per
measurement in results.json), its rate per repetition, and its size and params columns."""

from __future__ import annotations

import statistics
from typing import Any

from pytest_llmperf.model.results import Measurement


def rate_samples(m: Measurement) -> tuple[list[int], list[float]]:
    """Per repetition, llama-bench's way: the duration of the whole test in ns (pp: the
    prompt eval; tg and pg: start to the last token) and (n_prompt + n_gen) / duration.
    None for a streamed request (not llama-bench's kind of test)."""
    if m.workload.kind == "stream":
        return [], []
    n_tokens = m.workload.n_prompt + m.workload.n_gen
    ns: list[int] = []
    for s in m.samples:
        if m.workload.n_gen == 0:
            dur = s.prompt_ns
        else:
            dur = s.end_ns if s.end_ns else (s.token_ns[-1] if s.token_ns else None)
        if dur and dur > 0:
            ns.append(int(dur))
    if not n_tokens:
        return [], []
    return ns, [n_tokens / (d / 1e9) for d in ns]


def resolved_flash_attn(m: Measurement) -> str:
    return str(m.resolved.get("flash_attn") or m.params.flash_attn)


def resolved_threads(m: Measurement) -> int | None:
    value = m.resolved.get("n_threads", m.params.n_threads)
    return int(value) if isinstance(value, int | float) else None


def model_size_bytes(m: Measurement) -> int | None:
    size = m.fingerprint.get("model", {}).get("file_size")
    if isinstance(size, int | float) and size > 0:
        return int(size)
    mb = m.median("model_size_mb")
    return int(mb * 1024 * 1024) if mb else None


def model_n_params(m: Measurement) -> int | None:
    for source in (m.resolved, m.fingerprint.get("model", {})):
        value = source.get("n_params")
        if isinstance(value, int | float) and value > 0:
            return int(value)
    return None


def backend_name(m: Measurement) -> str:
    explicit = m.resolved.get("backend")
    if isinstance(explicit, str) and explicit:
        return explicit
    info = str(m.fingerprint.get("software", {}).get("llama_system_info", ""))
    if m.params.n_gpu_layers != 0:
        for name in ("CUDA", "Metal", "Vulkan", "ROCm", "HIP", "SYCL"):
            if name.lower() in info.lower():
                return name
        if m.fingerprint.get("machine", {}).get("gpu"):
            return "GPU"
    return "CPU"


def llama_bench_fields(m: Measurement) -> dict[str, Any]:
    """The fields of llama-bench's JSON output (``-o json``) this measurement defines.

    ``avg_ts``/``samples_ts`` follow llama-bench: (n_prompt + n_gen) / duration of each
    repetition (for tg this includes the first token, unlike ``tg_tps``).
    """
    fa = resolved_flash_attn(m)
    machine = m.fingerprint.get("machine", {})
    out: dict[str, Any] = {
        "model_filename": m.model_path,
        "model_type": m.model,
        "model_size": model_size_bytes(m),
        "model_n_params": model_n_params(m),
        "backends": backend_name(m),
        "cpu_info": machine.get("cpu"),
        "gpu_info": machine.get("gpu"),
        "n_threads": resolved_threads(m),
        "n_batch": m.params.n_batch,
        "n_ubatch": m.resolved.get("n_ubatch", m.params.ubatch),
        "n_gpu_layers": m.params.n_gpu_layers,
        "type_k": m.params.type_k,
        "type_v": m.params.type_v,
        "flash_attn": {"on": True, "off": False}.get(fa),
        "use_mmap": m.params.use_mmap,
        "n_prompt": m.workload.n_prompt,
        "n_gen": m.workload.n_gen,
        "n_depth": m.workload.n_depth,
        "test_time": m.started_at,
    }
    ns, ts = rate_samples(m)
    if ns:
        out.update(
            {
                "avg_ns": int(statistics.fmean(ns)),
                "stddev_ns": int(statistics.stdev(ns)) if len(ns) > 1 else 0,
                "avg_ts": statistics.fmean(ts),
                "stddev_ts": statistics.stdev(ts) if len(ts) > 1 else 0.0,
                "samples_ns": ns,
                "samples_ts": ts,
            }
        )
    return out


def fmt_size(nbytes: int | None) -> str:
    """llama-bench's size column: ``226.00 GiB``, ``93.75 MiB``."""
    if not nbytes:
        return "-"
    gib = nbytes / 1024**3
    if gib >= 1:
        return f"{gib:.2f} GiB"
    return f"{nbytes / 1024**2:.2f} MiB"


def fmt_n_params(n: int | None) -> str:
    """llama-bench's params column: ``672.05 B``, ``6.74 B``, ``23.45 M``."""
    if not n:
        return "-"
    if n >= 1e9:
        return f"{n / 1e9:.2f} B"
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    return f"{n / 1e3:.2f} K"
