"""pytest glue: options, ini keys, the ``llmperf`` marker, fixtures, hooks, summary.

Everything with substance lives in :mod:`pytest_llmperf.session.perf_session` and the pure modules;
this file only translates between pytest and them.
"""

from __future__ import annotations

import argparse
import os
import signal
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf import options
from pytest_llmperf.api import Config
from pytest_llmperf.backends.runner import DEFAULT_TIMEOUT_S, Runner
from pytest_llmperf.baseline import DEFAULT_HISTORY, MAX_HISTORY
from pytest_llmperf.errors import LLMPerfError, UsageError
from pytest_llmperf.machine.devices import default_threads
from pytest_llmperf.machine.registry import load_registry
from pytest_llmperf.model import ownership
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.session.perf_session import (
    OVERSUBSCRIBED,
    PerfSession,
    group_by_config,
    oversubscription,
)
from pytest_llmperf.session.plan import TestPlan, parse_reference
from pytest_llmperf.session.recorder import PerfOutcome, Recorder
from pytest_llmperf.session.settings import Settings, default_missing_mode
from pytest_llmperf.signals import SignalGuard, exit_status, signal_name
from pytest_llmperf.verdict import paired
from pytest_llmperf.verdict.judge import ACCEPT_MODES, MISSING_MODES, Policy

session_key = pytest.StashKey[PerfSession]()
recorder_key = pytest.StashKey[Recorder]()
plan_key = pytest.StashKey[TestPlan | None]()
guard_key = pytest.StashKey[SignalGuard]()

FIXTURES = ("llm_model", "llm_perf")


