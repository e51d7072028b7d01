"""Shared fixtures of the plugin's own tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llmperf import tiny

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def tiny_model() -> object:
    """Build (or reuse from the cache) a built-in tiny variant: ``tiny_model("moe-mxfp4")``."""

    def get(variant: str) -> Path:
        return tiny.ensure_variant(variant)

    return get
