"""The plugin's hooks, each a few lines handing off: options and Settings
(:mod:`.options`), what is kept per session and test (:mod:`.state`), the fixtures
(:mod:`.fixtures`), the end of the session (:mod:`.summary`); everything with substance
lives in :mod:`pytest_llmperf.session` and the pure floors below it.
"""

from __future__ import annotations

import signal
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.errors import LLMPerfError, UsageError
from pytest_llmperf.machine.devices import default_threads
from pytest_llmperf.machine.registry import load_registry
from pytest_llmperf.plugin import options as plugin_options
from pytest_llmperf.plugin import summary
from pytest_llmperf.plugin.state import (
    guard_key,
    plan_key,
    recorder_key,
    session_key,
    test_plan_of,
)
from pytest_llmperf.session.perf_session import (
    OVERSUBSCRIBED,
    PerfSession,
    group_by_config,
    oversubscription,
)
from pytest_llmperf.session.recorder import PerfOutcome
from pytest_llmperf.signals import SignalGuard, exit_status, signal_name


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", plugin_options.MARKER_HELP)
    config.addinivalue_line("markers", "smoke: fast subset of the performance suite")
    try:
        settings = plugin_options.settings_from(config)
        plugin_options.check_outputs(settings)
        registry = load_registry(Path(str(config.rootpath)), config.option.perf_config)
        perf = PerfSession(settings, registry)
        config.stash[session_key] = perf
        _guard_signals(config)
        if _is_xdist_controller(config):
            config.pluginmanager.register(_XdistCollector(perf), "llmperf-xdist-collector")
            if settings.policy.accept is not None:
                perf.notice("baselines are written by the xdist workers")
    except LLMPerfError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(session_key, None)
    if session is not None:
        session.close()
    guard = config.stash.get(guard_key, None)
    if guard is not None:
        guard.restore()
        del config.stash[guard_key]
    finisher = config.pluginmanager.get_plugin("llmperf-signals")
    if finisher is not None:
        config.pluginmanager.unregister(finisher)


# -- stop signals -------------------------------------------------------------------------


def _guard_signals(config: pytest.Config) -> None:
    """SIGTERM (a CI cancel), SIGHUP (a closed terminal), SIGUSR1/SIGUSR2 (Slurm's
    --signal) stop the session as Ctrl-C does: the current measurement stops, the
    session's end still writes what finished (baselines, results, reports), no worker is
    left, and the exit status is 128 + the signal (see pytest_llmperf.signals). SIGINT
    stays pytest's KeyboardInterrupt. Handlers go in only from the main thread and only
    over default dispositions; pytest_unconfigure restores them."""
    guard = SignalGuard(sigint=lambda _signum: KeyboardInterrupt()).install()
    config.stash[guard_key] = guard
    config.pluginmanager.register(_SignalFinish(guard), "llmperf-signals")


class _SignalFinish:
    """Outermost around pytest_sessionfinish: from there on a stop signal is recorded,
    never raised, so the flush and the reports are written whole."""

    def __init__(self, guard: SignalGuard) -> None:
        self.guard = guard

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self) -> Generator[None, None, None]:
        self.guard.finish()
        return (yield)


def _stopped_by_signal(session: pytest.Session, perf: PerfSession) -> None:
    """After the flush: a session a stop signal ended says so, with its exit status."""
    guard = session.config.stash.get(guard_key, None)
    signum = None if guard is None else guard.signum
    if signum is None:
        return
    name = signal_name(signum)
    # Ctrl-C keeps pytest's own status (2); the others the shell's 128 + signal
    sigint = signum == signal.SIGINT
    status = int(pytest.ExitCode.INTERRUPTED) if sigint else exit_status(signum)
    session.exitstatus = status
    perf.notice(
        f"session stopped by {name}: the tests that finished were kept (baselines, "
        f"results, reports); the one running was stopped; exit status {status}"
    )


# -- a usage error while pytest imports a test module -------------------------------------


