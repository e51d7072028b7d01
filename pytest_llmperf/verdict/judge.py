"""The pass/fail policy of one test, as pure functions: comparisons in, a Judgement out.

:func:`compare` runs the gate (:mod:`pytest_llmperf.verdict.gate`) over every workload of a test
and its limits and SLAs; :func:`judge` turns the comparisons, what the baseline store
knows of the test and the session's :class:`Policy` into a :class:`Judgement`: the
verdict, whether the measurements are accepted into the baseline, and whether the test
passes, fails or is skipped, with the message. The Recorder (session.py) measures and
asks; ``llmperf compare`` asks the same questions of two files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from pytest_llmperf.errors import UsageError
from pytest_llmperf.model import metrics as metrics_mod
from pytest_llmperf.model.results import (
    BaselineValues,
    Measurement,
    MetricComparison,
    Verdict,
    worst,
)
from pytest_llmperf.verdict import gate, table
from pytest_llmperf.verdict.thresholds import GateRules

AcceptMode = Literal["all", "new", "failed", "reset"]
ACCEPT_MODES: tuple[AcceptMode, ...] = get_args(AcceptMode)
MissingMode = Literal["fail", "skip", "record"]
MISSING_MODES: tuple[MissingMode, ...] = get_args(MissingMode)
Outcome = Literal["pass", "fail", "skip"]

#: the verdicts ``--perf-accept=failed`` re-records: those that make a test fail or not pass
FAILED_VERDICTS: frozenset[Verdict] = frozenset({"regressed", "mismatch", "new"})


@dataclass(frozen=True)
class Policy:
    """What the session says about accepting and failing (options and ini keys)."""

    accept: AcceptMode | None = None
    force_accept: bool = False
    missing: MissingMode = "record"
    fail_on_improvement: bool = False
    alpha: float = 0.05


@dataclass
class Judgement:
    verdict: Verdict
    outcome: Outcome = "pass"
    #: queue these measurements as the test's baseline entry
    accept: bool = False
    notes: list[str] = field(default_factory=list)
    #: under --perf-accept: why this test was not accepted (None when it was, or no accept)
    left_alone: str | None = None
    #: the failure or skip message (empty for a pass)
    message: str = ""


def compare(
    current: Sequence[Measurement],
    baseline: Mapping[str, Measurement | BaselineValues] | None,
    rules: GateRules,
    *,
    alpha: float = 0.05,
    fail_on_improvement: bool = False,
) -> dict[str, list[MetricComparison]]:
    """Comparisons per workload name (``baseline`` None: every metric is new; a workload
    missing from it is new too), plus the limits and ratio SLAs under :data:`gate.SLA_KEY`
    when there are any."""
    out: dict[str, list[MetricComparison]] = {}
    for m in current:
        out[m.workload.name] = gate.compare_measurement(
            m,
            None if baseline is None else baseline.get(m.workload.name),
            rules,
            alpha=alpha,
            fail_on_improvement=fail_on_improvement,
        )
    limits = gate.check_limits({m.workload.name: m for m in current}, rules, alpha)
    if limits:
        out[gate.SLA_KEY] = limits
    return out


def flat(comparisons: Mapping[str, Sequence[MetricComparison]]) -> list[MetricComparison]:
    return [c for cs in comparisons.values() for c in cs]


def needs_remeasure(comparisons: Mapping[str, Sequence[MetricComparison]]) -> bool:
    """A suspected regression against the baseline: measure again before failing."""
    return any(c.verdict == "regressed" for c in flat(comparisons))


#: a workload's verdict is not trusted when at least this share of its repetitions ran
#: while other processes competed for the CPU (their median may be theirs)
UNTRUSTED_SHARE = 0.5


def _not_judged(c: MetricComparison, why: str) -> None:
    """A regression the gate withholds: ``inconclusive``, the reason saying why first."""
    c.verdict = "inconclusive"
    c.reason = f"not judged: {why}; {c.reason}".rstrip("; ")


def contaminated_share(m: Measurement) -> float:
    """The share of a measurement's repetitions another process competed with."""
    return sum(s.contaminated for s in m.samples) / len(m.samples) if m.samples else 0.0


