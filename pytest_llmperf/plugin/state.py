"""What the plugin keeps on pytest's objects: the session's PerfSession, each test's
TestPlan and recorder, the stop-signal guard; and the TestPlan of an item."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_llmperf.api import Config
from pytest_llmperf.errors import UsageError
from pytest_llmperf.session.perf_session import (
    PerfSession,
)
from pytest_llmperf.session.plan import TestPlan
from pytest_llmperf.session.recorder import Recorder
from pytest_llmperf.signals import SignalGuard

session_key = pytest.StashKey[PerfSession]()
recorder_key = pytest.StashKey[Recorder]()
plan_key = pytest.StashKey[TestPlan | None]()
guard_key = pytest.StashKey[SignalGuard]()

FIXTURES = ("llm_model", "llm_perf")


def test_plan_of(item: pytest.Item, session: PerfSession) -> TestPlan | None:
    """The TestPlan of an item that uses the fixtures (built once), else None."""
    if plan_key in item.stash:
        return item.stash[plan_key]
    plan: TestPlan | None = None
    if any(f in getattr(item, "fixturenames", ()) for f in FIXTURES):
        kwargs: dict[str, Any] = {}
        for mark in reversed(list(item.iter_markers("llmperf"))):  # closest mark wins
            if mark.args:
                raise UsageError(
                    f"llmperf marker on {item.nodeid}: takes keyword arguments only "
                    "(model=..., ...)"
                )
            kwargs.update(mark.kwargs)
        callspec = getattr(item, "callspec", None)
        param = None
        if callspec is not None and "llmperf_config" in callspec.params:
            param = callspec.params["llmperf_config"]
            if not isinstance(param, Config):
                raise UsageError(
                    f"{item.nodeid}: llmperf_config must be a pytest_llmperf.Config "
                    "(use pytest_llmperf.configs(...))"
                )
        plan = session.test_plan(item.nodeid, kwargs, param)
    item.stash[plan_key] = plan
    return plan
