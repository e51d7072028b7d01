"""llmperf bisect, the parts that measure nothing: the search over positions, the state
document and its refusals, release ranges, and commits of a real git repository (their
first-parent order, the worktree they are built in, bad revisions), ccache's counters.

Split by tier: pure parts in tests/unit/test_bisect.py and pytest sessions and child
processes in tests/e2e/test_bisect.py."""

from __future__ import annotations

import pytest

from pytest_llmperf.errors import UsageError
from pytest_llmperf.machine import revisions


def test_the_package_index_lists_releases_oldest_first() -> None:
    try:
        known = revisions.releases()
    except UsageError as exc:  # no index reachable from here
        pytest.skip(str(exc))
    assert "0.3.36" in known and known.index("0.3.30") < known.index("0.3.36")
