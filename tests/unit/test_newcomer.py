"""What a newcomer meets first: llama.cpp's own batch semantics, clean collection errors, a
quiet set-up, thread counts that fit the machine.

Split by tier: pure parts in tests/unit/test_newcomer.py, real model runs in
tests/integration/test_newcomer.py and pytest sessions and child processes in
tests/e2e/test_newcomer.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def test_set_up_declares_its_license_the_current_way() -> None:
    """setuptools deprecates project.license as a table (it stops working on 2027-02-18)."""
    data = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert isinstance(data["project"]["license"], str)
    requires = data["build-system"]["requires"]
    assert any(r.startswith("setuptools>=77") for r in requires), requires
