"""The ``llm_perf`` fixture's object: it measures a test's workloads (alone, or side by
side with the test's reference) and, when the test ends, asks the judge and queues what is
accepted."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_llmperf import baseline as baseline_mod
from pytest_llmperf.backends.runner import Runner
from pytest_llmperf.errors import BackendCrash, UsageError
from pytest_llmperf.machine import speed
from pytest_llmperf.machine.devices import wait_quiet
from pytest_llmperf.model.results import Measurement, MetricComparison, TestResult
from pytest_llmperf.model.workloads import DEFAULT_MAX_TOKENS, Workload, stream_workload
from pytest_llmperf.session import alike, roofline
from pytest_llmperf.session.perf_session import PerfSession
from pytest_llmperf.session.plan import TestPlan
from pytest_llmperf.verdict import judge
from pytest_llmperf.verdict import paired as paired_mod

#: re-measurements of a regression measured while other processes competed for the CPU,
#: beyond ``--perf-remeasure``'s (each after waiting for the CPU to be quiet)
CONTAMINATED_RETRIES = 2
#: re-measurements of a regression measured while the whole machine ran slower than when
#: the baseline was recorded (judge.slower_machine), beyond ``--perf-remeasure``'s
SLOWER_RETRIES = 1


class PerfOutcome(Exception):
    """Raised by Recorder.finish for a test that must not pass."""

    def __init__(self, kind: judge.Outcome, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "fail" or "skip"


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
        plan: TestPlan,
        path: str,
        runner_factory: Callable[[], Runner],
    ) -> None:
        self.session = session
        self.nodeid = nodeid
        self.plan = plan
        self.config = plan.config
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
        return self.plan.run.repetitions or self.session.settings.repetitions

    @property
    def warmup(self) -> int:
        run = self.plan.run
        return run.warmup if run.warmup is not None else self.session.settings.warmup

    def _run(self, workload: Workload, repetitions: int, warmup: int) -> Measurement:
        runner = self._runner_factory()
        try:
            m = runner.measure(workload, repetitions, warmup)  # "load" included
        except BackendCrash:
            self.session.runners.drop(self.config.key())
            raise
        m.fingerprint = self.session.fingerprint(self.config, self.path, runner.software)
        roofline.attach(m)  # how close to the machine's limit, per repetition
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
        if self.plan.run.delay and self._requests:
            time.sleep(self.plan.run.delay)  # llama-bench's --delay: a pause between tests
        paired = self.plan.reference is not None
        m = self._run_paired(wl, wu) if paired else self._run(wl, reps, wu)
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
        """Both configurations side by side on the pair's shared loads (see
        :mod:`pytest_llmperf.session.pairs`); returns the candidate's rounds as one
        Measurement."""
        session, ref = self.session, self.plan.reference
        assert ref is not None
        try:
            pair = session.pair_runner(self.plan, self.path, self.plan.run.timeout)
            result = pair.measure(
                workload, self.plan.rules, warmup=max(warmup, 1), budget=session.budget
            )
        except BackendCrash:
            if self.plan.pair_key is not None:
                session.pairs.drop(self.plan.pair_key)
            raise
        except UsageError as exc:
            raise UsageError(f"{self.nodeid}: {exc}") from None
        self.paired[workload.name] = result
        ref_path, _reason = session.resolve_path(ref)
        result.reference.fingerprint = session.fingerprint(ref, ref_path or self.path)
        m = result.candidate
        m.fingerprint = session.fingerprint(self.config, self.path)
        roofline.attach(result.reference)
        roofline.attach(m)
        m.resolved["paired"] = {
            "reference": ref.id,
            "loads": len(result.runs.blocks),
            "rounds": len(result.runs.rounds),
            "repetitions_per_round": result.repetitions,
            "contaminated_rounds": result.runs.contaminated(),
            "stopped": result.stopped,
            "seconds": round(result.seconds, 2),
            "unalike": list(result.unalike),
            "loads_records": result.records,
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
            self.plan.rules,
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
        then = None if entry is None else speed.stored_score(entry.machine_speeds())
        #: the machine's speed after each measurement that regressed (probed only then)
        seen: list[speed.Speed] = []
        notes: list[str] = []
        remeasure = self.plan.run.remeasure
        limit = st.remeasure if remeasure is None else remeasure
        attempts = 0
        while (
            entry is not None
            and judge.needs_remeasure(comparisons)
            and st.policy.accept not in ("all", "reset")
        ):
            dirty = judge.contaminated_regressions(comparisons, self.measurements)
            if then is not None:
                seen.append(self._probe())
            slower = _slower(seen, then)
            # a regression measured while another process took the CPU, or while the whole
            # machine ran slower than when the baseline was recorded, gets more tries
            extra = CONTAMINATED_RETRIES if dirty else SLOWER_RETRIES if slower else 0
            if attempts >= limit + extra:
                break
            attempts += 1
            why = ""
            if dirty:
                why = " after waiting for the CPU to be quiet"
            elif slower:
                why = f": the machine ran {slower:.0%} slower than when the baseline was recorded"
            notes.append(f"suspected regression: re-measured (attempt {attempts + 1}){why}")
            if dirty:
                wait_quiet()
            self.measurements[:] = [self._run(w, r, u) for w, r, u in self._requests]
            comparisons = self._compare(entry)
        if entry is not None:
            dirty = judge.contaminated_regressions(comparisons, self.measurements)
            notes.extend(judge.distrust(comparisons, dirty))
            slower = _slower(seen, then)
            if slower is not None and then is not None:
                fastest = max(s.score for s in seen)
                scores = f"at most {fastest:.0f} now against {then:.0f}"
                notes.extend(judge.distrust_slower(comparisons, slower, scores))
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
            probed = self._probe()  # the machine's speed, stored with what it measured
            store.queue(
                self.nodeid,
                key,
                baseline_mod.Pending(
                    self.config.model,
                    doc,
                    self._session(probed),
                    reset=st.policy.accept == "reset",
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
        ref = self.plan.reference
        assert ref is not None
        comparisons: dict[str, list[MetricComparison]] = {
            wl: result.comparisons for wl, result in self.paired.items()
        }
        loads = [m for m in self.measurements if m.workload.name not in self.paired]
        plain = judge.compare(loads, None, self.plan.rules) if loads else {}
        comparisons.update(plain)
        notes = [f"judged against the reference {ref.id} (paired rounds, same session)"]
        for result in self.paired.values():
            for line in result.unalike + alike.record_differences(result.records):
                note = f"warning: the two sides differ in {line}"
                if note not in notes:
                    notes.append(note)
        verdict = judge.judge(
            self.nodeid,
            comparisons,
            dataclasses.replace(st.policy, accept=None, missing="record"),
            has_entry=True,
            notes=notes,
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

    def _probe(self) -> speed.Speed:
        """The machine's speed right after this test's measurements, recorded on each of
        them (results.json)."""
        now = speed.probe()
        for m in self.measurements:
            m.resolved["machine_speed"] = now.to_json()
        return now

    def _fingerprint_doc(self) -> dict[str, Any]:
        """The fingerprint an entry stores: machine, software, model file, the non-default
        load params and the workloads."""
        m = self.measurements[0]
        return dict(
            m.fingerprint,
            params=m.params.non_default(),
            workloads=sorted(x.workload.name for x in self.measurements),
        )

    def _session(self, probed: speed.Speed) -> baseline_mod.SessionRecord:
        return baseline_mod.SessionRecord(
            accepted_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            git_commit=git_commit(Path.cwd()),
            repetitions=max(m.repetitions for m in self.measurements),
            warmup=max(m.warmup for m in self.measurements),
            values={m.workload.name: dict(m.values) for m in self.measurements},
            absent={m.workload.name: dict(m.absent) for m in self.measurements if m.absent},
            machine_speed=probed.to_json(),
        )


def _slower(seen: Sequence[speed.Speed], then: float | None) -> float | None:
    """How much slower than ``then`` the machine ran at the fastest of the probes ``seen``
    (judge.slower_machine): slower only when it was slower throughout."""
    return judge.slower_machine(max(s.score for s in seen), then) if seen else None


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
