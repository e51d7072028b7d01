"""Paired rounds, run: both sides of a pair loaded several times, the workload's rounds
spread over the loads, calibrated, stopped as soon as the verdicts are decided.

The verdict's data and rule are :mod:`pytest_llmperf.verdict.paired`; this module runs
the rounds (:class:`PairRunner`) and shares the loads between the tests of one pair
(:class:`PairPool`).

**Loads.** A *load pair* is one worker of each side, started in alternating order. A
workload's rounds start on ``Design.loads`` load pairs and round-robin over them, so the
variance between loads (where the weights land in memory) is sampled within every
workload, not only across tests. When the loads disagree more than the rounds within
them explain (a one-way analysis of the log ratios: the loads' mean square beyond
:data:`LOADS_DIFFER` times the rounds') and the verdict is still open, another load pair
is started, up to ``Design.max_loads``; at most ``Design.concurrent_loads`` stay loaded
at once (the oldest is closed first), so a model too large for several copies still runs,
one load pair at a time. Every test of one pair (the same reference and candidate
configurations) uses the same loads: each side is loaded a handful of times for the whole
session, not for every test.

**Calibration.** The warm-up of each load times one repetition of each side; a round then
repeats the workload on each side ``ceil(Design.round_s / duration)`` times (at most
``Design.max_repetitions``), so a round of a 2 ms-per-token tiny model lasts as long as
one of a real model, and its value (the median of its repetitions) is as steady. A
``load`` workload's round is one cold load of each side.

**Stopping.** The verdicts are looked at after ``Design.min_rounds`` rounds and then at
growing counts (:meth:`Design.looks`); the rounds stop when every gated metric is decided,
when the undecided ones could not be decided by the remaining rounds
(:func:`pytest_llmperf.verdict.paired.settled`), when a gated metric regressed (the outcome
is known), at ``Design.max_rounds``, or when the
workload's time is up: ``Design.max_seconds``, or less when the session's budget
(``--perf-budget``) leaves less (:class:`Budget`), though never before
:data:`FEWEST_ROUNDS` rounds (an interval needs them).

**Contaminated rounds.** A round during which another process competed for the CPU (a
contaminated repetition on either side) is left out of the verdict, and does not count:
the looks and ``Design.max_rounds`` count clean rounds, and a contaminated round is
replaced by another, up to as many rounds again as the cap. Past its time a workload stops
once it has :data:`FEWEST_ROUNDS` clean rounds; one that a busy machine left without them
gets up to twice its time, then says how many rounds were contaminated.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytest_llmperf.backends.protocol import Runner
from pytest_llmperf.model.results import Measurement
from pytest_llmperf.model.workloads import Workload
from pytest_llmperf.session import alike
from pytest_llmperf.verdict import paired
from pytest_llmperf.verdict.thresholds import GateRules

#: a load pair is added when the loads' mean square of log ratios exceeds this many
#: times the rounds' within the loads (the verdict still open)
LOADS_DIFFER = 3.0

#: rounds a workload runs whatever its time (fewer give no interval at all)
FEWEST_ROUNDS = 3

Starter = Callable[[], Runner]
Side = str  # "a" (the reference) or "b" (the candidate)


@dataclass
class LoadPair:
    """One worker of each side."""

    index: int
    runners: dict[Side, Runner]
    #: it has run something since its load (its first run was a warm-up)
    warm: bool = False

    def close(self) -> None:
        for runner in self.runners.values():
            try:
                runner.close()
            except Exception:  # a dead worker: nothing left to close
                pass


@dataclass
class Budget:
    """The session's time for paired rounds (``--perf-budget``): each workload gets at
    most the time left divided by the paired tests left (itself included)."""

    seconds: float | None = None
    spent: float = 0.0
    tests_left: int = 0

    def cap(self, most: float) -> float:
        if self.seconds is None:
            return most
        left = max(self.seconds - self.spent, 0.0)
        return min(most, left / max(self.tests_left, 1))

    @property
    def exhausted(self) -> bool:
        return self.seconds is not None and self.spent >= self.seconds


def _median_values(m: Measurement) -> dict[str, float]:
    """A round's value of each metric on one side: the median of its repetitions."""
    return {k: float(np.median(v)) for k, v in m.values.items() if v}


def _timed_seconds(m: Measurement) -> float:
    """The timed part of one repetition (the longest), for calibration."""
    ends = [s.end_ns for s in m.samples if s.end_ns]
    return max(ends) / 1e9 if ends else 0.0


