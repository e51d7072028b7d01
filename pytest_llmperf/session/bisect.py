"""``llmperf bisect``, run: each step builds (when needed) the configuration at one
position and measures it against the good end, side by side, until the search of
:mod:`pytest_llmperf.verdict.bisect` is over; after each step the state is written
(:mod:`pytest_llmperf.verdict.bisect_state`), so an interrupted bisect resumes where it
stopped.

**A step** is one :class:`~pytest_llmperf.session.pairs.PairRunner`: side A the good end
(position 0), side B the position measured, each loaded afresh, every workload's rounds
until decided (:class:`~pytest_llmperf.verdict.paired.Design`). A workload left
inconclusive gets another attempt on the same loads with twice the rounds and seconds,
up to ``--max-rounds`` / ``--max-seconds``; what stays undecided is recorded so, never
guessed.

**The good end's loads are not kept across steps.** A step's loads sample where the
weights land in memory on both sides; a good-end worker kept for the whole bisect would
put the same draw of that variance into every step's ratio, and every verdict would
lean the same way. Loading a model takes seconds, a step's rounds tens of seconds and a
build minutes: fresh loads cost little.

**Builds** (releases and commits): :mod:`pytest_llmperf.machine.bisect_builds`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmperf import paths
from pytest_llmperf.api import Config
from pytest_llmperf.errors import LLMPerfError
from pytest_llmperf.fileio import write_atomic
from pytest_llmperf.machine import bisect_builds
from pytest_llmperf.model import ownership
from pytest_llmperf.model.workloads import Workload
from pytest_llmperf.session.pairs import PairRunner
from pytest_llmperf.session.perf_session import PerfSession
from pytest_llmperf.signals import held
from pytest_llmperf.verdict import bisect, paired
from pytest_llmperf.verdict.bisect import Step
from pytest_llmperf.verdict.bisect_state import State
from pytest_llmperf.verdict.thresholds import GateRules


@dataclass
class Plan:
    """What is bisected: the configurations in order (ids), the configuration they vary,
    the workloads, the deciding metric and the threshold."""

    kind: str
    ids: list[str]
    base: Config
    workloads: list[Workload]
    metric: str
    threshold: float | None = None
    #: commits: the checkout's top folder
    source: Path | None = None
    labels: dict[str, str] = field(default_factory=dict)

    def question(self) -> dict[str, Any]:
        varied = {"models": "model", "builds": "build", "versions": "build", "commits": "build"}
        base = {
            "model": self.base.model,
            "args": self.base.params.to_args(),
            "build": self.base.build,
            "launcher": self.base.launcher,
        }
        base.pop(varied[self.kind])
        return {
            "kind": self.kind,
            "configs": list(self.ids),
            "base": base,
            "workloads": [w.name for w in self.workloads],
            "metric": self.metric,
            "threshold": self.threshold,
            "source": str(self.source) if self.source else None,
        }


def default_state_path(key: str) -> Path:
    return paths.bisect_dir() / f"state-{key}.json"


@dataclass
class Tries:
    """How hard a step tries: the first attempt's design, and the caps of the later ones."""

    design: paired.Design
    max_rounds: int
    max_seconds: float

    def design_for(self, attempt: int) -> paired.Design:
        rounds = int(bisect.scaled(self.design.max_rounds, self.max_rounds, attempt))
        return paired.Design(
            min_rounds=min(self.design.min_rounds, rounds),
            max_rounds=rounds,
            loads=self.design.loads,
            max_loads=self.design.max_loads,
            concurrent_loads=self.design.concurrent_loads,
            round_s=self.design.round_s,
            max_repetitions=self.design.max_repetitions,
            warmup=self.design.warmup,
            alpha=self.design.alpha,
            max_seconds=bisect.scaled(self.design.max_seconds, self.max_seconds, attempt),
        )

    @property
    def attempts(self) -> int:
        n = 1
        while self.design_for(n - 1) != self.design_for(n) and n < 16:
            n += 1
        return n


