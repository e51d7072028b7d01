"""llama.cpp loaded, and the tiny models: what the integration and e2e tiers need before
their first test. Their conftest.py imports this module; the unit tier never does.

Import once, before any pytester run: an in-process pytester session forgets modules
first imported inside it. C extensions (numpy.fft via scipy.stats) cannot load twice, and
llama.cpp's log callback lives in llama_lib: calling it after its module is gone crashes
the process. So everything the inner sessions use is imported (and llama.cpp loaded) here,
while pytest collects, before any test of these tiers runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import scipy.stats
import scipy.stats.qmc  # noqa: F401

from pytest_llmperf import outputs  # noqa: F401
from pytest_llmperf.backends import engine, runner  # noqa: F401
from pytest_llmperf.machine import fingerprint, tiny
from pytest_llmperf.native import llama_lib
from pytest_llmperf.verdict import gate  # noqa: F401

llama_lib.load()
fingerprint.software()


@pytest.fixture(scope="session")
def tiny_model() -> object:
    """Build (or reuse from the cache) a built-in tiny variant: ``tiny_model("moe-mxfp4")``."""

    def get(variant: str) -> Path:
        return tiny.ensure_variant(variant)

    return get


@pytest.fixture(scope="session")
def model() -> Path:
    """The tiny MoE Q8_0 model most tests run, built before any pytester run (pytester
    moves HOME, and the model cache with it). A module that needs another model defines
    its own ``model``."""
    return tiny.ensure_variant("moe-q8_0")
