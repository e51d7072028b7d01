"""Data loss found by a hostile-input battery, each closed as a class, through real files,
real pytest sessions (pytester) and the real ``llmperf`` command on the tiny models:

- an output file that exists and is not the file of ours its option writes is refused
  before anything is measured, and left byte for byte (pytest_llmperf.model.ownership);
- every write goes through symbolic links to their target, atomically there
  (pytest_llmperf.fileio);
- a baseline file that holds another test's entries (a renamed test, a moved file) is
  named with the fix and never written over, with or without --perf-accept.

Split by tier: pure parts in tests/unit/test_data_loss.py, real model runs in
tests/integration/test_data_loss.py and pytest sessions and child processes in
tests/e2e/test_data_loss.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def test_the_checksum_cache_never_replaces_a_file_it_did_not_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: Path
) -> None:
    """LLMPERF_CACHE_DIR pointed at a user's models folder puts the checksum cache beside
    it: a file of that name that is not the cache is read as no cache and left alone."""
    from pytest_llmperf import paths
    from pytest_llmperf.machine import gguf_info

    monkeypatch.setenv("LLMPERF_CACHE_DIR", str(tmp_path / "models"))
    cache = paths.sha256_cache_file()
    cache.write_text('["notes of mine"]\n')
    digest = gguf_info.file_sha256(model)
    assert len(digest) == 64 and cache.read_text() == '["notes of mine"]\n'
    cache.unlink()
    assert gguf_info.file_sha256(model) == digest and str(model.resolve()) in cache.read_text()