def contaminated_regressions(
    comparisons: Mapping[str, Sequence[MetricComparison]], measurements: Sequence[Measurement]
) -> dict[str, float]:
    """The workloads whose regression rests on contaminated repetitions: workload ->
    the share of its repetitions that were (at least :data:`UNTRUSTED_SHARE`)."""
    shares = {m.workload.name: contaminated_share(m) for m in measurements}
    return {
        wl: shares[wl]
        for wl, cs in comparisons.items()
        if shares.get(wl, 0.0) >= UNTRUSTED_SHARE and any(c.verdict == "regressed" for c in cs)
    }


def distrust(
    comparisons: Mapping[str, Sequence[MetricComparison]], contaminated: Mapping[str, float]
) -> list[str]:
    """Turn the regressions of ``contaminated`` workloads (see
    :func:`contaminated_regressions`) into ``inconclusive``: a slowdown measured while
    another process took the CPU says nothing about the code. Returns a note per
    workload."""
    notes = []
    for wl, share in contaminated.items():
        moved = [c for c in comparisons.get(wl, ()) if c.verdict == "regressed"]
        for c in moved:
            _not_judged(
                c, f"{share:.0%} of the repetitions ran while other processes competed for the CPU"
            )
        if moved:
            notes.append(
                f"{wl}: {', '.join(c.metric for c in moved)} measured slower only while other "
                f"processes competed for the CPU ({share:.0%} of the repetitions, after "
                "re-measuring): not judged; measure on a quiet machine"
            )
    return notes


#: the machine counts as slower than when a baseline was recorded when its speed probe
#: (:mod:`pytest_llmperf.machine.speed`) scores at least this share lower: well beyond the
#: probe's own spread (about +-15% on a 2-core VM), well within the spells it is for
#: (llama.cpp 1.7-4x slower, the probe about as much)
SLOWER_MACHINE = 0.25


def slower_machine(now: float | None, then: float | None) -> float | None:
    """How much slower the machine runs now than when the baseline was recorded, as a
    share (0.4: its probe scores 40% lower), when at least :data:`SLOWER_MACHINE`; None
    when it is not, or when either side has no probe (a baseline from an older version)."""
    if not now or not then or now <= 0 or then <= 0:
        return None
    slower = 1.0 - now / then
    return slower if slower >= SLOWER_MACHINE else None


def distrust_slower(
    comparisons: Mapping[str, Sequence[MetricComparison]], slower: float, probe: str
) -> list[str]:
    """Turn the timing regressions of a test measured while the whole machine ran
    ``slower`` (see :func:`slower_machine`) into ``inconclusive``: a slowdown the machine's
    own speed probe shows too says nothing about the code. Deterministic metrics (memory,
    sizes) do not depend on speed and keep their verdicts, and so do limits and SLAs,
    which say what the machine does now. ``probe``: the two scores, for
    the note. Returns a note when any verdict changed."""
    moved: dict[str, list[str]] = {}
    for wl, cs in comparisons.items():
        for c in cs if wl != gate.SLA_KEY else ():
            spec = metrics_mod.METRICS.get(c.metric)
            if c.verdict != "regressed" or (spec is not None and spec.deterministic):
                continue
            _not_judged(
                c, f"the machine ran {slower:.0%} slower than when the baseline was recorded"
            )
            moved.setdefault(wl, []).append(c.metric)
    if not moved:
        return []
    which = "; ".join(f"{wl}: {', '.join(names)}" for wl, names in moved.items())
    return [
        f"{which} measured slower while the whole machine ran {slower:.0%} slower "
        f"than when the baseline was recorded (speed probe {probe}, after re-measuring): not "
        "judged; run again when the machine is back to its usual speed, or re-record the "
        "baseline with --perf-accept if this speed is its usual one now"
    ]


def should_accept(mode: AcceptMode, verdict: Verdict, has_entry: bool) -> bool:
    """Whether ``--perf-accept=<mode>`` records a test with this verdict.

    - ``all``: every test that measured something (not ``error``), added to its history
    - ``reset``: the same, replacing the history with this session
    - ``new``: tests without an entry under their baseline key
    - ``failed``: tests whose verdict is in :data:`FAILED_VERDICTS`

    A ``mismatch`` needs ``--perf-force-accept`` on top (:func:`judge` checks it).
    """
    if mode not in ACCEPT_MODES:
        raise UsageError(f"accept mode {mode!r}: accepted: {', '.join(ACCEPT_MODES)}")
    if verdict == "error":
        return False
    if mode in ("all", "reset"):
        return True
    if mode == "new":
        return not has_entry
    return verdict in FAILED_VERDICTS


