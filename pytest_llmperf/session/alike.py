"""Both sides measured alike: the facts of each side of a pair, and which of them differ
though the pair does not vary them.

A paired verdict blames or credits the difference between its two configurations. For it
to be the *only* difference, everything else each worker resolved must match: the
threads, micro-batch, context, flash attention as llama.cpp resolved it, the KV types,
the threadpool, the backend and the CPU features of the library loaded, the environment
variables llama.cpp and its OpenMP threads read, the CPUs the process may run on. A
fact that differs is *explained* when the pair varies what it follows from (the
candidate's n_threads explains n_threads and n_threads_batch; another build explains the
library's identity and features; another model its shape); any other difference is
named in the verdict's notes (:func:`differences`).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol

#: per-load or per-process values that differ between any two loads (never compared)
NOISE = frozenset(
    {
        "resolved.worker_pid",
        "resolved.thread_affinity",
        "resolved.thread_cpus",
        "resolved.libraries",
        "resolved.ineffective",
        "resolved.sampler",
        "software.pytest_llmperf",
        "software.python",
    }
)

#: what a varied key explains, as fact prefixes (a knob explains ``resolved.<knob>``)
EXPLAINS: dict[str, tuple[str, ...]] = {
    "model": (
        "resolved.n_layer",
        "resolved.n_expert",
        "resolved.n_vocab",
        "resolved.quant",
        "resolved.n_params",
        "resolved.cpu_moe_tensors",
        "resolved.overridden_tensors",
        "resolved.n_ctx",
        "resolved.flash_attn",
    ),
    "build": (
        "software.",
        "resolved.backend",
        "resolved.flash_attn",
        "resolved.ggml_devices",
        "resolved.supports_gpu_offload",
        "env.LLAMA_CPP_LIB_PATH",
    ),
    "launcher": ("resolved.cpu_affinity", "env."),
    "bench_args": ("resolved.",),
    "args": (),  # expanded into its knobs by the caller
    "n_threads": ("resolved.n_threads", "resolved.n_threads_batch"),
    "n_batch": ("resolved.n_batch", "resolved.n_ubatch"),
    "cpu_moe": ("resolved.cpu_moe_tensors", "resolved.overridden_tensors"),
    "n_cpu_moe": ("resolved.cpu_moe_tensors", "resolved.overridden_tensors"),
    "override_tensor": ("resolved.cpu_moe_tensors", "resolved.overridden_tensors"),
    "cpu_mask": ("resolved.threadpool", "resolved.cpu_affinity"),
    "cpu_strict": ("resolved.threadpool",),
    "poll": ("resolved.threadpool",),
    "prio": ("resolved.threadpool",),
    "use_mmap": ("resolved.load_mode",),
    "use_mlock": ("resolved.load_mode",),
    "n_gpu_layers": ("resolved.backend",),
    "type_k": ("resolved.flash_attn",),
    "type_v": ("resolved.flash_attn",),
}


class _Worker(Protocol):
    resolved: dict[str, Any]
    software: dict[str, Any]


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    else:
        out[prefix] = value


def facts(worker: _Worker) -> dict[str, Any]:
    """What one side's worker resolved and runs, flat: ``resolved.n_threads``,
    ``software.lib_sha256``, ``env.OMP_NUM_THREADS``, ..."""
    out: dict[str, Any] = {}
    resolved = dict(worker.resolved)
    env = resolved.pop("environment", {})
    _flatten("resolved", resolved, out)
    _flatten("software", dict(worker.software), out)
    if isinstance(env, Mapping):
        for k, v in env.items():
            out[f"env.{k}"] = v
    return out


def _explained(fact: str, varied: Collection[str]) -> bool:
    for key in varied:
        if fact == f"resolved.{key}" or fact.startswith(f"resolved.{key}."):
            return True
        if any(
            fact == p or (p.endswith(".") and fact.startswith(p)) or fact.startswith(p + ".")
            for p in EXPLAINS.get(key, ())
        ):
            return True
    return False


def differences(a: Mapping[str, Any], b: Mapping[str, Any], varied: Collection[str]) -> list[str]:
    """The facts in which the two sides differ though nothing varied explains them, each
    as ``"fact: reference value != candidate value"``."""
    out: list[str] = []
    for fact in sorted(set(a) | set(b)):
        if fact in NOISE or any(fact.startswith(n + ".") for n in NOISE):
            continue
        va, vb = a.get(fact), b.get(fact)
        if va == vb or _explained(fact, varied):
            continue
        out.append(f"{fact}: {va!r} (reference) != {vb!r} (candidate)")
    return out


def _libraries(facts: Mapping[str, Any]) -> dict[str, int]:
    """Library file name -> kB of it huge pages back, from a side's facts."""
    out: dict[str, int] = {}
    for fact, value in facts.items():
        if fact.startswith("resolved.libraries.") and fact.endswith(".huge_kb"):
            path = fact[len("resolved.libraries.") : -len(".huge_kb")]
            out[os.path.basename(path)] = int(value or 0)
    return out


def record_differences(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """What the loads of a pair recorded differently on its two sides, though nothing
    compared them (each load's facts differ from any other's in the paths of a build's
    files): the llama.cpp libraries mapped, by file name, and the huge pages behind their
    code, which can make the same code run at another speed."""
    out: list[str] = []
    for rec in records:
        a, b = _libraries(rec.get("a", {})), _libraries(rec.get("b", {}))
        load = rec.get("load", "?")
        if set(a) != set(b):
            out.append(
                f"load {load}: libraries mapped differ: reference {sorted(a)}, "
                f"candidate {sorted(b)}"
            )
        ha, hb = sum(a.values()), sum(b.values())
        if ha != hb:
            out.append(
                f"load {load}: huge pages behind the llama.cpp code: reference {ha} kB, "
                f"candidate {hb} kB"
            )
    return out
