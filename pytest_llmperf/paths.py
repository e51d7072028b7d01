"""Where pytest-llmperf keeps things on disk: one cache root, one function per kind.

``$LLMPERF_CACHE_DIR`` (tiny models) and ``$XDG_CACHE_HOME`` are honoured; the default
root is ``~/.cache/pytest-llmperf``. No other module spells a cache path.
"""

from __future__ import annotations

import os
from pathlib import Path

#: overrides the directory of built-in tiny models
CACHE_ENV = "LLMPERF_CACHE_DIR"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pytest-llmperf"


def models_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """Built-in tiny models: ``override``, else ``$LLMPERF_CACHE_DIR``, else the cache."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return cache_root() / "models"


def sha256_cache_file() -> Path:
    """The model-file sha256 cache (keyed by path, size and mtime)."""
    return models_dir().parent / "sha256-cache.json"


def wheels_dir() -> Path:
    """llama-cpp-python wheels built by scripts/build-llama-cpp.sh."""
    return Path(os.environ.get("LLMPERF_WHEEL_DIR") or cache_root() / "wheels")


def builds_dir() -> Path:
    """Named llama.cpp builds (``llmperf build NAME``)."""
    return Path(os.environ.get("LLMPERF_BUILD_DIR") or cache_root() / "builds")


def bisect_dir() -> Path:
    """``llmperf bisect``: its state files and the worktrees it builds commits in."""
    return cache_root() / "bisect"


def locks_dir() -> Path:
    """Lock files of baseline writers: kept out of the user's repository."""
    return cache_root() / "locks"


def machine_limits_file() -> Path:
    """The machine's measured limits (memory bandwidth, f32 GEMM rate) per machine id and
    thread count, written by ``llmperf machine --measure``."""
    return cache_root() / "machine-limits.json"
