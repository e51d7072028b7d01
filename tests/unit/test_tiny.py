"""The built-in tiny models: build, cache, quantize, run.

Split by tier: pure parts in tests/unit/test_tiny.py, real model runs in
tests/integration/test_tiny.py and pytest sessions and child processes in
tests/e2e/test_tiny.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llmperf.errors import UsageError
from pytest_llmperf.machine import tiny


def test_env_var_overrides_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(tiny.CACHE_ENV, str(tmp_path))
    assert tiny.cache_dir() == tmp_path
    assert tiny.cache_dir(tmp_path / "x") == tmp_path / "x"


def test_unknown_variant_and_bad_spec() -> None:
    with pytest.raises(UsageError, match="built-in variants: tiny-dense-f16"):
        tiny.parse_variant("tiny-moe-q2_k")
    with pytest.raises(UsageError, match="multiples of 256"):
        tiny.TinySpec(n_embd=300)
