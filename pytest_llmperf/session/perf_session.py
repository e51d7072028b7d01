"""The session: loaded models, the baseline store, fingerprints and the tests' results.

No pytest import: the plugin builds :class:`Settings` from options and ini values and
drives this. At collection :meth:`PerfSession.test_plan` turns a test's marker and
parametrization into a :class:`TestPlan` once; during the test a :class:`Recorder`
measures workloads and, when the test ends, asks the judge (:mod:`pytest_llmperf.verdict.judge`)
and queues accepted entries.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pytest_llmperf import baseline as baseline_mod
from pytest_llmperf.api import Config
from pytest_llmperf.backends import factory as backend_factory
from pytest_llmperf.backends.protocol import Runner
from pytest_llmperf.errors import BackendError, LLMPerfError, UsageError
from pytest_llmperf.machine import builds, gguf_info
from pytest_llmperf.machine import fingerprint as fp_mod
from pytest_llmperf.machine.registry import Registry
from pytest_llmperf.model.results import TestResult
from pytest_llmperf.model.workloads import Workload
from pytest_llmperf.session.pairs import Budget, PairPool, PairRunner
from pytest_llmperf.session.plan import (
    MarkerArgs,
    TestPlan,
    apply_reference,
    parse_marker,
    varied_by,
)
from pytest_llmperf.session.pool import RunnerPool
from pytest_llmperf.session.settings import Settings
from pytest_llmperf.verdict import thresholds
from pytest_llmperf.verdict.thresholds import RuleSource


class PerfSession:
    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        self.runners = RunnerPool(settings.max_loaded)
        #: the loads of each pair of paired tests, and the session's time for their rounds
        self.pairs = PairPool()
        self.budget = Budget(settings.budget_s)
        self.reports: list[TestResult] = []
        self.notices: list[str] = []
        self.used_entries: set[tuple[str, str]] = set()
        #: tests that ran under --perf-accept but were not accepted, with the reason
        self.left_alone: list[tuple[str, str]] = []
        self._listeners: list[Callable[[TestResult, Config], None]] = []
        self._store: baseline_mod.BaselineStore | None = None
        self._models: dict[str, gguf_info.ModelInfo] = {}
        self.flush_report: baseline_mod.FlushReport | None = None
        #: the warning when pytest-xdist workers x threads exceed the cores (else "")
        self.oversubscribed = ""
        sources = list(registry.rule_sources)
        if settings.ini_rules:
            sources.append(RuleSource("pytest ini llmperf_*", "ini", settings.ini_rules))
        if settings.cli_rules:
            sources.append(RuleSource("the command line", "cli", settings.cli_rules))
        self.rules = thresholds.rules_from(sources)

    # -- what other parts of the session hook into -------------------------------------
    def add_listener(self, listener: Callable[[TestResult, Config], None]) -> None:
        """Called with (report, config) after each test is gated (sweeps stream results)."""
        self._listeners.append(listener)

    def notice(self, *lines: str) -> None:
        """Lines for the end of the session's llmperf section."""
        self.notices.extend(lines)

    # -- collection ---------------------------------------------------------------------
    def test_plan(
        self, nodeid: str, marker_kwargs: Mapping[str, Any], param: Config | None
    ) -> TestPlan | None:
        """The TestPlan of a test from its merged marker kwargs and its ``llmperf_config``
        parameter (which overrides the marker's model and params); None when neither names
        a model. Every problem is a UsageError naming the test."""
        where = f"llmperf marker on {nodeid}"
        marker: MarkerArgs = parse_marker(marker_kwargs, self.registry.profiles, where)
        rules = (
            thresholds.rules_from(
                [RuleSource("marker on " + nodeid, "marker", marker.rules)], base=self.rules
            )
            if marker.rules
            else self.rules
        )
        cfg = param if param is not None else marker.config
        if cfg is None:
            return None
        if self.settings.build and cfg.build == builds.DEFAULT:
            cfg = cfg.replace(build=self.settings.build)
        ref_spec = marker.reference if marker.reference is not None else self.settings.reference
        if not ref_spec:
            self.runners.expect(cfg.key())
            return TestPlan(cfg, marker.run, rules)
        plan = TestPlan(
            cfg, marker.run, rules, apply_reference(cfg, ref_spec, where), varied_by(ref_spec)
        )
        self.pairs.expect(plan.pair_key)
        self.budget.tests_left += 1
        return plan

    def release(self, plan: TestPlan) -> None:
        """A test of ``plan`` finished: close what no later test needs."""
        if plan.pair_key is None:
            self.runners.release(plan.config.key())
            return
        self.pairs.release(plan.pair_key)
        self.budget.tests_left = max(self.budget.tests_left - 1, 0)

    def pair_runner(self, plan: TestPlan, path: str, timeout: float | None) -> PairRunner:
        """The loads of ``plan``'s pair, shared by every test of the pair (started on
        first use)."""
        ref = plan.reference
        assert ref is not None and plan.pair_key is not None
        ref_path, reason = self.resolve_path(ref)
        if ref_path is None:
            raise UsageError(f"the reference {ref.id} cannot run: {reason}")
        return self.pairs.get(
            plan.pair_key,
            lambda: PairRunner(
                lambda: self.start_runner(ref, ref_path, True, timeout),
                lambda: self.start_runner(plan.config, path, True, timeout),
                self.settings.paired,
                varied=plan.varied,
            ),
        )

    # -- baseline store -----------------------------------------------------------------
    @property
    def machine_id(self) -> str:
        return self.settings.machine_id or fp_mod.machine_id()

    @property
    def store(self) -> baseline_mod.BaselineStore:
        if self._store is None:
            explicit = self.settings.machine_id is not None
            store = baseline_mod.BaselineStore(
                self.settings.baseline_dir,
                self.machine_id,
                fp_mod.machine(),
                history=self.settings.history,
                aliases=() if explicit else fp_mod.legacy_machine_ids(),
            )
            store.load()
            self.notices.extend(store.notices)
            self._store = store
        return self._store

    # -- models and fingerprints --------------------------------------------------------
    def resolve_path(self, cfg: Config) -> tuple[str | None, str]:
        return self.registry.model(cfg.model).resolve(self.settings.cache_dir)

    def _model_info(self, path: str) -> gguf_info.ModelInfo:
        if path not in self._models:
            self._models[path] = gguf_info.inspect(path)
        return self._models[path]

    def fingerprint(
        self, cfg: Config, path: str, software: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """What makes this config's measurements comparable: machine (this session's),
        software (as reported by the process that ran llama.cpp), model file, and the
        build and launcher when they are not the default (strict fields then)."""
        doc = fp_mod.compose(
            fp_mod.machine(),
            dict(software) if software is not None else {},
            fp_mod.model(self._model_info(path), cfg.model),
        )
        if cfg.build != builds.DEFAULT:
            doc["build"] = cfg.build
        if cfg.launcher:
            doc["launcher"] = cfg.launcher
        if cfg.bench_args:
            doc["bench_args"] = cfg.bench_args
        return doc

    def runtime(self, cfg: Config) -> tuple[builds.Runtime | None, tuple[str, ...], str]:
        """The build's runtime and the launcher's command prefix of ``cfg``; a runtime of
        None comes with the reason (a build whose variable is unset: skip)."""
        source = self.registry.build(cfg.build)
        runtime, reason = source.runtime()
        if runtime is None and not source.env:
            raise BackendError(reason)
        launcher = self.registry.launcher(cfg.launcher)
        return runtime, launcher.argv if launcher else (), reason

    def baseline_key(self, cfg: Config, workloads: Iterable[Workload]) -> str | None:
        """The baseline key of ``cfg`` measured with ``workloads``, without loading the
        model; None when its model file is not available."""
        try:
            path, _reason = self.resolve_path(cfg)
            if path is None:
                return None
            fingerprint = self.fingerprint(cfg, path)
        except (LLMPerfError, OSError):
            return None
        return baseline_mod.baseline_key(fingerprint, cfg.params, workloads)

    def start_runner(
        self, cfg: Config, path: str, isolate: bool | None = None, timeout_s: float | None = None
    ) -> Runner:
        """A new runner for ``cfg`` (not pooled: the caller closes it): the registry's
        build and launcher, resolved here; the backend chosen by
        :func:`~pytest_llmperf.backends.factory.start_runner`."""
        st = self.settings
        runtime, launcher, reason = self.runtime(cfg)
        if runtime is None:
            raise UsageError(reason)
        return backend_factory.start_runner(
            path,
            cfg.params,
            cfg.model,
            runtime=runtime,
            launcher=launcher,
            isolate=st.isolate if isolate is None else isolate,
            timeout_s=timeout_s or st.timeout_s,
            build=cfg.build,
            bench_args=cfg.bench_args,
        )

    def runner(
        self, cfg: Config, path: str, isolate: bool | None = None, timeout_s: float | None = None
    ) -> Runner:
        """The pooled runner of ``cfg`` (started on first use, kept for its later tests)."""
        return self.runners.get(cfg.key(), lambda: self.start_runner(cfg, path, isolate, timeout_s))

    def close(self) -> None:
        self.pairs.close()
        self.runners.close()

    # -- end of session -------------------------------------------------------------------
    def flush(self) -> baseline_mod.FlushReport | None:
        if self._store is not None and self.flush_report is None:
            self.flush_report = self._store.flush()
        return self.flush_report

    def history_entries(self) -> list[baseline_mod.Entry]:
        """The stored entries of this session's tests (their current keys), as they are on
        disk now, after the flush: the report's history page. A file that cannot be read
        is left out (its tests already say why)."""
        if self._store is None:
            return []
        wanted = sorted({(r.nodeid, r.baseline_key) for r in self.reports if r.baseline_key})
        out: list[baseline_mod.Entry] = []
        for nodeid, key in wanted:
            try:
                entry = self._store.entries_for(nodeid).get(key)
            except LLMPerfError:
                continue
            if entry is not None and entry.sessions:
                out.append(entry)
        return out

    def unused_entries(self) -> list[tuple[str, str]]:
        if self._store is None:
            return []
        return list(self._store.unused_entries(self.used_entries))

    def _gated(self, report: TestResult, cfg: Config) -> None:
        self.reports.append(report)
        for listener in self._listeners:
            listener(report, cfg)


OVERSUBSCRIBED = "WARNING: oversubscribed"


def oversubscription(workers: int, threads: int, cores: int | None = None) -> str:
    """The loud warning for pytest-xdist workers x llama.cpp threads beyond the cores:
    llama.cpp's threads spin-wait, so processes sharing cores slow each other far more
    than their share (a 3 s test took minutes beside another), and nothing in the timings
    says so. Empty when they fit."""
    cores = cores or os.cpu_count() or 1
    if workers <= 1 or workers * threads <= cores:
        return ""
    return (
        f"{OVERSUBSCRIBED}: {workers} pytest-xdist workers x {threads} llama.cpp threads = "
        f"{workers * threads} > {cores} cores: llama.cpp's threads spin-wait, so the workers "
        "slow each other far beyond their share and every timing is off; run with "
        f"-n {max(1, cores // max(threads, 1))} or fewer threads per model"
    )


def group_by_config(modules: list[str], keys: list[Any]) -> list[int]:
    """A run order for collected tests: within each module, the tests that share a model
    configuration (``keys[i]``, None for other tests) run together, in the order their
    configurations first appear, so a configuration is loaded once; other tests keep
    their places. Returns indices into the collected list."""
    first: dict[tuple[str, Any], int] = {}
    by_module: dict[str, list[int]] = {}
    for idx, key in enumerate(keys):
        if key is None:
            continue
        first.setdefault((modules[idx], key), idx)
        by_module.setdefault(modules[idx], []).append(idx)
    order = list(range(len(keys)))
    for module, slots in by_module.items():
        ordered = sorted(slots, key=lambda i: (first[(module, keys[i])], i))
        for slot, src in zip(slots, ordered, strict=True):
            order[slot] = src
    return order
