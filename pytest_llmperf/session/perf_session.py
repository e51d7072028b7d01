"""The session: settings, loaded models, the baseline store, and each test's recorder.

No pytest import: the plugin builds :class:`Settings` from options and ini values and
drives this. At collection :meth:`PerfSession.test_plan` turns a test's marker and
parametrization into a :class:`TestPlan` once; during the test a :class:`Recorder`
measures workloads and, when the test ends, asks the judge (:mod:`pytest_llmperf.verdict.judge`)
and queues accepted entries.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import shlex
import subprocess
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmperf import baseline as baseline_mod
from pytest_llmperf.api import Config, MarkerArgs, RunOptions, apply_reference, parse_marker
from pytest_llmperf.backends.runner import DEFAULT_TIMEOUT_S, Runner, make_runner
from pytest_llmperf.errors import BackendCrash, BackendError, LLMPerfError, UsageError
from pytest_llmperf.machine import builds, gguf_info
from pytest_llmperf.machine import fingerprint as fp_mod
from pytest_llmperf.machine.registry import Registry
from pytest_llmperf.model.results import Measurement, MetricComparison, TestResult
from pytest_llmperf.model.workloads import DEFAULT_MAX_TOKENS, Workload, stream_workload
from pytest_llmperf.verdict import judge, thresholds
from pytest_llmperf.verdict import paired as paired_mod
from pytest_llmperf.verdict.thresholds import GateRules, RuleSource


@dataclass(frozen=True)
class Settings:
    """The session's settings, from options, ini keys and the environment."""

    policy: judge.Policy = field(default_factory=judge.Policy)
    baseline_dir: Path = Path("baselines")
    machine_id: str | None = None
    repetitions: int = 3
    warmup: int = 1
    isolate: bool = True
    timeout_s: float = DEFAULT_TIMEOUT_S
    remeasure: int = 1
    cache_dir: str | None = None
    max_loaded: int = 2
    #: accepted sessions kept per baseline entry
    history: int = baseline_mod.DEFAULT_HISTORY
    report_dir: Path | None = None
    benchmark_json: Path | None = None
    bmf_json: Path | None = None
    #: rules from the pytest ini section (``llmperf_thresholds`` ...)
    ini_rules: Mapping[str, Any] = field(default_factory=dict)
    #: judge every test against this reference (``--perf-reference``), e.g. {"build": "main"}
    reference: Mapping[str, Any] | None = None
    #: run every test that names no build with this one (``--perf-build``)
    build: str = ""
    #: how paired comparisons run and are judged
    paired: paired_mod.Design = field(default_factory=paired_mod.Design)

    def __post_init__(self) -> None:
        if self.repetitions < 1:
            raise UsageError(f"--perf-repetitions={self.repetitions}: must be >= 1")


def default_missing_mode() -> judge.MissingMode:
    """record-and-pass locally; fail where the CI environment variable is set."""
    ci = os.environ.get("CI", "").strip().lower()
    return "fail" if ci not in ("", "0", "false", "no") else "record"


