"""Wiring for this project's own suites only; users of the plugin need none of this.

Tests marked ``gpu`` are skipped, with the reason, unless llama.cpp was built with a GPU
backend and NVML sees a GPU.
"""

from __future__ import annotations

import pytest


def _gpu_skip_reason() -> str | None:
    from pytest_llmperf.machine import devices
    from pytest_llmperf.native import llama_lib

    try:
        lc = llama_lib.load()
        if not lc.llama_supports_gpu_offload():
            return "llama.cpp was built without a GPU backend (see README: CUDA build)"
    except Exception as exc:  # pragma: no cover - broken install
        return f"llama.cpp unavailable: {exc}"
    gpu, reason = devices.gpu_info()
    return None if gpu else f"no GPU: {reason}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    reason = _gpu_skip_reason()
    if reason:
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason=reason))
