"""Bisecting for the first slow configuration: the search over positions given the paired
verdicts of the steps measured so far, and the answer. Pure.

An ordered list of ``n`` configurations (models, builds, releases, commits) is searched
for the first one that is slower than position 0, the known good one, by more than the
threshold. Each **step** measures one position against position 0 side by side
(:mod:`pytest_llmperf.verdict.paired`) and gets a verdict: ``regressed`` (slower),
``pass`` or ``improved`` (not slower), or ``inconclusive`` / ``failed`` (undecided: the
rounds could not tell, or the position could not be built or run).

**What bisect assumes**: one step. Every position before the first bad one is as fast as
position 0 and every one from it on is slower; so a position found slower moves the upper
end down, one found not slower moves the lower end up. Where the slowdown came in pieces
(two commits each a few percent slower), the first bad one is the first position whose
*accumulated* slowdown crosses the threshold; the ratios of the measured steps show the
pieces (see README, "Which change made it slower?").

**The search** (:func:`next_position`): first the bad end (position ``n - 1``); if it is
not slower, the search stops (:data:`NOT_SLOWER`); if it is undecided, nothing can be
said (:data:`UNDECIDED`, the whole range). Then, while positions lie strictly between the
last known good and the first known bad one, the unmeasured one nearest the middle is
measured. An undecided position is never guessed: the search goes round it (as ``git
bisect skip`` does), and when no unmeasured position is left between the two ends the
answer is the range (``last_good``, ``first_bad``] with the undecided positions in it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

#: the verdict of a step: those of a paired comparison, and ``failed`` (not built or run)
StepVerdict = Literal["regressed", "pass", "improved", "inconclusive", "failed"]
STEP_VERDICTS: tuple[str, ...] = ("regressed", "pass", "improved", "inconclusive", "failed")

#: the outcomes of a bisect
Status = Literal["found", "not-slower", "undecided", "running"]
FOUND: Status = "found"
NOT_SLOWER: Status = "not-slower"
UNDECIDED: Status = "undecided"
RUNNING: Status = "running"


@dataclass
class Step:
    """One position measured against position 0."""

    position: int
    #: the configuration's id: a registry id, a build name, a version, a commit hash
    config: str
    verdict: str
    #: the deciding metric, and its ratio (this position / position 0) with its interval
    metric: str = ""
    ratio: float | None = None
    ratio_low: float | None = None
    ratio_high: float | None = None
    #: seconds of paired rounds (every attempt), and of building the configuration
    seconds: float = 0.0
    build_seconds: float = 0.0
    #: "built", "reused" (from the build cache) or "" (nothing to build)
    build: str = ""
    rounds: int = 0
    loads: int = 0
    #: paired runs made (more rounds each time an attempt stayed inconclusive)
    attempts: int = 0
    #: per workload: its verdict and ratio of the metric
    workloads: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    #: what ccache did during the build (hits, misses, hit_rate), when it was used
    ccache: dict[str, Any] = field(default_factory=dict)

    @property
    def slower(self) -> bool | None:
        """True (regressed), False (pass, improved), None (undecided)."""
        if self.verdict == "regressed":
            return True
        if self.verdict in ("pass", "improved"):
            return False
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Step:
        """A step of a state document; ValueError naming ``where`` when it is not one."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: a step must be a mapping")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(map(str, data)) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}")
        position, config, verdict = data.get("position"), data.get("config"), data.get("verdict")
        if not isinstance(position, int) or isinstance(position, bool) or position < 0:
            raise ValueError(f"{where}: position must be an integer >= 0")
        if not isinstance(config, str) or not config:
            raise ValueError(f"{where}: config must be a non-empty string")
        if verdict not in STEP_VERDICTS:
            raise ValueError(f"{where}: verdict {verdict!r}; one of {', '.join(STEP_VERDICTS)}")
        for name in ("ratio", "ratio_low", "ratio_high"):
            value = data.get(name)
            if value is not None and not (
                isinstance(value, int | float) and math.isfinite(value) and value > 0
            ):
                raise ValueError(f"{where}: {name} must be a number > 0 or null")
        for name in ("seconds", "build_seconds"):
            value = data.get(name, 0.0)
            if not isinstance(value, int | float) or not value >= 0:
                raise ValueError(f"{where}: {name} must be a number >= 0")
        for name in ("rounds", "loads", "attempts"):
            value = data.get(name, 0)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{where}: {name} must be an integer >= 0")
        for name in ("workloads", "ccache"):
            if not isinstance(data.get(name, {}), Mapping):
                raise ValueError(f"{where}: {name} must be a mapping")
        for name in ("metric", "build", "reason"):
            if not isinstance(data.get(name, ""), str):
                raise ValueError(f"{where}: {name} must be a string")
        return cls(**{k: data[k] for k in known if k in data})


