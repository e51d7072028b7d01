"""The session: settings, loaded-model cache, baseline store, and each test's recorder.

No pytest import: the plugin builds a :class:`Settings` from options and ini values and
drives this. A :class:`Recorder` measures workloads for one test and, at the end of the
test, gates them against the baseline and returns a TestReport plus an outcome.
"""

from __future__ import annotations

import datetime as _dt
import os
import subprocess
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmperf import baseline as baseline_mod
from pytest_llmperf import fingerprint as fp_mod
from pytest_llmperf import gate, thresholds
from pytest_llmperf.api import Config
from pytest_llmperf.backend.runner import DEFAULT_TIMEOUT_S, Runner, make_runner
from pytest_llmperf.config import ProjectConfig
from pytest_llmperf.errors import BackendCrash, UsageError
from pytest_llmperf.params import LoadParams, Workload
from pytest_llmperf.results import Measurement, MetricComparison, TestReport

ACCEPT_MODES = ("all", "new", "failed")
MISSING_MODES = ("fail", "skip", "record")


@dataclass(frozen=True)
class Settings:
    accept: str | None = None
    force_accept: bool = False
    missing: str = "record"
    baseline_dir: Path = Path("baselines")
    machine_id: str | None = None
    repetitions: int = 3
    warmup: int = 1
    isolate: bool = True
    timeout_s: float = DEFAULT_TIMEOUT_S
    remeasure: int = 1
    fail_on_improvement: bool = False
    alpha: float = 0.05
    cache_dir: str | None = None
    max_loaded: int = 2
    report_dir: Path | None = None
    benchmark_json: Path | None = None
    bmf_json: Path | None = None
    check_memory: bool = True
    #: raw sources from the pytest ini section (pytest's own config)
    ini_thresholds: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.accept is not None and self.accept not in ACCEPT_MODES:
            raise UsageError(f"--perf-accept={self.accept}: accepted: {', '.join(ACCEPT_MODES)}")
        if self.missing not in MISSING_MODES:
            raise UsageError(f"--perf-missing={self.missing}: accepted: {', '.join(MISSING_MODES)}")
        if self.repetitions < 1:
            raise UsageError(f"--perf-repetitions={self.repetitions}: must be >= 1")


def default_missing_mode() -> str:
    """record-and-pass locally; fail where the CI environment variable is set."""
    ci = os.environ.get("CI", "").strip().lower()
    return "fail" if ci not in ("", "0", "false", "no") else "record"


