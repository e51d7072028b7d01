"""pytest glue: options, ini keys, the ``llmperf`` marker, fixtures, hooks, summary.

Everything with substance lives in :mod:`pytest_llmperf.session` and the pure modules;
this file only translates between pytest and them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf import thresholds
from pytest_llmperf.api import Config, config_from_marker
from pytest_llmperf.backend.runner import DEFAULT_TIMEOUT_S, Runner
from pytest_llmperf.config import load_project_config
from pytest_llmperf.errors import LLMPerfError, UsageError
from pytest_llmperf.session import (
    ACCEPT_MODES,
    MISSING_MODES,
    PerfOutcome,
    PerfSession,
    Recorder,
    Settings,
    default_missing_mode,
)

session_key = pytest.StashKey[PerfSession]()
recorder_key = pytest.StashKey[Recorder]()
config_key = pytest.StashKey[tuple[Config, dict[str, Any]] | None]()

FIXTURES = ("llm_model", "llm_perf")


# -- options --------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be >= 0")
    return value


def _choice(choices: tuple[str, ...]) -> Any:
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"{text!r}: accepted: {', '.join(choices)}")
        return text

    return parse


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("llmperf", "LLM inference performance (pytest-llmperf)")
    g.addoption(
        "--perf-accept",
        nargs="?",
        const="all",
        default=None,
        type=_choice(ACCEPT_MODES),
        metavar="all|new|failed",
        help="record measurements as the new baseline: all tests that ran (default), "
        "only those without a baseline, or only those that failed the gate",
    )
    g.addoption(
        "--perf-force-accept",
        action="store_true",
        help="with --perf-accept: also replace baselines whose fingerprint differs",
    )
    g.addoption(
        "--perf-missing",
        type=_choice(MISSING_MODES),
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
        default=None,
        metavar="ID",
        help="baseline file name for this machine (default: derived from CPU/GPU; "
        "env LLMPERF_MACHINE)",
    )
    g.addoption(
        "--perf-repetitions",
        type=_positive_int,
        default=None,
        metavar="N",
        help="timed repetitions per workload (default 3)",
    )
    g.addoption(
        "--perf-warmup",
        type=_positive_int,
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
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"kill a measurement that runs longer (default {DEFAULT_TIMEOUT_S:.0f})",
    )
    g.addoption(
        "--perf-remeasure",
        type=_positive_int,
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
        type=float,
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


def _ini_thresholds(config: pytest.Config) -> dict[str, Any]:
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
    opt = config.option
    root = Path(str(config.rootpath))

    def pick(cli: Any, ini: str, default: Any, conv: Any = None) -> Any:
        if cli is not None:
            return cli
        value = _ini(config, ini)
        if value is None:
            return default
        try:
            return conv(value) if conv else value
        except ValueError:
            raise UsageError(f"ini {ini} = {value!r}: not a valid value") from None

    base_dir = Path(pick(opt.perf_baseline_dir, "llmperf_baseline_dir", "baselines"))
    if not base_dir.is_absolute():
        base_dir = root / base_dir

    def out_path(value: str | None) -> Path | None:
        return None if value is None else Path(value).absolute()

    isolate = not opt.perf_in_process and bool(config.getini("llmperf_isolate"))
    if os.environ.get("LLMPERF_IN_PROCESS"):
        isolate = False
    return Settings(
        accept=opt.perf_accept,
        force_accept=bool(opt.perf_force_accept),
        missing=opt.perf_missing or default_missing_mode(),
        baseline_dir=base_dir,
        machine_id=opt.perf_machine
        or os.environ.get("LLMPERF_MACHINE")
        or _ini(config, "llmperf_machine"),
        repetitions=pick(opt.perf_repetitions, "llmperf_repetitions", 3, int),
        warmup=pick(opt.perf_warmup, "llmperf_warmup", 1, int),
        isolate=isolate,
        timeout_s=pick(opt.perf_timeout, "llmperf_timeout", DEFAULT_TIMEOUT_S, float),
        remeasure=pick(opt.perf_remeasure, "llmperf_remeasure", 1, int),
        fail_on_improvement=bool(opt.perf_fail_on_improvement),
        alpha=opt.perf_alpha if opt.perf_alpha is not None else 0.05,
        cache_dir=opt.perf_cache_dir,
        max_loaded=pick(None, "llmperf_max_loaded", 2, int),
        report_dir=out_path(opt.perf_report),
        benchmark_json=out_path(opt.perf_benchmark_json),
        bmf_json=out_path(opt.perf_bmf),
        ini_thresholds=_ini_thresholds(config),
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "llmperf(model=None, args=None, profile=None, thresholds=None, limits=None, sla=None, "
        "repetitions=None, warmup=None, **load_params): the model and load params of a "
        "performance test (pytest-llmperf)",
    )
    config.addinivalue_line("markers", "smoke: fast subset of the performance suite")
    try:
        settings = build_settings(config)
        project = load_project_config(Path(str(config.rootpath)), config.option.perf_config)
        perf = PerfSession(settings, project)
        config.stash[session_key] = perf
        if _is_xdist_controller(config):
            config.pluginmanager.register(_XdistCollector(perf), "llmperf-xdist-collector")
            if settings.accept is not None:
                perf.notices.append("baselines are written by the xdist workers")
    except LLMPerfError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(session_key, None)
    if session is not None:
        session.close()


# -- per-item configuration ---------------------------------------------------------------


def _item_config(item: pytest.Item, session: PerfSession) -> tuple[Config, dict[str, Any]] | None:
    """The Config and marker extras of an item that uses the fixtures, else None."""
    if config_key in item.stash:
        return item.stash[config_key]
    result: tuple[Config, dict[str, Any]] | None = None
    if any(f in getattr(item, "fixturenames", ()) for f in FIXTURES):
        where = f"llmperf marker on {item.nodeid}"
        kwargs: dict[str, Any] = {}
        for mark in reversed(list(item.iter_markers("llmperf"))):  # closest mark wins
            if mark.args:
                raise UsageError(f"{where}: takes keyword arguments only (model=..., ...)")
            kwargs.update(mark.kwargs)
        cfg, extras = config_from_marker(kwargs, session.project.profiles, where)
        gates = {k: v for k, v in extras.items() if k in ("thresholds", "limits", "sla")}
        if gates:  # parsed now, so a bad one is a usage error like bad load params
            thresholds.merge_threshold_sources(
                [("marker on " + item.nodeid, gates)], base=session.thresholds
            )
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "llmperf_config" in callspec.params:
            param = callspec.params["llmperf_config"]
            if not isinstance(param, Config):
                raise UsageError(
                    f"{item.nodeid}: llmperf_config must be a pytest_llmperf.Config "
                    "(use pytest_llmperf.configs(...))"
                )
            cfg = param
        if cfg is not None:
            result = (cfg, extras)
    item.stash[config_key] = result
    return result


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    perf = config.stash.get(session_key, None)
    if perf is None:
        return
    keys: dict[int, tuple[Any, ...]] = {}
    for idx, item in enumerate(items):
        try:
            found = _item_config(item, perf)
        except UsageError as exc:
            raise pytest.UsageError(str(exc)) from None
        if found is not None:
            keys[idx] = found[0].key()
    for key in keys.values():
        perf.remaining[key] = perf.remaining.get(key, 0) + 1
    if config.option.perf_no_reorder or not keys:
        return
    # Within each module, run the tests that share a model configuration together, so a
    # configuration is loaded once; other tests keep their places.
    first: dict[tuple[str, tuple[Any, ...]], int] = {}
    by_module: dict[str, list[int]] = {}
    for idx in keys:
        module = items[idx].nodeid.split("::", 1)[0]
        first.setdefault((module, keys[idx]), idx)
        by_module.setdefault(module, []).append(idx)
    new = list(items)
    for module, slots in by_module.items():
        ordered = sorted(slots, key=lambda i: (first[(module, keys[i])], i))
        for slot, src in zip(slots, ordered, strict=True):
            new[slot] = items[src]
    items[:] = new


# -- fixtures -------------------------------------------------------------------------------


class LLMModel:
    """The test's model configuration; the model loads (once per session) on first use."""

    def __init__(self, session: PerfSession, cfg: Config, extras: dict[str, Any]) -> None:
        self._session = session
        self.config = cfg
        self.extras = extras
        path, reason = session.resolve_path(cfg)
        if path is None:
            pytest.skip(reason)
        self.path: str = path

    @property
    def model_id(self) -> str:
        return self.config.model

    @property
    def params(self) -> Any:
        return self.config.params

    @property
    def runner(self) -> Runner:
        return self._session.runner(
            self.config,
            self.path,
            isolate=self.extras.get("isolate"),
            timeout_s=self.extras.get("timeout"),
        )


