"""Any two llama-cpp-python releases side by side: a release build is the release in an
environment of its own (its own bindings and library), and the engine runs on every
release from the declared floor up (native/: the fields an older release calls otherwise,
knobs a release lacks refused only when set).

The fast tests run on the installed release; the slow one builds the floor release once
into the cache (minutes) and runs ``llmperf ab`` of it against the installed one.

Split by tier: pure parts in tests/unit/test_releases.py, real model runs in
tests/integration/test_releases.py and pytest sessions and child processes in
tests/e2e/test_releases.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llmperf.machine import builds
from pytest_llmperf.native import llama_log

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

ROOT = Path(__file__).resolve().parents[2]


def test_an_older_releases_log_says_the_load_mode_its_way() -> None:
    assert llama_log.load_mode(["load_tensors: ... (mmap = false)"]) == "none"
    assert llama_log.load_mode(["load_tensors: ... (mmap = true)"]) == "mmap"
    assert llama_log.load_mode(["load_tensors: ... (load_mode = mmap+mlock)"]) == "mmap+mlock"


def test_worker_requirements_are_the_projects_own() -> None:
    deps = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    for req in builds.WORKER_REQUIREMENTS:
        assert f'"{req}"' in deps, f"{req} is not pyproject.toml's requirement"
