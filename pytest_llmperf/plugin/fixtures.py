"""The fixtures: ``llmperf_config``, ``llm_model`` and ``llm_perf``."""

from __future__ import annotations

import pytest

from pytest_llmperf.api import Config
from pytest_llmperf.backends.runner import Runner
from pytest_llmperf.errors import LLMPerfError
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.plugin.state import (
    recorder_key,
    session_key,
    test_plan_of,
)
from pytest_llmperf.session.perf_session import (
    PerfSession,
)
from pytest_llmperf.session.plan import TestPlan
from pytest_llmperf.session.recorder import Recorder


class LLMModel:
    """The test's model configuration; the model loads (once per session) on first use."""

    def __init__(self, session: PerfSession, plan: TestPlan) -> None:
        self._session = session
        self.plan = plan
        self.config = plan.config
        #: why the model cannot be used (a URL, a FIFO): the test fails saying so when it
        #: first asks for its runner, like a model file llama.cpp cannot load
        self._problem: LLMPerfError | None = None
        try:
            path, reason = session.resolve_path(plan.config)
        except LLMPerfError as exc:
            path, reason, self._problem = "", "", exc
        if path is None:
            pytest.skip(reason)
        try:
            runtime, _launcher, why = session.runtime(plan.config)
        except LLMPerfError:  # a broken build fails the test when its runner starts
            runtime, why = None, ""
        if runtime is None and why:
            pytest.skip(why)
        self.path: str = path

    @property
    def model_id(self) -> str:
        return self.config.model

    @property
    def params(self) -> LoadParams:
        return self.config.params

    @property
    def runner(self) -> Runner:
        if self._problem is not None:
            raise self._problem
        run = self.plan.run
        return self._session.runner(self.config, self.path, run.isolate, run.timeout)


def _plan_of(request: pytest.FixtureRequest) -> TestPlan:
    perf = request.config.stash[session_key]
    plan = test_plan_of(request.node, perf) if isinstance(request.node, pytest.Item) else None
    if plan is None:
        raise pytest.UsageError(
            f"{request.node.nodeid}: no model: add @pytest.mark.llmperf(model=...) or "
            "parametrize llmperf_config with pytest_llmperf.configs(...)"
        )
    return plan


@pytest.fixture
def llmperf_config(request: pytest.FixtureRequest) -> Config:
    """The test's Config (from ``@pytest.mark.llmperf`` or parametrization)."""
    return _plan_of(request).config


@pytest.fixture
def llm_model(request: pytest.FixtureRequest, llmperf_config: Config) -> LLMModel:
    """The loaded model for this test's params (session-cached; loads on first use)."""
    return LLMModel(request.config.stash[session_key], _plan_of(request))


@pytest.fixture
def llm_perf(request: pytest.FixtureRequest, llm_model: LLMModel) -> Recorder:
    """Runs workloads (``llm_perf.measure("tg128")``); gates them when the test ends."""
    perf = request.config.stash[session_key]
    rec = Recorder(
        perf, request.node.nodeid, llm_model.plan, llm_model.path, lambda: llm_model.runner
    )
    request.node.stash[recorder_key] = rec
    return rec