class _Module(pytest.Module):
    """A test module whose import may raise our UsageError (``configs(...)`` at module
    level): shown as its message, which names the call and the fix, not as a traceback
    through this package."""

    def repr_failure(  # type: ignore[override]
        self, excinfo: pytest.ExceptionInfo[BaseException]
    ) -> Any:
        if isinstance(excinfo.value, UsageError):
            return f"{self.path.name}: {excinfo.value}"
        return super().repr_failure(excinfo)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(
    module_path: Path, parent: pytest.Collector
) -> pytest.Module | None:
    if module_path.name == "__init__.py":
        return None  # a package: pytest's own
    return _Module.from_parent(parent, path=module_path)


# -- per-item configuration ---------------------------------------------------------------


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    perf = config.stash.get(session_key, None)
    if perf is None:
        return
    keys: list[Any] = []
    for item in items:
        try:
            plan = test_plan_of(item, perf)
        except UsageError as exc:
            raise pytest.UsageError(str(exc)) from None
        keys.append(None if plan is None else plan.config.key())
    if _is_xdist_worker(config):
        workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
        threads = [k[1].n_threads or default_threads() for k in keys if k is not None]
        warning = oversubscription(workers, max(threads, default=0))
        if warning:
            perf.notice(warning)
            perf.oversubscribed = warning
    if not config.option.perf_no_reorder:
        modules = [item.nodeid.split("::", 1)[0] for item in items]
        items[:] = [items[i] for i in group_by_config(modules, keys)]


# -- gating in the test's own call phase ----------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Gate the test's measurements right after its body: a regression fails the test in
    its own call phase (so -rf, JUnit XML and --lf see it), with the table as message."""
    failure: str | None = None
    skip: str | None = None
    try:
        result = yield
    except LLMPerfError as exc:  # a crashed or hung backend, a bad model file or baseline:
        failure = str(exc)  # fail this test with the message (input + fix), no traceback
    else:
        rec = item.stash.get(recorder_key, None)
        if rec is not None:
            try:
                rec.finish()
            except PerfOutcome as outcome:
                if outcome.kind == "skip":
                    skip = str(outcome)
                else:
                    failure = str(outcome)
            except LLMPerfError as exc:
                failure = str(exc)
    # raised outside the except blocks, so the message is not chained to another
    if skip is not None:
        pytest.skip(skip)
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, Any]:
    """Carry the test's llmperf report on the call-phase report, so that under
    pytest-xdist the controller (which runs no test) can show and write it."""
    rep = yield
    rec = item.stash.get(recorder_key, None)
    if (
        call.when == "call"
        and rec is not None
        and rec.report is not None
        and _is_xdist_worker(item.config)
    ):
        if rec.session.oversubscribed and rec.session.oversubscribed not in rec.report.notes:
            rec.report.notes.append(rec.session.oversubscribed)
        rep.llmperf = rec.report.to_dict()
    return rep


def _is_xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _is_xdist_controller(config: pytest.Config) -> bool:
    return not _is_xdist_worker(config) and getattr(config.option, "dist", "no") != "no"


class _XdistCollector:
    """Registered on the xdist controller: gathers the workers' llmperf reports."""

    def __init__(self, perf: PerfSession) -> None:
        self.perf = perf

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, "llmperf", None)
        if isinstance(data, dict):
            from pytest_llmperf.model.results import TestResult

            rep = TestResult.from_dict(data)
            self.perf.reports.append(rep)
            for note in rep.notes:
                if note.startswith(OVERSUBSCRIBED) and note not in self.perf.notices:
                    self.perf.notice(note)


def pytest_runtest_teardown(item: pytest.Item) -> None:
    perf = item.config.stash.get(session_key, None)
    plan = item.stash.get(plan_key, None)
    if perf is not None and plan is not None:
        perf.release(plan)


# -- end of session ---------------------------------------------------------------------


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    perf = session.config.stash.get(session_key, None)
    if perf is None:
        return
    perf.close()
    try:
        flushed = perf.flush()
    except LLMPerfError as exc:
        perf.notice(f"baselines NOT written: {exc}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        if flushed is not None and flushed.refused:  # measured, and not stored
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    summary.write_outputs(perf)
    _stopped_by_signal(session, perf)


def pytest_addoption(parser: pytest.Parser) -> None:
    plugin_options.add(parser)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    summary.write_section(terminalreporter, config)