def compared_nothing(comparisons: Mapping[str, Sequence[MetricComparison]]) -> bool:
    """Whether no metric had a value on both sides (limits and SLAs aside)."""
    return not any(
        c.baseline_median is not None and c.current_median is not None
        for wl, cs in comparisons.items()
        if wl != gate.SLA_KEY
        for c in cs
    )


def _verdict(comparisons: Mapping[str, Sequence[MetricComparison]]) -> Verdict:
    """The worst verdict, except that an SLA left inconclusive (its ratio's interval
    straddles the bound) never hides a test's first recording: it turns a pass into
    inconclusive, and leaves ``new`` new (an SLA does not need a baseline)."""
    unsure = [c for c in comparisons.get(gate.SLA_KEY, ()) if c.verdict == "inconclusive"]
    rest = [c.verdict for c in flat(comparisons) if not any(c is u for u in unsure)]
    verdict = worst(rest)
    return "inconclusive" if unsure and verdict == "pass" else verdict


def judge(
    nodeid: str,
    comparisons: dict[str, list[MetricComparison]],
    policy: Policy,
    *,
    has_entry: bool,
    mismatch: Sequence[str] | None = None,
    warnings: Sequence[str] = (),
    store: str = "",
    notes: Sequence[str] = (),
) -> Judgement:
    """The verdict and what to do about it.

    ``has_entry``: the store holds an entry under this test's key. ``mismatch``: entries
    exist for this test under other keys (the strict fingerprint fields that differ, or
    an empty list when only params/workloads differ); None when there are none.
    ``warnings``: warn-only fingerprint differences. ``notes``: what the caller already
    has to say (re-measurements).
    """
    verdict: Verdict = _verdict(comparisons)
    out = Judgement(verdict=verdict, notes=list(notes))
    if not has_entry and mismatch is not None:
        out.verdict = verdict = "mismatch"
        out.notes.append(
            "baseline exists for another fingerprint: "
            + "; ".join(mismatch or ["load params or workloads differ"])
        )
    elif has_entry:
        out.notes.extend(f"warning: {w}" for w in warnings)
        if compared_nothing(comparisons) and verdict not in ("regressed", "improved"):
            out.verdict = verdict = "inconclusive"
            out.notes.append(
                f"the baseline entry of {nodeid} in {store or 'the baseline file'} holds no "
                "metric this test measured: nothing was compared; re-accept it with "
                "--perf-accept"
            )

    if policy.accept is not None:
        if verdict == "mismatch" and not policy.force_accept:
            why = "fingerprint mismatch (add --perf-force-accept)"
        elif should_accept(policy.accept, verdict, has_entry):
            why = ""
        else:
            why = f"--perf-accept={policy.accept} leaves a test whose verdict is {verdict}"
        if why:
            out.notes.append(f"not accepted: {why}")
            out.left_alone = why
        else:
            out.accept = True
    elif verdict == "new" and policy.missing == "record":
        out.accept = True
        out.notes.append("no baseline yet: recorded (accept explicitly with --perf-accept)")
    if out.accept:
        out.notes.append("accepted into the baseline")
        return out

    if verdict in ("new", "mismatch"):
        what = (
            "no baseline for this test on this machine"
            if verdict == "new"
            else "the stored baseline has another fingerprint"
        )
        if policy.missing != "record":
            out.outcome = "fail" if policy.missing == "fail" else "skip"
            out.message = (
                f"{nodeid}: {what} ({store}). Record one with --perf-accept"
                + (" --perf-force-accept" if verdict == "mismatch" else "")
                + "\n"
                + "\n".join(out.notes)
            )
        return out
    if verdict == "regressed" or (verdict == "improved" and policy.fail_on_improvement):
        out.outcome = "fail"
        out.message = table.failure_message(nodeid, comparisons, notes=out.notes)
    return out


__all__ = [
    "ACCEPT_MODES",
    "FAILED_VERDICTS",
    "MISSING_MODES",
    "SLOWER_MACHINE",
    "AcceptMode",
    "Judgement",
    "MissingMode",
    "Outcome",
    "Policy",
    "compare",
    "compared_nothing",
    "contaminated_regressions",
    "contaminated_share",
    "distrust",
    "distrust_slower",
    "judge",
    "needs_remeasure",
    "should_accept",
    "slower_machine",
]