# -- options --------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("llmperf", "LLM inference performance (pytest-llmperf)")
    g.addoption(
        "--perf-accept",
        nargs="?",
        const="all",
        default=None,
        type=options.choice(ACCEPT_MODES),
        metavar="all|new|failed|reset",
        help="record measurements into the baseline's history: all tests that ran "
        "(default), only those without a baseline, only those that failed the gate, or "
        "reset: all tests, replacing their history with this session; "
        "only those without a baseline, or only those that failed the gate",
    )
    g.addoption(
        "--perf-force-accept",
        action="store_true",
        help="with --perf-accept: also replace baselines whose fingerprint differs",
    )
    g.addoption(
        "--perf-missing",
        type=options.choice(MISSING_MODES),
        default=None,
        help="a test without a baseline: fail, skip, or record it and pass "
        "(default: record; fail when the CI environment variable is set)",
    )
    g.addoption(
        "--perf-baseline-dir",
        default=None,
        metavar="DIR",
        help="where baseline JSON files live (default: baselines/)",
    )
    g.addoption(
        "--perf-machine",
        type=options.machine_id,
        default=None,
        metavar="ID",
        help="baseline file name for this machine (default: derived from CPU/GPU; "
        "env LLMPERF_MACHINE)",
    )
    g.addoption(
        "--perf-repetitions",
        type=options.int_at_least(1),
        default=None,
        metavar="N",
        help="timed repetitions per workload (default 3)",
    )
    g.addoption(
        "--perf-warmup",
        type=options.int_at_least(0),
        default=None,
        metavar="N",
        help="untimed warm-up runs per workload (default 1)",
    )
    g.addoption(
        "--perf-in-process",
        action="store_true",
        default=None,
        help="run llama.cpp in the pytest process (default: an isolated child process "
        "per model configuration, so a crash fails only its tests)",
    )
    g.addoption(
        "--perf-timeout",
        type=options.positive_seconds,
        default=None,
        metavar="SECONDS",
        help=f"kill a measurement that runs longer (default {DEFAULT_TIMEOUT_S:.0f})",
    )
    g.addoption(
        "--perf-remeasure",
        type=options.int_at_least(0),
        default=None,
        metavar="N",
        help="re-measure a suspected regression N times before failing (default 1)",
    )
    g.addoption(
        "--perf-fail-on-improvement",
        action="store_true",
        default=None,
        help="fail tests that improved beyond the threshold, so baselines get refreshed",
    )
    g.addoption(
        "--perf-alpha",
        type=options.probability,
        default=None,
        help="significance level of the regression test (default 0.05)",
    )
    g.addoption(
        "--perf-config",
        default=None,
        metavar="FILE",
        help="model registry / settings YAML (default: llmperf.yaml, then "
        "[tool.llmperf] in pyproject.toml)",
    )
    g.addoption(
        "--perf-cache-dir",
        default=None,
        metavar="DIR",
        help="where built-in tiny models are built (env LLMPERF_CACHE_DIR)",
    )
    g.addoption(
        "--perf-report",
        default=None,
        metavar="DIR",
        help="write results.json, summary.md, plots and report.html to DIR",
    )
    g.addoption(
        "--perf-benchmark-json",
        default=None,
        metavar="FILE",
        help="write results in pytest-benchmark's JSON format",
    )
    g.addoption(
        "--perf-bmf", default=None, metavar="FILE", help="write results in Bencher Metric Format"
    )
    g.addoption(
        "--perf-reference",
        default=None,
        metavar="KEY:VALUE,...",
        help="judge every test against this reference configuration side by side, in "
        "interleaved rounds (paired verdicts), instead of its stored baseline: "
        "build:main, model:tiny-moe-q8_0, cpu_moe:false, launcher:pin, args:'-t 4'",
    )
    g.addoption(
        "--perf-build",
        default=None,
        metavar="NAME",
        help="run every test that names no build with this build (a registry entry or an "
        "`llmperf build NAME`): with --perf-reference=build:main, a PR build against main",
    )
    g.addoption(
        "--perf-rounds",
        type=options.int_at_least(2),
        default=None,
        metavar="N",
        help=f"paired verdicts: rounds per load of both sides (default {paired.DEFAULT_ROUNDS})",
    )
    g.addoption(
        "--perf-paired-threshold",
        type=options.positive_percent,
        default=None,
        metavar="PCT",
        help="paired verdicts: the smallest change that fails (default "
        f"{paired.DEFAULT_THRESHOLD_PCT:g}%%)",
    )
    g.addoption(
        "--perf-no-reorder",
        action="store_true",
        help="keep collection order (default: tests sharing a model config run together)",
    )
    parser.addini("llmperf_baseline_dir", "baseline directory (default baselines)", default=None)
    parser.addini("llmperf_machine", "baseline machine id", default=None)
    parser.addini("llmperf_repetitions", "timed repetitions per workload", default=None)
    parser.addini("llmperf_warmup", "warm-up runs per workload", default=None)
    parser.addini(
        "llmperf_isolate",
        "run llama.cpp in a child process (true/false)",
        type="bool",
        default=True,
    )
    parser.addini("llmperf_timeout", "per-measurement timeout in seconds", default=None)
    parser.addini("llmperf_max_loaded", "models kept loaded at once", default=None)
    parser.addini(
        "llmperf_paired_threshold",
        "paired verdicts: the smallest change that fails, in percent",
        default=None,
    )
    parser.addini(
        "llmperf_history",
        f"accepted sessions kept per baseline entry (default {DEFAULT_HISTORY}, at most "
        f"{MAX_HISTORY})",
        default=None,
    )
    parser.addini("llmperf_remeasure", "re-measurements of a suspected regression", default=None)
    parser.addini(
        "llmperf_thresholds",
        "per-metric thresholds, one 'metric: threshold' a line",
        type="linelist",
        default=[],
    )
    parser.addini(
        "llmperf_limits",
        "absolute limits, one a line ('load_ms < 11000')",
        type="linelist",
        default=[],
    )
    parser.addini("llmperf_sla", "ratio SLAs, one a line", type="linelist", default=[])


def _ini(config: pytest.Config, name: str) -> Any:
    value = config.getini(name)
    return None if value in (None, "", []) else value


