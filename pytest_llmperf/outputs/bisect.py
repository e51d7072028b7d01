"""``llmperf bisect``'s outputs: the table of the measured steps and the answer
(Markdown), the same as one JSON document, and the plot of the ratio by position."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_llmperf.fileio import atomic_path
from pytest_llmperf.model import ownership
from pytest_llmperf.model.metrics import METRICS
from pytest_llmperf.outputs.plots import DPI, verdict_color
from pytest_llmperf.verdict import bisect, paired
from pytest_llmperf.verdict.bisect import Answer, Step
from pytest_llmperf.verdict.bisect_state import State


def _short(state: State, cid: str) -> str:
    return cid[:12] if state.question.get("kind") == "commits" else cid


def _name(state: State, position: int) -> str:
    cid = state.configs[position]
    label = state.labels.get(cid, "")
    return f"[{position}] {_short(state, cid)}" + (f" ({label})" if label else "")


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value < 90 else f"{value / 60:.1f} min"


def _build_cell(state: State, cid: str) -> str:
    made = state.builds.get(cid)
    if not made:
        return "-"
    text = f"{made.get('build', '')} {_seconds(float(made.get('seconds', 0.0)))}".strip()
    cc = made.get("ccache") or {}
    if cc:
        text += f", ccache {float(cc.get('hit_rate', 0.0)):.0%}"
    return text


def answer_lines(state: State, result: Answer) -> list[str]:
    """What the bisect found, in words."""
    n = len(state.configs)
    threshold = state.question.get("threshold") or paired.DEFAULT_THRESHOLD_PCT
    metric = state.question.get("metric", "")
    if result.status == bisect.FOUND:
        assert result.first_bad is not None
        return [
            f"first_bad: {_name(state, result.first_bad)}",
            f"last_good: {_name(state, result.last_good)}",
            f"(the first configuration whose {metric} is more than {threshold:g}% below "
            f"{_name(state, 0)}'s, side by side)",
        ]
    if result.status == bisect.NOT_SLOWER:
        bad = state.step_at(n - 1)
        how = "faster" if bad is not None and bad.verdict == "improved" else "not slower"
        return [
            f"the bad end {_name(state, n - 1)} is {how} than the good end {_name(state, 0)} "
            f"(by more than {threshold:g}% of {metric}): nothing to bisect",
        ]
    if result.status == bisect.UNDECIDED:
        if bisect.self_differs(state.steps):
            return [
                f"the good end {_name(state, 0)} measured against itself was not found equal: "
                "this machine cannot compare reliably now; nothing was bisected"
            ]
        assert result.first_bad is not None
        if result.first_bad == n - 1 and result.last_good == 0 and not _decided(state, n - 1):
            return [
                f"undecided: the bad end {_name(state, n - 1)} could not be told slower or not "
                "(more rounds: --max-rounds, --max-seconds; or a larger --threshold)"
            ]
        stuck = ", ".join(str(p) for p in result.undecided) or "none"
        return [
            f"undecided: the first slow configuration is one of positions "
            f"{result.last_good + 1}..{result.first_bad}: from {_name(state, result.last_good + 1)}"
            f" to {_name(state, result.first_bad)} (measured without a verdict: {stuck})",
            f"last_good: {_name(state, result.last_good)}",
        ]
    return ["running"]


def _decided(state: State, position: int) -> bool:
    step = state.step_at(position)
    return step is not None and step.slower is not None


def table(state: State, result: Answer) -> str:
    """The measured steps by position (the good end first), then the answer."""
    metric = state.question.get("metric", "")
    lines = [
        f"| position | configuration | {metric} ratio to [0] | interval | verdict | seconds "
        "| rounds | build |",
        "| ---: | --- | ---: | --- | --- | ---: | ---: | --- |",
    ]
    steps = {s.position: s for s in state.steps}
    if 0 not in steps:
        cid = state.configs[0]
        lines.append(
            f"| 0 | {_cell(state, cid)} | 1 | - | good end | - | - | {_build_cell(state, cid)} |"
        )
    for position in sorted(steps):
        s = steps[position]
        ratio = f"{s.ratio:.3f}" if s.ratio is not None else "-"
        interval = (
            f"[{s.ratio_low:.3f}, {s.ratio_high:.3f}]"
            if s.ratio_low is not None and s.ratio_high is not None
            else "-"
        )
        verdict = s.verdict + (" (A/A)" if position == 0 else "")
        lines.append(
            f"| {position} | {_cell(state, s.config)} | {ratio} | {interval} | {verdict} | "
            f"{s.seconds:.0f} | {s.rounds} | {_build_cell(state, s.config)} |"
        )
    notes = [
        f"- [{s.position}] {s.verdict}: {s.reason}"
        for s in sorted(state.steps, key=lambda s: s.position)
        if s.verdict in ("failed", "inconclusive")
    ]
    return "\n".join([*lines, "", *answer_lines(state, result), *notes]) + "\n"


def _cell(state: State, cid: str) -> str:
    label = state.labels.get(cid, "")
    return _short(state, cid) + (f" {label}" if label else "")


def document(state: State, result: Answer, state_path: Path | None) -> dict[str, Any]:
    """The bisect as one JSON document: ``first_bad`` is the id of the first slow
    configuration (a registry id, a build name, a version, a commit hash), or null."""
    configs = state.configs
    found = result.status == bisect.FOUND and result.first_bad is not None
    return {
        "status": result.status,
        "first_bad": configs[result.first_bad] if found and result.first_bad is not None else None,
        "last_good": configs[result.last_good] if result.status != bisect.NOT_SLOWER else None,
        "first_bad_position": result.first_bad if found else None,
        "last_good_position": result.last_good if result.status != bisect.NOT_SLOWER else None,
        "candidates": [configs[p] for p in result.candidates],
        "undecided": [configs[p] for p in result.undecided],
        "answer": answer_lines(state, result),
        "question": state.question,
        "labels": state.labels,
        "builds": state.builds,
        "steps": [s.to_dict() for s in sorted(state.steps, key=lambda s: s.position)],
        "state": str(state_path) if state_path is not None else None,
    }


def to_json(state: State, result: Answer, state_path: Path | None) -> str:
    return json.dumps(document(state, result, state_path), indent=1, allow_nan=False) + "\n"


def plot(path: Path, state: State, result: Answer) -> Path:
    """The ratio to the good end by position, with intervals, coloured by verdict; a
    line at no change and at the threshold. A file there that is not a plot of ours is
    refused (:mod:`pytest_llmperf.model.ownership`)."""
    from matplotlib.figure import Figure

    ownership.check(path, "plot-png", "--plot")
    metric = str(state.question.get("metric", ""))
    threshold = float(state.question.get("threshold") or paired.DEFAULT_THRESHOLD_PCT)
    spec = METRICS.get(metric)
    worse_up = spec is not None and spec.better == "lower"
    fig = Figure(figsize=(max(5.0, 0.55 * len(state.configs) + 2), 3.6), layout="constrained")
    ax = fig.add_subplot()
    steps: list[Step] = sorted(state.steps, key=lambda s: s.position)
    ax.axhline(1.0, color="#8a8a8a", linewidth=1)
    limit = 1 + threshold / 100 if worse_up else 1 - threshold / 100
    ax.axhline(limit, color=verdict_color("regressed"), linewidth=0.8, linestyle="--")
    ax.plot([0], [1.0], "o", color="#455a64")
    for s in steps:
        if s.ratio is None:
            ax.plot([s.position], [1.0], "x", color=verdict_color("inconclusive"))
            continue
        low = s.ratio - (s.ratio_low if s.ratio_low is not None else s.ratio)
        high = (s.ratio_high if s.ratio_high is not None else s.ratio) - s.ratio
        ax.errorbar(
            [s.position],
            [s.ratio],
            yerr=[[max(low, 0.0)], [max(high, 0.0)]],
            fmt="o",
            color=verdict_color(s.verdict),
            capsize=3,
        )
    if result.status == bisect.FOUND and result.first_bad is not None:
        ax.axvline(result.first_bad - 0.5, color=verdict_color("regressed"), linewidth=1)
    ax.set_xticks(range(len(state.configs)))
    ax.set_xticklabels([_short(state, c)[:10] for c in state.configs], rotation=45, ha="right")
    ax.set_xlabel("position")
    ax.set_ylabel(f"{metric} / good end")
    ax.set_title(" ".join(answer_lines(state, result)[:1])[:90])
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, durable=False) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": ownership.PNG_SOFTWARE})
    return path
