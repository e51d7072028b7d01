"""The state of a bisect: the question it answers and the steps it measured, as one JSON
document (``llmperf bisect --state FILE``), and its validation. Pure.

The **question** is what decides the steps' verdicts: what kind of list is searched and
its configurations in order, the configuration they vary (model, load params, build,
launcher), the workloads, the deciding metric and the threshold. Its digest is the
state's **key**: the default state file is named by it, and a state file made for
another question is refused rather than mixed in. How hard each step tries (rounds,
seconds, loads) is not part of the question: a bisect resumed with more rounds keeps
the verdicts it has.

A state document::

    {"llmperf_bisect": 1, "key": "3f2a...", "question": {...},
     "labels": {"<config id>": "<commit subject>"},
     "builds": {"<config id>": {"name": ..., "build": "built", "seconds": ...}},
     "steps": [{...}, ...]}
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_llmperf.verdict.bisect import Step

#: the document's format; a reader refuses any other
VERSION = 1
#: the key that marks a state document (model/ownership.py recognizes it by this)
MARK = "llmperf_bisect"
#: what a question's ``kind`` may be
KINDS: tuple[str, ...] = ("models", "builds", "versions", "commits")


def question_key(question: Mapping[str, Any]) -> str:
    """The digest of a question (16 hex digits)."""
    blob = json.dumps(question, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class State:
    question: dict[str, Any]
    steps: list[Step] = field(default_factory=list)
    #: a short description of some configurations (a commit's subject)
    labels: dict[str, str] = field(default_factory=dict)
    #: per configuration id, how it was made the first time: its build's name, "built" or
    #: "reused", seconds, ccache's hits and misses (configurations that are built)
    builds: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return question_key(self.question)

    @property
    def configs(self) -> list[str]:
        return [str(c) for c in self.question.get("configs", [])]

    def step_at(self, position: int) -> Step | None:
        for step in self.steps:
            if step.position == position:
                return step
        return None

    def record(self, step: Step) -> None:
        """Add a step (one per position: a position measured again replaces it)."""
        self.steps = [s for s in self.steps if s.position != step.position] + [step]

    def to_document(self) -> dict[str, Any]:
        return {
            MARK: VERSION,
            "key": self.key,
            "question": self.question,
            "labels": dict(self.labels),
            "builds": {k: dict(v) for k, v in self.builds.items()},
            "steps": [s.to_dict() for s in self.steps],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_document(), indent=1, allow_nan=False) + "\n"


def check_question(question: Mapping[str, Any]) -> None:
    """ValueError unless ``question`` is one: a kind, two or more distinct
    configurations, workloads, a metric."""
    kind = question.get("kind")
    if kind not in KINDS:
        raise ValueError(f"question: kind {kind!r}; one of {', '.join(KINDS)}")
    configs = question.get("configs")
    if not isinstance(configs, list) or not all(isinstance(c, str) and c for c in configs):
        raise ValueError("question: configs must be a list of non-empty strings")
    if len(configs) < 2:
        raise ValueError(
            f"question: {len(configs)} configuration(s); bisect needs the good one and at "
            "least one after it"
        )
    if len(set(configs)) != len(configs):
        dup = sorted({c for c in configs if configs.count(c) > 1})
        raise ValueError(f"question: {', '.join(dup)} given more than once")
    workloads = question.get("workloads")
    if not isinstance(workloads, list) or not workloads:
        raise ValueError("question: workloads must be a non-empty list")
    if not isinstance(question.get("metric"), str) or not question["metric"]:
        raise ValueError("question: metric must be a metric's name")


def from_document(data: Any, question: Mapping[str, Any] | None = None) -> State:
    """The state a document holds; ValueError saying what is wrong. With ``question``,
    the document must be for that question (the same key)."""
    if not isinstance(data, Mapping) or MARK not in data:
        raise ValueError("not an llmperf bisect state (no llmperf_bisect key)")
    if data[MARK] != VERSION:
        raise ValueError(f"llmperf_bisect {data[MARK]!r}: this version reads {VERSION}")
    raw_question = data.get("question")
    if not isinstance(raw_question, Mapping):
        raise ValueError("question must be a mapping")
    check_question(raw_question)
    state = State(dict(raw_question))
    if data.get("key") != state.key:
        raise ValueError("its key does not match its question (edited by hand?)")
    if question is not None and question_key(question) != state.key:
        raise ValueError(
            f"it is the state of another bisect: {differences(raw_question, question)}"
        )
    labels = data.get("labels", {})
    if not isinstance(labels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise ValueError("labels must map configuration ids to strings")
    state.labels = dict(labels)
    made = data.get("builds", {})
    if not isinstance(made, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Mapping) for k, v in made.items()
    ):
        raise ValueError("builds must map configuration ids to mappings")
    state.builds = {k: dict(v) for k, v in made.items()}
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list):
        raise ValueError("steps must be a list")
    n = len(state.configs)
    seen: set[int] = set()
    for i, raw in enumerate(raw_steps):
        step = Step.from_dict(raw, f"steps[{i}]")
        if step.position >= n:
            raise ValueError(f"steps[{i}]: position {step.position} is beyond the list ({n})")
        if step.config != state.configs[step.position]:
            raise ValueError(
                f"steps[{i}]: position {step.position} is {state.configs[step.position]}, "
                f"not {step.config}"
            )
        if step.position in seen:
            raise ValueError(f"steps[{i}]: position {step.position} measured twice")
        seen.add(step.position)
        state.steps.append(step)
    return state


def differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    """What differs between two questions, in a few words."""
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            out.append(f"{key} {_short(a.get(key))} there, {_short(b.get(key))} here")
    return "; ".join(out) or "nothing"


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


__all__ = [
    "KINDS",
    "MARK",
    "VERSION",
    "State",
    "check_question",
    "differences",
    "from_document",
    "question_key",
]
