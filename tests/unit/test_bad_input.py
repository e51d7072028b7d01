"""A new user's bad inputs, round two: each is a clear error before anything is measured,
or a verdict that says what it could not compare; nothing stored is lost.

Split by tier: pure parts in tests/unit/test_bad_input.py and pytest sessions and child
processes in tests/e2e/test_bad_input.py."""

from __future__ import annotations

import pytest

from pytest_llmperf.model.results import MetricComparison
from pytest_llmperf.verdict import judge

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def test_an_entry_that_compares_nothing_is_not_a_pass() -> None:
    comps = {
        "tg8": [
            MetricComparison("tg_tps", "t/s", "higher", None, 100.0, None, "-10%", "pass",
                             reason="absent in baseline: not measured")
        ]
    }  # fmt: skip
    verdict = judge.judge("t.py::a", comps, judge.Policy(), has_entry=True, store="bl/t.json")
    assert verdict.verdict == "inconclusive"
    assert "holds no metric this test measured: nothing was compared" in " ".join(verdict.notes)
