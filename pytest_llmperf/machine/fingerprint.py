"""The environment fingerprint: what makes two measurements comparable.

``{"machine": {...}, "software": {...}, "model": {...}}``; load params and workload are
stored beside it in each measurement. Which fields must match and which only warn is
decided in :mod:`pytest_llmperf.baseline`.
"""

from __future__ import annotations

import functools
import platform
import re
from typing import Any

from pytest_llmperf import __version__
from pytest_llmperf.machine import devices
from pytest_llmperf.machine.gguf_info import ModelInfo, file_sha256


@functools.lru_cache(maxsize=1)
def machine() -> dict[str, Any]:
    return devices.machine_info()


@functools.lru_cache(maxsize=1)
def software() -> dict[str, Any]:
    from pytest_llmperf.native import llama_lib

    library: dict[str, str] = {}
    try:
        system_info = llama_lib.system_info()
        llama_version = llama_lib.version()
        library = llama_lib.library()
    except Exception as exc:  # llama-cpp-python unusable: still describe the rest
        system_info = f"unavailable: {exc}"
        llama_version = "unavailable"
    return {
        "python": platform.python_version(),
        "llama_cpp": llama_version,
        "llama_system_info": system_info,
        "pytest_llmperf": __version__,
        **{k: v for k, v in library.items() if k in ("lib_sha256", "ggml_version", "ggml_commit")},
    }


def model(info: ModelInfo, model_id: str = "") -> dict[str, Any]:
    return {
        "id": model_id or info.name,
        "sha256": file_sha256(info.path),
        "file_size": info.file_size,
        "quant": info.quant,
        "name": info.name,
        "arch": info.arch,
    }


def compose(mach: dict[str, Any], soft: dict[str, Any], mod: dict[str, Any]) -> dict[str, Any]:
    """The fingerprint document: ``{"machine": ..., "software": ..., "model": ...}``."""
    return {"machine": mach, "software": soft, "model": mod}


def fingerprint(info: ModelInfo, model_id: str = "") -> dict[str, Any]:
    """This process's fingerprint of a model (software: the llama.cpp loaded here)."""
    return compose(machine(), software(), model(info, model_id))


def _slug(text: str) -> str:
    text = re.sub(r"\(r\)|\(tm\)|cpu|processor|\d+-core", " ", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:40]


def machine_id(mach: dict[str, Any] | None = None) -> str:
    """A readable, stable file-name id for this machine: ``<cpu>-<cores>c[-<gpu>]``.

    A model name without a number (a virtual machine's "AMD EPYC" is every EPYC, Zen 2 as
    much as Zen 4) gets the CPU family and model: ``amd-epyc-f25m17-2c``."""
    m = mach or machine()
    cpu = _slug(str(m.get("cpu") or "cpu")) or "cpu"
    if not re.search(r"\d", cpu) and m.get("cpu_family") and m.get("cpu_model"):
        cpu = f"{cpu}-f{m['cpu_family']}m{m['cpu_model']}"
    parts = [cpu, f"{m.get('cores', 0)}c"]
    if m.get("gpu"):
        parts.append(_slug(str(m["gpu"])))
    return "-".join(parts)


def legacy_machine_ids(mach: dict[str, Any] | None = None) -> list[str]:
    """The ids earlier versions gave this machine (their baseline files are read, and
    moved to :func:`machine_id`'s on the first write)."""
    m = dict(mach or machine())
    old = machine_id({k: v for k, v in m.items() if k not in ("cpu_family", "cpu_model")})
    return [old] if old != machine_id(m) else []