class BisectRunner:
    """Runs the steps of one bisect (see the module docstring)."""

    def __init__(
        self,
        session: PerfSession,
        plan: Plan,
        state: State,
        state_path: Path,
        tries: Tries,
        rules: GateRules,
        *,
        check_good: bool = False,
        progress: Callable[[str], None] = lambda line: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self.plan = plan
        self.state = state
        self.state_path = state_path
        self.tries = tries
        self.rules = rules
        self.check_good = check_good
        self.progress = progress
        self.clock = clock
        self._configs: dict[int, tuple[Config, str]] = {}
        self._step_seconds: list[float] = []

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> bisect.Answer:
        n = len(self.plan.ids)
        self.state.labels.update(self.plan.labels)
        if self.check_good and self.state.step_at(0) is None:
            self._record(self._step(0))
        while (position := bisect.next_position(n, self.state.steps)) is not None:
            self._record(self._step(position))
        return bisect.answer(n, self.state.steps)

    def _record(self, step: Step) -> None:
        self.state.record(step)
        self.save()
        n = len(self.plan.ids)
        now = bisect.answer(n, self.state.steps)
        self._step_seconds.append(step.seconds + step.build_seconds)
        left = bisect.steps_left(n, self.state.steps)
        mean = sum(self._step_seconds) / len(self._step_seconds)
        where = ""
        if now.first_bad is not None and now.status == bisect.RUNNING:
            where = f"; the first slow one is at {now.last_good + 1}..{now.first_bad}"
        eta = f"; ~{left} step(s) left, ETA {_minutes(left * mean)}" if left else ""
        self.progress(f"{self._name(step.position)}: {_verdict_text(step)}{where}{eta}")

    def save(self) -> None:
        """Write the state whole (stop signals wait until it is written)."""
        ownership.check(self.state_path, "bisect-state", "--state")
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        with held():
            write_atomic(self.state_path, self.state.to_json())

    def _name(self, position: int) -> str:
        cid = self.plan.ids[position]
        label = self.plan.labels.get(cid, "")
        shown = cid[:12] if self.plan.kind == "commits" else cid
        return f"[{position}] {shown}" + (f" ({label})" if label else "")

    # -- one step ------------------------------------------------------------------------
    def _step(self, position: int) -> Step:
        cid = self.plan.ids[position]
        ends = position in (0, len(self.plan.ids) - 1)
        try:
            good_cfg, good_path = self._config(0)
            cfg, path = self._config(position)
        except LLMPerfError as exc:
            if ends:
                raise
            return self._failed(position, f"could not be built or found: {exc}")
        made = self.state.builds.get(cid, {})
        self.progress(f"{self._name(position)}: measuring against [0] ...")
        varied = ["model"] if self.plan.kind == "models" else ["build"]
        pair = PairRunner(
            lambda: self.session.start_runner(good_cfg, good_path, True),
            lambda: self.session.start_runner(cfg, path, True),
            self.tries.design_for(0),
            varied=varied if position else (),
        )
        t0 = self.clock()
        results: dict[str, paired.PairedResult] = {}
        attempts = 0
        try:
            todo = list(self.plan.workloads)
            for attempt in range(self.tries.attempts):
                pair.design = self.tries.design_for(attempt)
                attempts = attempt + 1
                for wl in todo:
                    results[wl.name] = pair.measure(wl, self.rules)
                verdicts = self._verdicts(results)
                if bisect.step_verdict(list(verdicts.values())) != "inconclusive":
                    break
                todo = [w for w in self.plan.workloads if verdicts.get(w.name) == "inconclusive"]
                if not todo or attempt + 1 >= self.tries.attempts:
                    break
                self.progress(
                    f"{self._name(position)}: undecided after {pair.design.max_rounds} rounds; "
                    f"again with up to {self.tries.design_for(attempt + 1).max_rounds}"
                )
        except LLMPerfError as exc:
            if ends:
                raise
            return self._failed(position, f"could not be measured: {exc}")
        finally:
            pair.close()
        return self._step_of(position, results, attempts, self.clock() - t0, made)

    def _verdicts(self, results: dict[str, paired.PairedResult]) -> dict[str, str]:
        """Each workload's verdict of the deciding metric (workloads without it left out)."""
        out: dict[str, str] = {}
        for name, result in results.items():
            c = paired.as_mapping(result.comparisons).get(self.plan.metric)
            if c is not None:
                out[name] = c.verdict
        return out

    def _step_of(
        self,
        position: int,
        results: dict[str, paired.PairedResult],
        attempts: int,
        seconds: float,
        made: dict[str, Any],
    ) -> Step:
        metric = self.plan.metric
        per_workload: dict[str, Any] = {}
        best = None
        for name, result in results.items():
            c = paired.as_mapping(result.comparisons).get(metric)
            if c is None:
                continue
            per_workload[name] = {
                "verdict": c.verdict,
                "ratio": c.ratio,
                "ratio_low": c.ratio_low,
                "ratio_high": c.ratio_high,
                "rounds": len(result.runs.rounds),
                "stopped": result.stopped,
                "reason": c.reason,
            }
            # the row shows the workload that decides: a regressed one, else the first
            if best is None or (c.verdict == "regressed" and best.verdict != "regressed"):
                best = c
        verdicts = [w["verdict"] for w in per_workload.values()]
        step = Step(
            position,
            self.plan.ids[position],
            bisect.step_verdict(verdicts),
            metric=metric,
            seconds=round(seconds, 1),
            build_seconds=float(made.get("seconds", 0.0)),
            build=str(made.get("build", "")),
            rounds=sum(len(r.runs.rounds) for r in results.values()),
            loads=max((len(r.runs.blocks) for r in results.values()), default=0),
            attempts=attempts,
            workloads=per_workload,
            ccache=dict(made.get("ccache", {})),
        )
        if best is not None:
            step.ratio, step.ratio_low, step.ratio_high = (
                best.ratio,
                best.ratio_low,
                best.ratio_high,
            )
            step.reason = best.reason
        else:
            step.reason = f"{metric} was not measured by any workload"
        return step

    def _failed(self, position: int, why: str) -> Step:
        cid = self.plan.ids[position]
        made = self.state.builds.get(cid, {})
        return Step(
            position,
            cid,
            "failed",
            metric=self.plan.metric,
            build_seconds=float(made.get("seconds", 0.0)),
            build=str(made.get("build", "")),
            reason=why,
        )

    # -- configurations --------------------------------------------------------------------
    def _config(self, position: int) -> tuple[Config, str]:
        """The configuration at ``position`` (built first when it is a release or a
        commit) and its model file."""
        if position in self._configs:
            return self._configs[position]
        cid = self.plan.ids[position]
        base = self.plan.base
        if self.plan.kind == "models":
            cfg = base.replace(model=cid)
        elif self.plan.kind == "builds":
            cfg = base.replace(build=cid)
        else:
            cfg = base.replace(build=self._build(position))
        model_path, reason = self.session.resolve_path(cfg)
        if model_path is None:
            raise LLMPerfError(f"{cfg.model}: {reason}")
        self.session.runtime(cfg)  # a build that cannot run fails here, not in a worker
        self._configs[position] = (cfg, model_path)
        return cfg, model_path

    def _build(self, position: int) -> str:
        """Build the release or commit at ``position`` (or find it in the build cache);
        its build's name. The first build of a configuration is what the state keeps."""
        cid = self.plan.ids[position]
        name = bisect_builds.build_name(self.plan.kind, cid)
        self.progress(f"{self._name(position)}: building {name} ...")
        made = bisect_builds.build(self.plan.kind, cid, self.plan.source, self.clock)
        if cid not in self.state.builds or not made.reused:
            self.state.builds[cid] = made.record()
        cc = made.ccache
        rate = f", ccache hits {cc['hit_rate']:.0%} of {cc['hits'] + cc['misses']}" if cc else ""
        how = "found in the cache" if made.reused else "built"
        self.progress(
            f"{self._name(position)}: {how} {made.name} in {_minutes(made.seconds)}{rate}"
        )
        return made.name


def _minutes(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


def _verdict_text(step: Step) -> str:
    if step.ratio is None:
        return f"{step.verdict} ({step.reason})"
    return (
        f"{step.verdict}, {step.metric} x{step.ratio:.3f} "
        f"[{step.ratio_low or 0:.3f}, {step.ratio_high or 0:.3f}] in {_minutes(step.seconds)}"
    )