def _ini_rules(config: pytest.Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    lines = config.getini("llmperf_thresholds") or []
    if lines:
        table: dict[str, str] = {}
        for line in lines:
            metric, sep, value = str(line).partition(":")
            if not sep:
                raise UsageError(
                    f"ini llmperf_thresholds: {line!r}: write 'metric: threshold', "
                    "e.g. 'tg_tps: -10%'"
                )
            table[metric.strip()] = value.strip()
        out["thresholds"] = table
    for name, key in (("llmperf_limits", "limits"), ("llmperf_sla", "sla")):
        lines = config.getini(name) or []
        if lines:
            out[key] = [str(x) for x in lines]
    return out


def build_settings(config: pytest.Config) -> Settings:
    """The session's settings: command line over ini keys over defaults, each value
    checked here (before any test measures) with the option's own validator."""
    opt = config.option
    root = Path(str(config.rootpath))

    def pick(cli: Any, ini: str, default: Any, conv: Callable[[str], Any] | None = None) -> Any:
        if cli is not None:
            return cli
        value = _ini(config, ini)
        if value is None:
            return default
        try:
            return conv(str(value)) if conv else value
        except (ValueError, argparse.ArgumentTypeError) as exc:
            raise UsageError(f"ini {ini} = {value!r}: {exc}") from None

    base_dir = Path(pick(opt.perf_baseline_dir, "llmperf_baseline_dir", "baselines"))
    if not base_dir.is_absolute():
        base_dir = root / base_dir

    def out_path(value: str | None) -> Path | None:
        return None if value is None else Path(value).absolute()

    in_process = bool(opt.perf_in_process) or bool(os.environ.get("LLMPERF_IN_PROCESS"))
    isolate = not in_process and bool(config.getini("llmperf_isolate"))
    if not isolate and opt.perf_timeout is not None:
        raise UsageError(
            "--perf-timeout cannot apply with --perf-in-process (or LLMPERF_IN_PROCESS / "
            "llmperf_isolate=false): a native call in the pytest process cannot be stopped; "
            "drop one of them (isolated runs, the default, honour the timeout)"
        )
    machine = opt.perf_machine
    if machine is None:
        env = os.environ.get("LLMPERF_MACHINE")
        source = "LLMPERF_MACHINE" if env is not None else "ini llmperf_machine"
        value = env if env is not None else _ini(config, "llmperf_machine")
        if value is not None:
            try:
                machine = options.check_machine_id(str(value))
            except ValueError as exc:
                raise UsageError(f"{source}: {exc}") from None
    reference = None
    if opt.perf_reference:
        reference = parse_reference(opt.perf_reference)
    design = paired.Design(
        rounds=opt.perf_rounds or paired.DEFAULT_ROUNDS,
        threshold_pct=pick(
            opt.perf_paired_threshold,
            "llmperf_paired_threshold",
            paired.DEFAULT_THRESHOLD_PCT,
            options.positive_percent,
        ),
        alpha=opt.perf_alpha if opt.perf_alpha is not None else 0.05,
    )
    policy = Policy(
        accept=opt.perf_accept,
        force_accept=bool(opt.perf_force_accept),
        missing=opt.perf_missing or default_missing_mode(),
        fail_on_improvement=bool(opt.perf_fail_on_improvement),
        alpha=opt.perf_alpha if opt.perf_alpha is not None else 0.05,
    )
    return Settings(
        policy=policy,
        baseline_dir=base_dir,
        machine_id=machine,
        repetitions=pick(opt.perf_repetitions, "llmperf_repetitions", 3, options.int_at_least(1)),
        warmup=pick(opt.perf_warmup, "llmperf_warmup", 1, options.int_at_least(0)),
        isolate=isolate,
        timeout_s=pick(
            opt.perf_timeout, "llmperf_timeout", DEFAULT_TIMEOUT_S, options.positive_seconds
        ),
        remeasure=pick(opt.perf_remeasure, "llmperf_remeasure", 1, options.int_at_least(0)),
        cache_dir=opt.perf_cache_dir,
        max_loaded=pick(None, "llmperf_max_loaded", 2, options.int_at_least(1)),
        history=pick(None, "llmperf_history", DEFAULT_HISTORY, options.int_between(1, MAX_HISTORY)),
        report_dir=out_path(opt.perf_report),
        benchmark_json=out_path(opt.perf_benchmark_json),
        bmf_json=out_path(opt.perf_bmf),
        ini_rules=_ini_rules(config),
        reference=reference,
        paired=design,
        build=opt.perf_build or "",
    )


def check_outputs(settings: Settings) -> None:
    """Refuse, before anything is measured, an output file that exists and is not the
    file of ours its option writes (a UsageError naming it, what it appears to be and the
    fix); see :mod:`pytest_llmperf.model.ownership`. The writers check again when they write."""
    from pytest_llmperf.outputs.writer import check_folder

    if settings.report_dir is not None:
        check_folder(settings.report_dir, "--perf-report")
    files: list[tuple[Path | None, ownership.Kind, str]] = [
        (settings.benchmark_json, "benchmark-json", "--perf-benchmark-json"),
        (settings.bmf_json, "bmf", "--perf-bmf"),
    ]
    for path, kind, what in files:
        if path is not None:
            if path.is_dir():
                raise UsageError(f"{what}: {path} is a directory; name a file in it")
            ownership.check(path, kind, what)


MARKER_HELP = (
    "llmperf(model=None, args=None, profile=None, thresholds=None, limits=None, sla=None, "
    "repetitions=None, warmup=None, timeout=None, isolate=None, remeasure=None, "
    "**load_params): the model and load params of a performance test (pytest-llmperf; "
    f"load params: {', '.join(LoadParams().to_dict())})"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    config.addinivalue_line("markers", "smoke: fast subset of the performance suite")
    try:
        settings = build_settings(config)
        check_outputs(settings)
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


def _test_plan(item: pytest.Item, session: PerfSession) -> TestPlan | None:
    """The TestPlan of an item that uses the fixtures (built once), else None."""
    if plan_key in item.stash:
        return item.stash[plan_key]
    spec: TestPlan | None = None
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
        spec = session.test_plan(item.nodeid, kwargs, param)
    item.stash[plan_key] = spec
    return spec


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    perf = config.stash.get(session_key, None)
    if perf is None:
        return
    keys: list[Any] = []
    for item in items:
        try:
            spec = _test_plan(item, perf)
        except UsageError as exc:
            raise pytest.UsageError(str(exc)) from None
        keys.append(None if spec is None else spec.config.key())
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


# -- fixtures -------------------------------------------------------------------------------


class LLMModel:
    """The test's model configuration; the model loads (once per session) on first use."""

    def __init__(self, session: PerfSession, spec: TestPlan) -> None:
        self._session = session
        self.spec = spec
        self.config = spec.config
        path, reason = session.resolve_path(spec.config)
        if path is None:
            pytest.skip(reason)
        try:
            runtime, _launcher, why = session.runtime(spec.config)
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
        run = self.spec.run
        return self._session.runner(self.config, self.path, run.isolate, run.timeout)


def _spec(request: pytest.FixtureRequest) -> TestPlan:
    perf = request.config.stash[session_key]
    spec = _test_plan(request.node, perf) if isinstance(request.node, pytest.Item) else None
    if spec is None:
        raise pytest.UsageError(
            f"{request.node.nodeid}: no model: add @pytest.mark.llmperf(model=...) or "
            "parametrize llmperf_config with pytest_llmperf.configs(...)"
        )
    return spec


@pytest.fixture
def llmperf_config(request: pytest.FixtureRequest) -> Config:
    """The test's Config (from ``@pytest.mark.llmperf`` or parametrization)."""
    return _spec(request).config


@pytest.fixture
def llm_model(request: pytest.FixtureRequest, llmperf_config: Config) -> LLMModel:
    """The loaded model for this test's params (session-cached; loads on first use)."""
    return LLMModel(request.config.stash[session_key], _spec(request))


@pytest.fixture
def llm_perf(request: pytest.FixtureRequest, llm_model: LLMModel) -> Recorder:
    """Runs workloads (``llm_perf.measure("tg128")``); gates them when the test ends."""
    perf = request.config.stash[session_key]
    rec = Recorder(
        perf, request.node.nodeid, llm_model.spec, llm_model.path, lambda: llm_model.runner
    )
    request.node.stash[recorder_key] = rec
    return rec


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
    spec = item.stash.get(plan_key, None)
    if perf is not None and spec is not None:
        perf.runners.release(spec.config.key())


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
    _write_outputs(perf)
    _stopped_by_signal(session, perf)


def _write_outputs(perf: PerfSession) -> None:
    st = perf.settings
    if not perf.reports:
        return
    from pytest_llmperf import outputs as report

    def report_dir(out: Path) -> str:
        history = perf.history_entries()
        written = report.write_report(perf.reports, out, history=history, what="--perf-report")
        return f"report: {out} ({len(written)} files)"

    def benchmark_json(out: Path) -> str:
        report.write_benchmark_json(perf.reports, out, what="--perf-benchmark-json")
        return f"pytest-benchmark JSON: {out}"

    def bmf(out: Path) -> str:
        report.write_bmf(perf.reports, out, what="--perf-bmf")
        return f"Bencher Metric Format: {out}"

    outputs: list[tuple[Path | None, Callable[[Path], str]]] = [
        (st.report_dir, report_dir),
        (st.benchmark_json, benchmark_json),
        (st.bmf_json, bmf),
    ]
    for out, write in outputs:
        if out is None:
            continue
        try:  # one output refused or failing leaves the others to be written
            perf.notice(write(out))
        except (OSError, LLMPerfError) as exc:
            perf.notice(f"report NOT written: {exc}")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    perf = config.stash.get(session_key, None)
    if perf is None or (not perf.reports and not perf.notices):
        return
    from pytest_llmperf import outputs as report

    tr = terminalreporter
    tr.section("llmperf")
    width = getattr(tr, "_tw", None)
    fullwidth = int(getattr(width, "fullwidth", 80) or 80)
    for text, markup in report.terminal_lines(
        perf.reports, verbose=config.option.verbose, width=fullwidth
    ):
        tr.write_line(text, **markup)
    for line in report.blind_spot_lines(perf.reports):
        tr.write_line(line)
    flushed = perf.flush_report
    if flushed is not None:
        for line in _flush_lines(flushed, str(perf.store.entries_dir)):
            tr.write_line(line)
    if perf.left_alone:
        tr.write_line(f"left alone (not accepted): {len(perf.left_alone)}")
        for nodeid, why in perf.left_alone[:20]:
            tr.write_line(f"  {nodeid}: {why}")
    unused = perf.unused_entries() if perf.settings.policy.accept is None else []
    if (
        unused
        and config.option.verbose >= 0
        and not config.option.keyword
        and not config.option.markexpr
    ):
        tr.write_line(
            f"{len(unused)} stored baseline entries were not used by any test "
            "(llmperf baseline prune removes them):"
        )
        for nodeid, key in unused[:10]:
            tr.write_line(f"  {nodeid} [{key}]")
    for notice in perf.notices:
        tr.write_line(notice)


def _flush_lines(flushed: Any, path: str) -> list[str]:
    lines: list[str] = []
    if getattr(flushed, "migrated", 0):
        lines.append(
            f"baseline {path}: {flushed.migrated} entries of an older baseline file moved to "
            "one file per test (commit the new files and the changed machine file)"
        )
    for label in ("created", "updated", "unchanged"):
        names = list(getattr(flushed, label, []) or [])
        if names:
            lines.append(f"baseline {path}: {label} {len(names)}")
            lines.extend(f"  {label}: {n}" for n in names[:20])
            if len(names) > 20:
                lines.append(f"  ... and {len(names) - 20} more")
    refused = list(getattr(flushed, "refused", []) or [])
    if refused:
        lines.append(f"baseline {path}: NOT written {len(refused)} (their files were left alone)")
        lines.extend(f"  NOT written: {line}" for line in refused)
    return lines