class PerfOutcome(Exception):
    """Raised by Recorder.finish for a test that must not pass."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "fail" or "skip"


class PerfSession:
    def __init__(self, settings: Settings, project: ProjectConfig) -> None:
        self.settings = settings
        self.project = project
        self._runners: OrderedDict[tuple[str, LoadParams], Runner] = OrderedDict()
        self.remaining: dict[tuple[str, LoadParams], int] = {}
        self.reports: list[TestReport] = []
        self.notices: list[str] = []
        self.used_entries: set[tuple[str, str]] = set()
        self.accepted: list[str] = []
        #: tests that ran under --perf-accept but were not accepted, with the reason
        self.left_alone: list[tuple[str, str]] = []
        #: called with (report, config) after each test is gated (sweeps stream results)
        self.listeners: list[Callable[[TestReport, Config], None]] = []
        self._store: baseline_mod.BaselineStore | None = None
        self.flush_report: Any = None
        # defaults < pyproject [tool.llmperf] < pytest ini < llmperf.yaml < marker
        sources: list[tuple[str, Mapping[str, Any]]] = list(project.threshold_sources)
        if settings.ini_thresholds:
            at = sum(1 for name, _ in sources if "[tool.llmperf]" in name)
            sources.insert(at, ("pytest ini llmperf_*", settings.ini_thresholds))
        self.thresholds = thresholds.merge_threshold_sources(sources)

    # -- baseline store -----------------------------------------------------------------
    @property
    def machine_id(self) -> str:
        return self.settings.machine_id or fp_mod.machine_id()

    @property
    def store(self) -> baseline_mod.BaselineStore:
        if self._store is None:
            store = baseline_mod.BaselineStore(self.settings.baseline_dir, self.machine_id)
            store.load()
            self._store = store
        return self._store

    # -- models -------------------------------------------------------------------------
    def resolve_path(self, cfg: Config) -> tuple[str | None, str]:
        return self.project.model(cfg.model).resolve(self.settings.cache_dir)

    def runner(
        self, cfg: Config, path: str, isolate: bool | None = None, timeout_s: float | None = None
    ) -> Runner:
        key = cfg.key()
        if key in self._runners:
            self._runners.move_to_end(key)
            return self._runners[key]
        while len(self._runners) >= max(self.settings.max_loaded, 1):
            _k, old = self._runners.popitem(last=False)
            old.close()
        iso = self.settings.isolate if isolate is None else isolate
        r = make_runner(
            path,
            cfg.params,
            cfg.model,
            isolate=iso,
            timeout_s=timeout_s or self.settings.timeout_s,
            check_memory=self.settings.check_memory,
        )
        self._runners[key] = r
        return r

    def drop_runner(self, cfg: Config) -> None:
        r = self._runners.pop(cfg.key(), None)
        if r is not None:
            try:
                r.close()
            except Exception:
                pass

    def release(self, key: tuple[str, LoadParams]) -> None:
        """One test of ``key`` finished; close its model when no later test needs it."""
        if key not in self.remaining:
            return
        self.remaining[key] -= 1
        if self.remaining[key] <= 0:
            r = self._runners.pop(key, None)
            if r is not None:
                r.close()

    def close(self) -> None:
        while self._runners:
            _k, r = self._runners.popitem()
            try:
                r.close()
            except Exception:
                pass

    # -- end of session -------------------------------------------------------------------
    def flush(self) -> Any:
        if self._store is not None and self.flush_report is None:
            self.flush_report = self._store.flush()
        return self.flush_report

    def unused_entries(self) -> list[tuple[str, str]]:
        if self._store is None:
            return []
        return list(self._store.unused_entries(self.used_entries))


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
        cfg: Config,
        runner_factory: Callable[[], Runner],
        extras: Mapping[str, Any],
        where: str,
    ) -> None:
        self.session = session
        self.nodeid = nodeid
        self.config = cfg
        self._runner_factory = runner_factory
        self.extras = dict(extras)
        self.where = where
        self.measurements: list[Measurement] = []
        self.report: TestReport | None = None
        self._requests: list[tuple[Workload, int, int]] = []
        self.thresholds = thresholds.merge_threshold_sources(
            [
                (
                    "marker on " + nodeid,
                    {k: v for k, v in extras.items() if k in ("thresholds", "limits", "sla")},
                )
            ],
            base=session.thresholds,
        )

    @property
    def repetitions(self) -> int:
        return int(self.extras.get("repetitions", self.session.settings.repetitions))

    @property
    def warmup(self) -> int:
        return int(self.extras.get("warmup", self.session.settings.warmup))

    def _run(self, workload: Workload, repetitions: int, warmup: int) -> Measurement:
        runner = self._runner_factory()
        try:
            m = runner.measure(workload, repetitions, warmup)  # "load" included
        except BackendCrash:
            self.session.drop_runner(self.config)
            raise
        if self.config.axes:
            m.resolved["sweep_axes"] = dict(self.config.axes)
            m.resolved["sweep"] = self.config.sweep
        return m

    def measure(
        self, workload: str | Workload, repetitions: int | None = None, warmup: int | None = None
    ) -> Measurement:
        wl = Workload.parse(workload)
        if any(w == wl for w, _r, _u in self._requests):
            raise UsageError(f"{self.nodeid}: workload {wl.name} measured twice in one test")
        reps = repetitions or self.repetitions
        wu = self.warmup if warmup is None else warmup
        m = self._run(wl, reps, wu)
        self._requests.append((wl, reps, wu))
        self.measurements.append(m)
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
    def _key(self) -> str:
        m = self.measurements[0]
        return baseline_mod.fingerprint_key(
            m.fingerprint, m.params, [x.workload for x in self.measurements]
        )

    def _compare(self, entry: Mapping[str, Any] | None) -> dict[str, list[MetricComparison]]:
        out: dict[str, list[MetricComparison]] = {}
        st = self.session.settings
        stored = (entry or {}).get("measurements", {})
        for m in self.measurements:
            base = stored.get(m.workload.name)
            base_m = Measurement.from_dict(base) if base else None
            out[m.workload.name] = gate.compare_measurement(
                m,
                base_m,
                self.thresholds,
                alpha=st.alpha,
                fail_on_improvement=st.fail_on_improvement,
            )
        limits = gate.check_limits({m.workload.name: m for m in self.measurements}, self.thresholds)
        if limits:
            out["sla"] = limits
        return out

    def finish(self) -> TestReport:
        """Gate this test. Returns its report; raises PerfOutcome when it must not pass."""
        report = TestReport(nodeid=self.nodeid, measurements=self.measurements)
        self.report = report
        self.session.reports.append(report)
        try:
            return self._gate(report)
        except PerfOutcome:
            raise
        except Exception as exc:  # not gated (an unreadable baseline...): never "pass"
            report.verdict = "error"
            report.notes.append(f"not gated: {exc}")
            raise
        finally:
            for listener in self.session.listeners:
                listener(report, self.config)

    def _gate(self, report: TestReport) -> TestReport:
        session, st = self.session, self.session.settings
        if not self.measurements:
            return report
        store = session.store
        key = self._key()
        report.baseline_key = key
        entry = store.lookup(self.nodeid, key)
        others = {k: e for k, e in store.entries_for(self.nodeid).items() if k != key}
        if entry is not None:
            session.used_entries.add((self.nodeid, key))
        comparisons = self._compare(entry)
        verdict = gate.decide([c for cs in comparisons.values() for c in cs])
        attempts = 0
        while (
            entry is not None
            and gate.needs_remeasure([c for cs in comparisons.values() for c in cs])
            and attempts < int(self.extras.get("remeasure", st.remeasure))
            and st.accept != "all"
        ):
            attempts += 1
            report.notes.append(f"suspected regression: re-measured (attempt {attempts + 1})")
            fresh = [self._run(w, r, u) for w, r, u in self._requests]
            self.measurements[:] = fresh
            report.measurements = self.measurements
            comparisons = self._compare(entry)
            verdict = gate.decide([c for cs in comparisons.values() for c in cs])
        if entry is None and others:
            verdict = "mismatch"
            stored_fp = next(iter(others.values())).get("fingerprint", {})
            strict, warns = baseline_mod.fingerprint_diff(stored_fp, self._fingerprint_doc())
            report.notes.append(
                "baseline exists for another fingerprint: "
                + "; ".join(strict or ["load params or workloads differ"])
            )
        elif entry is not None:
            _strict, warns = baseline_mod.fingerprint_diff(
                entry.get("fingerprint", {}), self._fingerprint_doc()
            )
            report.notes.extend(f"warning: {w}" for w in warns)
        report.comparisons = comparisons
        report.verdict = verdict

        accept_mode = st.accept
        accept = False
        if accept_mode is not None:
            if verdict == "mismatch" and not st.force_accept:
                why = "fingerprint mismatch (add --perf-force-accept)"
            else:
                accept = baseline_mod.should_accept(accept_mode, verdict, entry is not None)
                why = f"--perf-accept={accept_mode} leaves a test whose verdict is {verdict}"
            if not accept:
                report.notes.append(f"not accepted: {why}")
                session.left_alone.append((self.nodeid, why))
        elif verdict == "new" and st.missing == "record":
            accept = True
            report.notes.append("no baseline yet: recorded (accept explicitly with --perf-accept)")
        if accept:
            store.queue(self.nodeid, key, self._entry())
            session.used_entries.add((self.nodeid, key))
            session.accepted.append(self.nodeid)
            report.notes.append("accepted into the baseline")
            return report

        if verdict in ("new", "mismatch"):
            what = (
                "no baseline for this test on this machine"
                if verdict == "new"
                else "the stored baseline has another fingerprint"
            )
            msg = (
                f"{self.nodeid}: {what} ({store.path}). "
                "Record one with --perf-accept"
                + (" --perf-force-accept" if verdict == "mismatch" else "")
                + "\n"
                + "\n".join(report.notes)
            )
            if st.missing == "fail":
                raise PerfOutcome("fail", msg)
            if st.missing == "skip":
                raise PerfOutcome("skip", msg)
            return report
        if verdict == "regressed" or (verdict == "improved" and st.fail_on_improvement):
            raise PerfOutcome(
                "fail", gate.failure_message(self.nodeid, comparisons, notes=report.notes)
            )
        return report

    def _fingerprint_doc(self) -> dict[str, Any]:
        m = self.measurements[0]
        return dict(
            m.fingerprint,
            params=m.params.to_dict(),
            workloads=sorted(x.workload.name for x in self.measurements),
        )

    def _entry(self) -> dict[str, Any]:
        return {
            "accepted_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "git_commit": git_commit(Path.cwd()),
            "fingerprint": self._fingerprint_doc(),
            "model": self.config.model,
            "measurements": {m.workload.name: m.to_dict(samples=False) for m in self.measurements},
        }