def _pooled(ms: Sequence[Measurement]) -> Measurement:
    """One Measurement of every round of a side: each repetition a sample."""
    first = ms[0]
    values: dict[str, list[float]] = {}
    for m in ms:
        for k, v in m.values.items():
            values.setdefault(k, []).extend(v)
    return Measurement(
        model=first.model,
        model_path=first.model_path,
        params=first.params,
        workload=first.workload,
        samples=[s for m in ms for s in m.samples],
        values=values,
        absent=dict(first.absent),
        resolved=dict(first.resolved),
        fingerprint=dict(first.fingerprint),
        started_at=first.started_at,
        repetitions=sum(m.repetitions for m in ms),
        warmup=first.warmup,
    )


def loads_differ(runs: paired.PairedRuns, metrics: Collection[str]) -> bool:
    """Whether, for any of ``metrics``, the loads' means of the log ratios spread more
    than the rounds within the loads explain (:data:`LOADS_DIFFER`)."""
    for metric in metrics:
        groups = [np.asarray(g, dtype=float) for g in runs.log_ratios(metric) if len(g) >= 2]
        if len(groups) < 2:
            continue
        n = sum(g.size for g in groups)
        grand = float(np.concatenate(groups).mean())
        between = sum(g.size * (float(g.mean()) - grand) ** 2 for g in groups) / (len(groups) - 1)
        within = sum(float(((g - g.mean()) ** 2).sum()) for g in groups) / max(n - len(groups), 1)
        if between > LOADS_DIFFER * max(within, 1e-12):
            return True
    return False


