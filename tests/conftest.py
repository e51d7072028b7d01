"""Shared fixtures of the plugin's own tests."""

from __future__ import annotations

from pathlib import Path

import pytest

# Import once, before any pytester run: an in-process pytester session forgets modules
# first imported inside it, and C extensions (numpy.fft via scipy.stats) cannot load twice.
import scipy.stats  # noqa: F401

from pytest_llmperf import gate, report, tiny  # noqa: F401

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def tiny_model() -> object:
    """Build (or reuse from the cache) a built-in tiny variant: ``tiny_model("moe-mxfp4")``."""

    def get(variant: str) -> Path:
        return tiny.ensure_variant(variant)

    return get
