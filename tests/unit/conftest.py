"""The unit tier: pure logic, quick. No test here loads llama.cpp, runs a model or a pytest
session: a test that does fails, saying where it belongs, and so does collecting the tier
when it loads llama.cpp (``pytest tests/unit`` must never pay for the library)."""

from __future__ import annotations

import sys

import pytest


def llama_cpp_loaded() -> bool:
    """Whether llama-cpp-python (and so the llama library) is in this process, loaded by
    something else than the other tiers' tests/llama_loaded.py (``pytest tests`` loads it
    for them before any test runs)."""
    if "tests.llama_loaded" in sys.modules:
        return False
    lib = sys.modules.get("pytest_llmperf.native.llama_lib")
    return "llama_cpp" in sys.modules or (lib is not None and "lc" in getattr(lib, "_state", {}))


def pytest_collection_finish(session: pytest.Session) -> None:
    if llama_cpp_loaded():
        raise pytest.UsageError(
            "collecting the unit tier loaded llama.cpp: a test module of tests/unit (or "
            "a module it imports) imports llama_cpp; move what needs it to tests/integration"
        )


@pytest.fixture(autouse=True)
def _loads_no_llama_cpp() -> object:
    before = llama_cpp_loaded()
    yield
    if not before and llama_cpp_loaded():
        pytest.fail(
            "this unit test loaded llama.cpp: it belongs in tests/integration (or tests/e2e)"
        )


@pytest.fixture
def pytester() -> None:
    pytest.fail("a unit test runs no pytest session: a test using pytester belongs in tests/e2e")
