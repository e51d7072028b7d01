"""Shared fixtures of the plugin's own tests."""

from __future__ import annotations

from pathlib import Path

import pytest

# Import once, before any pytester run: an in-process pytester session forgets modules
# first imported inside it. C extensions (numpy.fft via scipy.stats) cannot load twice, and
# llama.cpp's log callback lives in llama_lib: calling it after its module is gone crashes
# the process. So everything the inner sessions use is imported (and llama.cpp loaded) here.
import scipy.stats
import scipy.stats.qmc  # noqa: F401

from pytest_llmperf import outputs  # noqa: F401
from pytest_llmperf.backends import engine, runner  # noqa: F401
from pytest_llmperf.machine import fingerprint, tiny
from pytest_llmperf.native import llama_lib
from pytest_llmperf.outputs.formats import FORMATS
from pytest_llmperf.sweep.fleet import SHARD_ENV
from pytest_llmperf.verdict import gate  # noqa: F401

llama_lib.load()
fingerprint.software()

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def tiny_model() -> object:
    """Build (or reuse from the cache) a built-in tiny variant: ``tiny_model("moe-mxfp4")``."""

    def get(variant: str) -> Path:
        return tiny.ensure_variant(variant)

    return get


#: variables of the environment the plugin reads that a CI job, a scheduler or a user's
#: shell sets: each test starts without them (one that needs one sets it), so the suite
#: gives the same results on a laptop, in a GitHub job (CI=true fails a missing baseline)
#: and in a Slurm array
OUTSIDE_VARIABLES = (
    "CI",
    "LLMPERF_MACHINE",
    "LLMPERF_IN_PROCESS",
    "LLMPERF_SKIP_MEMORY_CHECK",
    *SHARD_ENV,
    *(spec.env for spec in FORMATS.values() if spec.env),  # GITHUB_STEP_SUMMARY
)


@pytest.fixture(autouse=True)
def _environment_of_a_laptop(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OUTSIDE_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _thread_placement_is_left_alone() -> object:
    """No test may leave this process's main thread on fewer CPUs or another scheduling
    policy (native threadpools place their caller): every later test would measure on what
    is left, many times slower, and fail or time out far from the cause."""
    from pytest_llmperf.machine.devices import Placement

    before = Placement.current()
    yield
    after = Placement.current()
    if before is not None and after != before:
        before.apply()
        pytest.fail(f"the test left the main thread placed as {after}, not {before}")
