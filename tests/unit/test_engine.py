"""The measurement engine on real tiny models: timing loop, knobs, metrics, bad input.

Split by tier: pure parts in tests/unit/test_engine.py and real model runs in
tests/integration/test_engine.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_llmperf.backends.engine import LoadedModel
from pytest_llmperf.backends.load import expert_override_patterns
from pytest_llmperf.errors import ModelFileError
from pytest_llmperf.model.params import LoadParams

P2 = LoadParams(n_threads=2, n_ctx=1024)


def test_override_patterns() -> None:
    assert expert_override_patterns(LoadParams(cpu_moe=True)) == [
        r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"
    ]
    assert expert_override_patterns(LoadParams(n_cpu_moe=2))[1].startswith(r"blk\.1\.")


# -- bad model files: clear errors before any native code runs ------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        LoadedModel(tmp_path / "nope.gguf", P2)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="is a directory"):
        LoadedModel(tmp_path, P2)


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.gguf").write_bytes(b"")
    with pytest.raises(ModelFileError, match="is empty"):
        LoadedModel(tmp_path / "e.gguf", P2)


def test_random_bytes(tmp_path: Path) -> None:
    (tmp_path / "r.gguf").write_bytes(os.urandom(4096))
    with pytest.raises(ModelFileError, match="not a GGUF file"):
        LoadedModel(tmp_path / "r.gguf", P2)
