"""pytest glue for parameter sweeps: the ``llmperf_sweep`` marker and the sweep options.

    @pytest.mark.llmperf_sweep(file="sweeps.yaml", name="kv")
    def test_sweep(llm_perf):
        llm_perf.measure_all()

parametrizes ``llmperf_config`` with one :class:`~pytest_llmperf.api.Config` per sweep
point (ids such as ``test_sweep[tiny-moe-q8_0-q8_f16-small-t2]``), prints the plan before
running, one progress line per finished point, appends results to a JSONL file, resumes,
shards, and runs the two phases (explore, then deep around the winners).

Everything with substance lives in the pure package :mod:`pytest_llmperf.sweep` (the
session side in :class:`~pytest_llmperf.session.sweeps.state.SweepState`); this file only
translates between pytest and it. It hooks into the main plugin's
:class:`~pytest_llmperf.session.perf_session.PerfSession` through a listener: one call per
gated test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.errors import UsageError
from pytest_llmperf.options import choice, int_at_least
from pytest_llmperf.plugin.state import session_key
from pytest_llmperf.session.sweeps.collect import MARKER, MarkerCall, SweepPlan
from pytest_llmperf.session.sweeps.state import SweepState
from pytest_llmperf.sweep.options import PHASES, SweepOptions, parse_strategy
from pytest_llmperf.sweep.selection import strategy_names

# -- options --------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("llmperf", "LLM inference performance (pytest-llmperf)")
    g.addoption(
        "--perf-strategy",
        type=parse_strategy,
        default=None,
        metavar="NAME",
        help=f"sampling strategy of every sweep: {strategy_names()} (overrides the "
        "llmperf_sweep marker and the sweep file)",
    )
    g.addoption(
        "--perf-sample-size",
        type=int_at_least(1),
        default=None,
        metavar="N",
        help="sweeps: points drawn by the lhs strategy",
    )
    g.addoption(
        "--perf-seed",
        type=int_at_least(0),
        default=None,
        metavar="N",
        help="sweeps: seed of the lhs strategy (default 42)",
    )
    g.addoption(
        "--perf-k",
        type=int_at_least(1),
        default=None,
        metavar="K",
        help="sweeps: custom_sparse keeps every K-th value of each axis (default 2)",
    )
    g.addoption(
        "--perf-probe",
        action="store_true",
        help="sweeps: before running, time one run of the first point of each sweep and "
        "print an estimated time with the plan",
    )
    g.addoption(
        "--perf-sweep-metric",
        default=None,
        metavar="METRIC",
        help="sweeps: the key figure of progress lines and the ranking metric (default "
        "tg_tps, pp_tps where nothing is generated; ranking: the sweep's deep.metric)",
    )
    g.addoption(
        "--perf-sweep-results",
        default=None,
        metavar="FILE.jsonl",
        help="sweeps: append one JSON line per finished point (crash-safe; input of "
        "--perf-resume, the deep phase and 'llmperf merge')",
    )
    g.addoption(
        "--perf-resume",
        action="store_true",
        help="sweeps: skip points already in --perf-sweep-results with the same fingerprint "
        "key (machine, software, model file, load params, workloads)",
    )
    g.addoption(
        "--perf-shard",
        default=None,
        metavar="i/N",
        help="sweeps: run only shard i of N of every sweep (1-based; merge the shards' "
        "results with 'llmperf merge'). Default: from the environment: LLMPERF_SHARD=i/N, a "
        "Slurm array's SLURM_ARRAY_TASK_ID, or a Kubernetes Indexed Job's "
        "JOB_COMPLETION_INDEX with LLMPERF_SHARD_COUNT (LLMPERF_SHARD=off: none)",
    )
    g.addoption(
        "--perf-sweep",
        default=None,
        metavar="NAME",
        help="sweeps: run only the tests of sweep NAME (every other test is deselected)",
    )
    g.addoption(
        "--perf-phase",
        type=choice(PHASES),
        default="explore",
        metavar="explore|deep",
        help="sweeps: explore the sampled grid (default), or go deep around the winners of "
        "--perf-ranking (or of the explore results in --perf-sweep-results)",
    )
    g.addoption(
        "--perf-ranking",
        default=None,
        metavar="FILE",
        help="sweeps: explore writes the ranking here at the end (.yaml, .yml or .json; "
        "edit it freely), deep reads the winners from it; '{sweep}' in the name is "
        "replaced by the sweep name",
    )
    g.addoption(
        "--perf-top-k",
        type=int_at_least(1),
        default=None,
        metavar="K",
        help="sweeps: configurations kept in the ranking and deepened (default: the "
        "sweep's deep.top_k, else 3)",
    )


state_key = pytest.StashKey[SweepState]()
MARKER_HELP = (
    f"{MARKER}(file=None, name=None, sweep=None, strategy=None, size=None, seed=None, "
    "k=None, model=None): parametrize llmperf_config with the points of a parameter "
    "sweep (pytest-llmperf; see docs/SWEEPS.md)"
)


@contextlib.contextmanager
def _as(error: type[Exception]) -> Iterator[None]:
    """A UsageError of the pure side as pytest's ``error`` (usage or collection error)."""
    try:
        yield
    except UsageError as exc:
        raise error(str(exc)) from None