@dataclass(frozen=True)
class Answer:
    """Where the search stands: its status, and the range the first bad position lies in
    (``last_good`` < first bad <= ``first_bad``; equal to ``last_good + 1`` when found)."""

    status: Status
    last_good: int = 0
    first_bad: int | None = None
    #: positions in the range measured without a verdict
    undecided: tuple[int, ...] = ()

    @property
    def found(self) -> bool:
        return self.status == FOUND

    @property
    def candidates(self) -> tuple[int, ...]:
        """The positions the first bad one may be (one when found)."""
        if self.first_bad is None:
            return ()
        return tuple(range(self.last_good + 1, self.first_bad + 1))


def _measured(steps: Sequence[Step]) -> dict[int, Step]:
    """The search's steps by position (the A/A check of position 0 is not one)."""
    return {s.position: s for s in steps if s.position > 0}


def self_differs(steps: Sequence[Step]) -> bool:
    """The A/A check (position 0 against itself, when made) found a difference: the
    machine or the design cannot be trusted to compare, and the search stops."""
    return any(s.position == 0 and s.verdict in ("regressed", "improved") for s in steps)


def ends(n: int, steps: Sequence[Step]) -> tuple[int, int | None]:
    """The last position known good and the first known bad (None: none known yet). A
    good position beyond a bad one (which the one-step search never measures, but a state
    file could hold) does not move the lower end past the bad one."""
    by_pos = _measured(steps)
    bad = [p for p, s in by_pos.items() if s.slower is True]
    first_bad = min(bad) if bad else None
    limit = first_bad if first_bad is not None else n
    good = [p for p, s in by_pos.items() if s.slower is False and p < limit]
    return max(good, default=0), first_bad


def next_position(n: int, steps: Sequence[Step]) -> int | None:
    """The position to measure next, or None when the search is over."""
    if n < 2 or self_differs(steps):
        return None
    by_pos = _measured(steps)
    if n - 1 not in by_pos:
        return n - 1
    if by_pos[n - 1].slower is not True:
        return None
    lo, hi = ends(n, steps)
    assert hi is not None
    left = [p for p in range(lo + 1, hi) if p not in by_pos]
    if not left:
        return None
    middle = (lo + hi) / 2
    return min(left, key=lambda p: (abs(p - middle), p))


def answer(n: int, steps: Sequence[Step]) -> Answer:
    """The outcome of the steps measured so far."""
    by_pos = _measured(steps)
    if n >= 2 and self_differs(steps):
        return Answer(UNDECIDED, 0, n - 1)
    if n < 2 or n - 1 not in by_pos:
        return Answer(RUNNING)
    bad_end = by_pos[n - 1].slower
    if bad_end is False:
        return Answer(NOT_SLOWER)
    if bad_end is None:
        return Answer(UNDECIDED, 0, n - 1, (n - 1,))
    if next_position(n, steps) is not None:
        lo, hi = ends(n, steps)
        return Answer(RUNNING, lo, hi)
    lo, hi = ends(n, steps)
    assert hi is not None
    if hi == lo + 1:
        return Answer(FOUND, lo, hi)
    stuck = tuple(p for p in range(lo + 1, hi) if p in by_pos)
    return Answer(UNDECIDED, lo, hi, stuck)


def steps_left(n: int, steps: Sequence[Step]) -> int:
    """About how many more steps the search takes: the bad end if not yet measured, then
    log2 of the unmeasured positions between the ends (an estimate, for the ETA)."""
    by_pos = _measured(steps)
    if n < 2:
        return 0
    if n - 1 not in by_pos:
        return 1 + math.ceil(math.log2(max(n - 1, 1)))
    if next_position(n, steps) is None:
        return 0
    lo, hi = ends(n, steps)
    assert hi is not None
    left = sum(1 for p in range(lo + 1, hi) if p not in by_pos)
    return max(1, math.ceil(math.log2(left + 1)))


def exit_status(result: Answer) -> int:
    """0 found; 1 the bad end is not slower; 3 undecided (a range, or nothing decided)."""
    return {FOUND: 0, NOT_SLOWER: 1}.get(result.status, 3)


def step_verdict(verdicts: Sequence[str]) -> str:
    """A step's verdict from its workloads' verdicts of the deciding metric: regressed
    when any workload regressed, pass (or improved) when every one is not slower, else
    inconclusive."""
    if not verdicts:
        return "inconclusive"
    if "regressed" in verdicts:
        return "regressed"
    if all(v == "improved" for v in verdicts):
        return "improved"
    if all(v in ("pass", "improved") for v in verdicts):
        return "pass"
    return "inconclusive"


def scaled(base: float, cap: float, attempt: int) -> float:
    """Rounds (or seconds) of attempt ``attempt`` (0, 1, ...): ``base`` doubled each
    time, at most ``cap`` (and at least ``base``)."""
    return float(max(base, min(cap, base * 2**attempt)))


__all__ = [
    "FOUND",
    "NOT_SLOWER",
    "RUNNING",
    "STEP_VERDICTS",
    "UNDECIDED",
    "Answer",
    "Step",
    "answer",
    "ends",
    "exit_status",
    "next_position",
    "scaled",
    "self_differs",
    "step_verdict",
    "steps_left",
]