class PerfOutcome(Exception):
    """Raised by Recorder.finish for a test that must not pass."""

    def __init__(self, kind: judge.Outcome, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "fail" or "skip"


@dataclass(frozen=True)
class TestPlan:
    """One test's configuration, built once at collection."""

    __test__ = False  # not a pytest test class

    config: Config
    run: RunOptions
    #: the session's rules with the marker's merged over them
    rules: GateRules
    #: the configuration this test is judged against, side by side (paired verdicts)
    reference: Config | None = None


class RunnerPool:
    """Loaded model configurations: one runner per (model id, LoadParams), closed after
    the last test that needs it, at most ``max_loaded`` at once (least recently used
    first out)."""

    def __init__(self, max_loaded: int) -> None:
        self.max_loaded = max(max_loaded, 1)
        self._runners: OrderedDict[Any, Runner] = OrderedDict()
        self._remaining: dict[Any, int] = {}

    def expect(self, key: Any) -> None:
        """One more collected test will use ``key``."""
        self._remaining[key] = self._remaining.get(key, 0) + 1

    def get(self, key: Any, start: Callable[[], Runner]) -> Runner:
        if key in self._runners:
            self._runners.move_to_end(key)
            return self._runners[key]
        while len(self._runners) >= self.max_loaded:
            _k, old = self._runners.popitem(last=False)
            _close(old)
        runner = start()
        self._runners[key] = runner
        return runner

    def drop(self, key: Any) -> None:
        runner = self._runners.pop(key, None)
        if runner is not None:
            _close(runner)

    def release(self, key: Any) -> None:
        """A test of ``key`` finished; close its model when no later test needs it."""
        if key not in self._remaining:
            return
        self._remaining[key] -= 1
        if self._remaining[key] <= 0:
            self.drop(key)

    def close(self) -> None:
        while self._runners:
            _k, runner = self._runners.popitem()
            _close(runner)


def _close(runner: Runner) -> None:
    try:
        runner.close()
    except Exception:  # a dead worker: nothing left to close
        pass


class PerfSession:
    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        self.runners = RunnerPool(settings.max_loaded)
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
        self.runners.expect(cfg.key())
        ref_spec = marker.reference if marker.reference is not None else self.settings.reference
        reference = apply_reference(cfg, ref_spec, where) if ref_spec else None
        return TestPlan(cfg, marker.run, rules, reference)

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
        """A new runner for ``cfg`` (not pooled: the caller closes it)."""
        st = self.settings
        runtime, launcher, reason = self.runtime(cfg)
        if runtime is None:
            raise UsageError(reason)
        if runtime.llama_bench:
            from pytest_llmperf.backends.llamabench import LlamaBenchRunner

            return LlamaBenchRunner(
                runtime.llama_bench,
                path,
                cfg.params,
                cfg.model,
                extra_args=shlex.split(cfg.bench_args),
                launcher=launcher,
                timeout_s=timeout_s or st.timeout_s,
                build=cfg.build,
            )
        if cfg.bench_args:
            raise UsageError(
                f"bench_args={cfg.bench_args!r} is for a llama-bench build (builds: "
                f"{{NAME: {{llama_bench: PATH}}}}); build {cfg.build!r} runs llama-cpp-python: "
                "write its load params as args=..."
            )
        return make_runner(
            path,
            cfg.params,
            cfg.model,
            isolate=st.isolate if isolate is None else isolate,
            timeout_s=timeout_s or st.timeout_s,
            runtime=runtime,
            launcher=launcher,
            build=cfg.build,
        )

    def runner(
        self, cfg: Config, path: str, isolate: bool | None = None, timeout_s: float | None = None
    ) -> Runner:
        """The pooled runner of ``cfg`` (started on first use, kept for its later tests)."""
        return self.runners.get(cfg.key(), lambda: self.start_runner(cfg, path, isolate, timeout_s))

    def close(self) -> None:
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


def git_commit(cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


class Recorder:
    """Runs workloads for one test; gates them when the test ends."""

    def __init__(
        self,
        session: PerfSession,
        nodeid: str,
        spec: TestPlan,
        path: str,
        runner_factory: Callable[[], Runner],
    ) -> None:
        self.session = session
        self.nodeid = nodeid
        self.spec = spec
        self.config = spec.config
        self.path = path
        self._runner_factory = runner_factory
        self.measurements: list[Measurement] = []
        self.report: TestResult | None = None
        self._requests: list[tuple[Workload, int, int]] = []
        #: workload name -> the paired comparison with the reference (paired tests)
        self.paired: dict[str, paired_mod.PairedResult] = {}
        #: what the backend said about the configuration (a knob without effect ...)
        self._warnings: list[str] = []

    @property
    def repetitions(self) -> int:
        return self.spec.run.repetitions or self.session.settings.repetitions

    @property
    def warmup(self) -> int:
        run = self.spec.run
        return run.warmup if run.warmup is not None else self.session.settings.warmup

    def _run(self, workload: Workload, repetitions: int, warmup: int) -> Measurement:
        runner = self._runner_factory()
        try:
            m = runner.measure(workload, repetitions, warmup)  # "load" included
        except BackendCrash:
            self.session.runners.drop(self.config.key())
            raise
        m.fingerprint = self.session.fingerprint(self.config, self.path, runner.software)
        for warning in runner.warnings:
            if warning not in self._warnings:
                self._warnings.append(warning)
        if self.config.axes:
            m.resolved["sweep_axes"] = dict(self.config.axes)
            m.resolved["sweep"] = self.config.sweep
        return m

    def measure(
        self, workload: str | Workload, repetitions: int | None = None, warmup: int | None = None
    ) -> Measurement:
        try:
            wl = Workload.parse(workload)
        except UsageError as exc:
            raise UsageError(f"{self.nodeid}: {exc}") from None
        if any(w == wl for w, _r, _u in self._requests):
            raise UsageError(f"{self.nodeid}: workload {wl.name} measured twice in one test")
        if any(w.name == wl.name for w, _r, _u in self._requests):  # two streamed requests
            raise UsageError(
                f"{self.nodeid}: two different requests are both named {wl.name}; give "
                "measure_stream(...) a distinct name="
            )
        reps = repetitions or self.repetitions
        wu = self.warmup if warmup is None else warmup
        if self.spec.run.delay and self._requests:
            time.sleep(self.spec.run.delay)  # llama-bench's --delay: a pause between tests
        if self.spec.reference is not None and wl.kind != "load":
            m = self._run_paired(wl, wu)
        else:
            m = self._run(wl, reps, wu)
        self._requests.append((wl, reps, wu))
        self.measurements.append(m)
        return m

    def measure_stream(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Mapping[str, str]] | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        sampling: Mapping[str, Any] | None = None,
        name: str | None = None,
        chat_template: str | None = None,
        chat_format: str | None = None,
        repetitions: int | None = None,
        warmup: int | None = None,
    ) -> Measurement:
        """A request streamed as an application makes it, through llama-cpp-python's
        ``create_completion(prompt, stream=True)`` or ``create_chat_completion(messages,
        stream=True)`` with these sampling settings, exactly ``max_tokens`` tokens; gated
        like any workload, named ``stream:<name>`` (``name`` defaults to a hash of the
        request). The engine runs the same token counts beside it (``stream_overhead``).
        A model without a chat template needs ``chat_template=`` (Jinja) or
        ``chat_format=`` (a llama-cpp-python format) for ``messages``."""
        try:
            wl = stream_workload(
                prompt,
                messages=messages,
                max_tokens=max_tokens,
                sampling=sampling,
                name=name,
                chat_template=chat_template,
                chat_format=chat_format,
            )
        except UsageError as exc:
            raise UsageError(f"{self.nodeid}: {exc}") from None
        return self.measure(wl, repetitions, warmup)

    def _run_paired(self, workload: Workload, warmup: int) -> Measurement:
        """Both configurations side by side (see :mod:`pytest_llmperf.verdict.paired`); returns
        the candidate's rounds as one Measurement."""
        session, ref = self.session, self.spec.reference
        assert ref is not None
        ref_path, reason = session.resolve_path(ref)
        if ref_path is None:
            raise UsageError(f"{self.nodeid}: the reference cannot run: {reason}")
        timeout = self.spec.run.timeout
        design = dataclasses.replace(session.settings.paired, warmup=max(warmup, 1))
        result = paired_mod.run(
            lambda: session.start_runner(ref, ref_path, True, timeout),
            lambda: session.start_runner(self.config, self.path, True, timeout),
            workload,
            self.spec.rules,
            design,
        )
        self.paired[workload.name] = result
        result.reference.fingerprint = session.fingerprint(ref, ref_path)
        m = result.candidate
        m.fingerprint = session.fingerprint(self.config, self.path)
        m.resolved["paired"] = {
            "reference": ref.id,
            "blocks": len(result.runs.blocks),
            "rounds": len(result.runs.rounds),
            "contaminated_rounds": result.runs.contaminated(),
            "seconds": round(result.seconds, 2),
        }
        return m

    def measure_all(self) -> list[Measurement]:
        """Measure every workload the config carries (a sweep point's workloads)."""
        if not self.config.workloads:
            raise UsageError(
                f"{self.nodeid}: its config names no workloads; call "
                "llm_perf.measure('tg128') instead"
            )
        return [self.measure(w, repetitions=self.config.repetitions) for w in self.config.workloads]

    def measure_load(self, repetitions: int | None = None) -> Measurement:
        """Cold load time: the model is loaded ``repetitions`` times afresh."""
        return self.measure(Workload(), repetitions=repetitions, warmup=0)

    # -- gating -------------------------------------------------------------------------
    def finish(self) -> TestResult:
        """Gate this test. Returns its report; raises PerfOutcome when it must not pass."""
        report = TestResult(nodeid=self.nodeid, measurements=self.measurements)
        self.report = report
        try:
            return self._gate(report)
        except PerfOutcome:
            raise
        except Exception as exc:  # not gated (an unreadable baseline...): never "pass"
            report.verdict = "error"
            report.notes.append(f"not gated: {exc}")
            raise
        finally:
            self.session._gated(report, self.config)

    def _compare(self, entry: baseline_mod.Entry | None) -> dict[str, list[MetricComparison]]:
        policy = self.session.settings.policy
        return judge.compare(
            self.measurements,
            None if entry is None else entry.references(),
            self.spec.rules,
            alpha=policy.alpha,
            fail_on_improvement=policy.fail_on_improvement,
        )

    def _gate(self, report: TestResult) -> TestResult:
        session, st = self.session, self.session.settings
        if not self.measurements:
            return report
        report.notes.extend(f"warning: {w}" for w in self._warnings)
        report.notes.extend(_contention_notes(self.measurements))
        if self.paired:
            return self._gate_paired(report)
        store = session.store
        doc = self._fingerprint_doc()
        key = baseline_mod.baseline_key(doc, self.config.params, doc["workloads"])
        report.baseline_key = key
        entry = store.lookup(self.nodeid, key)
        others = {k: e for k, e in store.entries_for(self.nodeid).items() if k != key}
        if entry is not None:
            session.used_entries.add((self.nodeid, key))
        comparisons = self._compare(entry)
        notes: list[str] = []
        remeasure = self.spec.run.remeasure
        limit = st.remeasure if remeasure is None else remeasure
        attempts = 0
        while (
            entry is not None
            and judge.needs_remeasure(comparisons)
            and attempts < limit
            and st.policy.accept not in ("all", "reset")
        ):
            attempts += 1
            notes.append(f"suspected regression: re-measured (attempt {attempts + 1})")
            self.measurements[:] = [self._run(w, r, u) for w, r, u in self._requests]
            comparisons = self._compare(entry)
        mismatch: list[str] | None = None
        warnings: list[str] = []
        if entry is None and others:
            stored_fp = next(iter(others.values())).fingerprint
            mismatch, _w = baseline_mod.fingerprint_diff(stored_fp, doc)
        elif entry is not None:
            _s, warnings = baseline_mod.fingerprint_diff(entry.fingerprint, doc)
        verdict = judge.judge(
            self.nodeid,
            comparisons,
            st.policy,
            has_entry=entry is not None,
            mismatch=mismatch,
            warnings=warnings,
            store=str(store.entries_dir / baseline_mod.entry_relpath(self.nodeid)),
            notes=notes,
        )
        report.comparisons = comparisons
        report.verdict = verdict.verdict
        report.notes.extend(verdict.notes)
        if verdict.left_alone is not None:
            session.left_alone.append((self.nodeid, verdict.left_alone))
        if verdict.accept:
            store.queue(
                self.nodeid,
                key,
                baseline_mod.Pending(
                    self.config.model, doc, self._session(), reset=st.policy.accept == "reset"
                ),
            )
            session.used_entries.add((self.nodeid, key))
        if verdict.outcome != "pass":
            raise PerfOutcome(verdict.outcome, verdict.message)
        return report

    def _gate_paired(self, report: TestResult) -> TestResult:
        """A test judged against its reference: the paired comparisons decide; the stored
        baseline is neither used nor written."""
        st = self.session.settings
        ref = self.spec.reference
        assert ref is not None
        comparisons: dict[str, list[MetricComparison]] = {
            wl: result.comparisons for wl, result in self.paired.items()
        }
        loads = [m for m in self.measurements if m.workload.name not in self.paired]
        plain = judge.compare(loads, None, self.spec.rules) if loads else {}
        comparisons.update(plain)
        verdict = judge.judge(
            self.nodeid,
            comparisons,
            dataclasses.replace(st.policy, accept=None, missing="record"),
            has_entry=True,
            notes=[f"judged against the reference {ref.id} (paired rounds, same session)"],
        )
        report.comparisons = comparisons
        report.verdict = verdict.verdict
        report.notes.extend(verdict.notes)
        report.reference = ref.id
        if st.policy.accept is not None:
            why = "judged against a reference: the stored baseline is not used"
            self.session.left_alone.append((self.nodeid, why))
        if verdict.outcome != "pass":
            raise PerfOutcome(verdict.outcome, verdict.message)
        return report

    def _fingerprint_doc(self) -> dict[str, Any]:
        """The fingerprint an entry stores: machine, software, model file, the non-default
        load params and the workloads."""
        m = self.measurements[0]
        return dict(
            m.fingerprint,
            params=m.params.non_default(),
            workloads=sorted(x.workload.name for x in self.measurements),
        )

    def _session(self) -> baseline_mod.SessionRecord:
        return baseline_mod.SessionRecord(
            accepted_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            git_commit=git_commit(Path.cwd()),
            repetitions=max(m.repetitions for m in self.measurements),
            warmup=max(m.warmup for m in self.measurements),
            values={m.workload.name: dict(m.values) for m in self.measurements},
            absent={m.workload.name: dict(m.absent) for m in self.measurements if m.absent},
        )


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


def _contention_notes(measurements: list[Measurement]) -> list[str]:
    """A note per workload whose repetitions another process competed with."""
    notes = []
    for m in measurements:
        dirty = sum(s.contaminated for s in m.samples)
        if dirty:
            worst_share = max(
                (max(s.contention.values(), default=0.0) for s in m.samples), default=0.0
            )
            notes.append(
                f"contaminated: {dirty} of {len(m.samples)} repetitions of {m.workload.name} "
                f"ran while other processes competed for the CPU (up to {worst_share:.0%}); "
                "its numbers may be off: measure on a quiet machine"
            )
    return notes


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