def _state(config: pytest.Config) -> SweepState | None:
    return config.stash.get(state_key, None)


# -- hooks --------------------------------------------------------------------------------


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    with _as(pytest.UsageError):
        options = SweepOptions.from_namespace(config.option)
    state = SweepState(
        options, Path(str(config.rootpath)), lambda: config.stash.get(session_key, None)
    )
    config.stash[state_key] = state
    perf = config.stash.get(session_key, None)
    if perf is not None:
        perf.add_listener(state.on_report)
    config.pluginmanager.register(_RunHooks(config, state), "llmperf-sweep-run")


def pytest_unconfigure(config: pytest.Config) -> None:
    hooks = config.pluginmanager.get_plugin("llmperf-sweep-run")
    if hooks is not None:
        config.pluginmanager.unregister(hooks)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    mark, state = metafunc.definition.get_closest_marker(MARKER), _state(metafunc.config)
    if mark is not None and state is not None:
        with _as(pytest.Collector.CollectError):
            configs = state.collector.configs_for(_marker_call(metafunc, mark))
        metafunc.parametrize("llmperf_config", [pytest.param(c, id=c.name) for c in configs])


def _marker_call(metafunc: pytest.Metafunc, mark: pytest.Mark) -> MarkerCall:
    """What the collector needs of a marked test function."""
    definition = metafunc.definition
    perf_mark = definition.get_closest_marker("llmperf")
    model = mark.kwargs.get("model")
    if model is None and perf_mark is not None:
        model = perf_mark.kwargs.get("model")
    return MarkerCall(
        nodeid=definition.nodeid,
        test_dir=Path(str(definition.path)).parent,
        args=tuple(mark.args),
        kwargs=dict(mark.kwargs),
        model=model,
        uses_config="llmperf_config" in metafunc.fixturenames,
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    state = _state(config)
    if state is not None and (state.plans or state.options.only):
        with _as(pytest.UsageError):
            drop = state.collector.select((item.nodeid, _sweep_config(item)) for item in items)
        if drop:
            config.hook.pytest_deselected(items=[i for i in items if i.nodeid in drop])
            items[:] = [i for i in items if i.nodeid not in drop]


def _sweep_config(item: pytest.Item) -> Any:
    """The ``llmperf_config`` parameter of a collected item, if any."""
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("llmperf_config") if callspec is not None else None


def pytest_collection_finish(session: pytest.Session) -> None:
    state = _state(session.config)
    if state is not None and state.plans:
        state.finish_collection(item.nodeid for item in session.items)
        with _as(pytest.UsageError):
            state.check_outputs()


def pytest_report_collectionfinish(
    config: pytest.Config, start_path: Path, items: Sequence[pytest.Item]
) -> list[str]:
    state = _state(config)
    if state is None or not state.plans:
        return []
    state.finish_collection(item.nodeid for item in items)
    return state.plan_lines()


def _outcome(report: pytest.TestReport) -> tuple[str, str] | None:
    """("failed", message) or ("skipped", reason) of a test report; None when it passed."""
    longrepr = report.longrepr
    if report.failed:
        crash = getattr(longrepr, "reprcrash", None)
        return "failed", str(getattr(crash, "message", None) or report.longreprtext)
    if report.skipped:
        reason = longrepr[2] if isinstance(longrepr, tuple) else report.longreprtext
        return "skipped", str(reason).removeprefix("Skipped: ")
    return None


class _RunHooks:
    """The per-test hooks (registered per session: test reports carry no config)."""

    def __init__(self, config: pytest.Config, state: SweepState) -> None:
        self.config = config
        self.state = state

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self.state.on_start(nodeid)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        outcome = _outcome(report) if self.state.wants_outcome(report.nodeid) else None
        if outcome is not None:
            self.state.on_outcome(report.nodeid, *outcome)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        line = self.state.on_finish(nodeid)
        if line is not None:
            _progress_write(self.config, line)


def _terminal_write(config: pytest.Config, line: str) -> None:
    tr: Any = config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(line)


def _progress_write(config: pytest.Config, line: str) -> None:
    """One progress line between the test status lines, in any verbosity, without the
    blank line pytest would add after a line written with ``write_line``."""
    tr: Any = config.pluginmanager.get_plugin("terminalreporter")
    if tr is None:
        return
    tw = getattr(tr, "_tw", None)
    quiet = tr.verbosity < 0 if hasattr(tr, "verbosity") else False
    if tw is None or not hasattr(tr, "currentfspath") or quiet:
        if tw is not None and getattr(tw, "width_of_current_line", None):
            tw.line()
        tr.write_line(line)
        return
    tr.ensure_newline()
    tw.write(line)
    tr.currentfspath = -2  # pytest ends this line before its next output


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = _state(session.config)
    if state is None or not state.plans:
        return
    lines = state.finish_session()
    perf = session.config.stash.get(session_key, None)
    if perf is not None:
        perf.notice(*lines)
    else:
        for line in lines:
            _terminal_write(session.config, line)
    if state.write_errors:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


__all__ = ["MARKER", "SweepOptions", "SweepPlan", "SweepState"]
