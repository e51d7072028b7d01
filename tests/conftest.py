"""What every tier of the plugin's own tests shares: the environment of a laptop, threads
left where they were, and each test marked with its tier (its folder).

The tiers: ``unit/`` (pure logic: llama.cpp is never loaded), ``integration/`` (the tiny
models run in this process and in workers) and ``e2e/`` (pytest sessions through pytester,
child processes, signals, builds). llama.cpp is loaded by the last two only, in
tests/llama_loaded.py, which their conftest.py imports; so ``pytest tests/unit`` (or
``pytest tests -m unit``) stays quick.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llmperf.outputs.formats import FORMATS
from pytest_llmperf.sweep.fleet import SHARD_ENV

pytest_plugins = ["pytester"]

#: the tiers, each a folder of tests/ and a marker of the same name (pyproject.toml)
TIERS = ("unit", "integration", "e2e")
HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)  # before -m selects by the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        try:
            folder = item.path.relative_to(HERE).parts[0]
        except ValueError:
            continue
        if folder in TIERS:
            item.add_marker(folder)


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