class PairRunner:
    """The loads of one pair and the rounds of its workloads (see the module docstring)."""

    def __init__(
        self,
        start_a: Starter,
        start_b: Starter,
        design: paired.Design,
        *,
        varied: Collection[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._start: dict[Side, Starter] = {"a": start_a, "b": start_b}
        self.design = design
        self.varied = frozenset(varied)
        self.clock = clock
        self.alive: list[LoadPair] = []
        self.started = 0
        #: facts of the sides that differ though the pair does not vary them
        self.unalike: list[str] = []
        #: per load pair, what each side's worker reported
        self.records: list[dict[str, Any]] = []

    # -- loads -------------------------------------------------------------------------
    def _add_load(self) -> LoadPair:
        first, second = ("a", "b") if self.started % 2 == 0 else ("b", "a")
        runners: dict[Side, Runner] = {}
        try:
            runners[first] = self._start[first]()
            runners[second] = self._start[second]()
        except BaseException:
            LoadPair(-1, runners).close()
            raise
        pair = LoadPair(self.started, runners)
        self.started += 1
        self.alive.append(pair)
        facts = {side: alike.facts(r) for side, r in runners.items()}
        pids = {side: r.pid for side, r in runners.items()}
        self.records.append({"load": pair.index, "started": first + second, "pids": pids, **facts})
        if pair.index == 0:
            self.unalike = alike.differences(facts["a"], facts["b"], self.varied)
        while len(self.alive) > self.design.concurrent_loads:
            self.alive.pop(0).close()
        return pair

    def close(self) -> None:
        while self.alive:
            self.alive.pop().close()

    # -- rounds ------------------------------------------------------------------------
    def _run(self, runner: Runner, workload: Workload, repetitions: int) -> Measurement:
        if workload.kind == "load":
            return runner.measure_load(1)
        return runner.measure(workload, repetitions, 0)

    def _warm(self, pair: LoadPair, workload: Workload, warmup: int) -> float:
        """Warm both sides of a load pair up for ``workload``; the shorter of the two
        sides' timed repetitions, in seconds (a neighbour's burst lengthens one, never
        shortens it)."""
        pair.warm = True
        if workload.kind == "load" or warmup < 1:
            return 0.0
        seconds = []
        for side in ("a", "b"):
            seconds.append(_timed_seconds(pair.runners[side].measure(workload, 1, warmup - 1)))
            pair.runners[side].settle()
        return min(seconds)

    def repetitions_for(self, seconds: float) -> int:
        """Repetitions of each side per round for a workload whose timed repetition lasts
        ``seconds``: enough to fill ``Design.round_s``."""
        if seconds <= 0:
            return 1
        want = math.ceil(self.design.round_s / seconds)
        return max(1, min(self.design.max_repetitions, want))

    def measure(
        self,
        workload: Workload,
        rules: GateRules,
        *,
        warmup: int = 1,
        budget: Budget | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> paired.PairedResult:
        """Run ``workload`` on both sides until its verdicts are decided (see the module
        docstring)."""
        design, clock = self.design, self.clock
        t0 = clock()
        cap = budget.cap(design.max_seconds) if budget is not None else design.max_seconds
        while len(self.alive) < design.loads:
            self._add_load()
        is_load = workload.kind == "load"
        runs = paired.PairedRuns(
            workload.name, rounds_are_loads=is_load, prompt=workload.kind != "tg"
        )
        blocks: dict[int, list[paired.Round]] = {}
        # every load's first run is a warm-up; the first load's, of this workload, also
        # times it for the calibration (later loads are warm, their caches shaped by
        # the pair's earlier workloads: a new workload's first round is one of many)
        seconds = self._warm(self.alive[0], workload, max(warmup, 1))
        for other in self.alive[1:]:
            if not other.warm:
                self._warm(other, workload, max(warmup, 1))
        reps = 1 if is_load else self.repetitions_for(seconds)
        measured: dict[Side, list[Measurement]] = {"a": [], "b": []}
        looks = design.looks()
        look = 0
        comps: list[Any] = []
        stopped = "cap"
        # rounds run, and those no other process competed with: the clean ones count
        # towards the looks and the cap; a contaminated one is replaced, up to as many
        # again as the cap (a machine busy throughout stops there, or at its time)
        done = clean = 0
        while clean < design.max_rounds and done < 2 * design.max_rounds:
            pair = self.alive[done % len(self.alive)]
            cycle = done // len(self.alive)
            order = "ab" if (cycle + pair.index) % 2 == 0 else "ba"
            got: dict[Side, Measurement] = {}
            for side in order:
                got[side] = self._run(pair.runners[side], workload, reps)
                pair.runners[side].settle()  # its threads stop spinning before the other's run
                measured[side].append(got[side])
            dirty = any(s.contaminated for m in got.values() for s in m.samples)
            rnd = paired.Round(
                order.upper(), _median_values(got["a"]), _median_values(got["b"]), dirty, reps
            )
            if pair.index not in blocks:
                blocks[pair.index] = []
                runs.blocks.append(blocks[pair.index])
            blocks[pair.index].append(rnd)
            done += 1
            clean = done - runs.contaminated()
            if look < len(looks) and clean >= looks[look]:
                look += 1
                comps = paired.compare(runs, rules, design, looks=len(looks), final=False)
                if progress is not None:
                    progress(f"{workload.name}: {clean} clean rounds, {len(runs.blocks)} loads")
                if paired.decided(comps):
                    stopped = "decided"
                    break
                if any(c.threshold and c.verdict == "regressed" for c in comps):
                    stopped = "regressed"  # the outcome is known: the test fails
                    break
                if paired.settled(comps, clean, design.max_rounds):
                    stopped = "hopeless"
                    break
                open_metrics = [
                    c.metric for c in comps if c.threshold and c.verdict == "inconclusive"
                ]
                if self.started < design.max_loads and loads_differ(runs, open_metrics):
                    self._warm(self._add_load(), workload, max(warmup, 1))
            # past its time a workload stops once it has FEWEST_ROUNDS clean rounds; one
            # that a busy machine left without them gets up to twice its time
            elapsed = clock() - t0
            if done >= FEWEST_ROUNDS and (
                elapsed > 2 * cap or (elapsed > cap and clean >= FEWEST_ROUNDS)
            ):
                stopped = (
                    "budget" if budget is not None and cap < design.max_seconds else "deadline"
                )
                break
        comps = paired.compare(runs, rules, design, looks=len(looks), final=True)
        elapsed = clock() - t0
        if budget is not None:
            budget.spent += elapsed
        return paired.PairedResult(
            runs,
            comps,
            _pooled(measured["a"]),
            _pooled(measured["b"]),
            elapsed,
            repetitions=reps,
            stopped=stopped,
            unalike=list(self.unalike),
            records=[dict(r) for r in self.records],
        )


@dataclass
class PairPool:
    """The session's pairs: one :class:`PairRunner` per (reference, candidate) key, kept
    for the tests of that pair and closed after the last of them."""

    runners: dict[Any, PairRunner] = field(default_factory=dict)
    remaining: dict[Any, int] = field(default_factory=dict)

    def expect(self, key: Any) -> None:
        self.remaining[key] = self.remaining.get(key, 0) + 1

    def get(self, key: Any, make: Callable[[], PairRunner]) -> PairRunner:
        if key not in self.runners:
            self.runners[key] = make()
        return self.runners[key]

    def release(self, key: Any) -> None:
        if key not in self.remaining:
            return
        self.remaining[key] -= 1
        if self.remaining[key] <= 0:
            runner = self.runners.pop(key, None)
            if runner is not None:
                runner.close()

    def drop(self, key: Any) -> None:
        runner = self.runners.pop(key, None)
        if runner is not None:
            runner.close()

    def close(self) -> None:
        while self.runners:
            _key, runner = self.runners.popitem()
            runner.close()

    @property
    def tests_left(self) -> int:
        return sum(max(n, 0) for n in self.remaining.values())


def varied_keys(reference: Mapping[str, Any]) -> set[str]:
    """What a reference mapping varies: its keys, ``args`` expanded by the caller."""
    return {str(k) for k in reference}