@pytest.fixture
def llmperf_config(request: pytest.FixtureRequest) -> Config:
    """The test's Config (from ``@pytest.mark.llmperf`` or parametrization)."""
    perf = request.config.stash[session_key]
    found = _item_config(request.node, perf) if isinstance(request.node, pytest.Item) else None
    if found is None:
        raise pytest.UsageError(
            f"{request.node.nodeid}: no model: add @pytest.mark.llmperf(model=...) or "
            "parametrize llmperf_config with pytest_llmperf.configs(...)"
        )
    return found[0]


@pytest.fixture
def llm_model(request: pytest.FixtureRequest, llmperf_config: Config) -> LLMModel:
    """The loaded model for this test's params (session-cached; loads on first use)."""
    perf = request.config.stash[session_key]
    found = _item_config(request.node, perf) if isinstance(request.node, pytest.Item) else None
    extras = found[1] if found else {}
    return LLMModel(perf, llmperf_config, extras)


@pytest.fixture
def llm_perf(request: pytest.FixtureRequest, llm_model: LLMModel) -> Recorder:
    """Runs workloads (``llm_perf.measure("tg128")``); gates them when the test ends."""
    perf = request.config.stash[session_key]
    rec = Recorder(
        perf,
        request.node.nodeid,
        llm_model.config,
        lambda: llm_model.runner,
        llm_model.extras,
        where=request.node.nodeid,
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
            from pytest_llmperf.results import TestReport

            self.perf.reports.append(TestReport.from_dict(data))


def pytest_runtest_teardown(item: pytest.Item) -> None:
    perf = item.config.stash.get(session_key, None)
    found = item.stash.get(config_key, None)
    if perf is not None and found is not None:
        perf.release(found[0].key())


# -- end of session ---------------------------------------------------------------------


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    perf = session.config.stash.get(session_key, None)
    if perf is None:
        return
    perf.close()
    try:
        perf.flush()
    except LLMPerfError as exc:
        perf.notices.append(f"baselines NOT written: {exc}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    _write_outputs(perf)


def _write_outputs(perf: PerfSession) -> None:
    st = perf.settings
    if not perf.reports:
        return
    from pytest_llmperf import report

    try:
        if st.report_dir is not None:
            written = report.write_report(perf.reports, st.report_dir)
            perf.notices.append(f"report: {st.report_dir} ({len(written)} files)")
        if st.benchmark_json is not None:
            report.write_benchmark_json(perf.reports, st.benchmark_json)
            perf.notices.append(f"pytest-benchmark JSON: {st.benchmark_json}")
        if st.bmf_json is not None:
            report.write_bmf(perf.reports, st.bmf_json)
            perf.notices.append(f"Bencher Metric Format: {st.bmf_json}")
    except (OSError, LLMPerfError) as exc:
        perf.notices.append(f"report NOT written: {exc}")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    perf = config.stash.get(session_key, None)
    if perf is None or (not perf.reports and not perf.notices):
        return
    from pytest_llmperf import report

    tr = terminalreporter
    tr.section("llmperf")
    width = getattr(tr, "_tw", None)
    fullwidth = int(getattr(width, "fullwidth", 80) or 80)
    for text, markup in report.terminal_lines(
        perf.reports, verbose=config.option.verbose, width=fullwidth
    ):
        tr.write_line(text, **markup)
    flushed = perf.flush_report
    if flushed is not None:
        for line in _flush_lines(flushed, str(perf.store.path)):
            tr.write_line(line)
    if perf.left_alone:
        tr.write_line(f"left alone (not accepted): {len(perf.left_alone)}")
        for nodeid, why in perf.left_alone[:20]:
            tr.write_line(f"  {nodeid}: {why}")
    unused = perf.unused_entries() if perf.settings.accept is None else []
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
    for label in ("created", "updated", "unchanged"):
        names = list(getattr(flushed, label, []) or [])
        if names:
            lines.append(f"baseline {path}: {label} {len(names)}")
            lines.extend(f"  {label}: {n}" for n in names[:20])
            if len(names) > 20:
                lines.append(f"  ... and {len(names) - 20} more")
    return lines
