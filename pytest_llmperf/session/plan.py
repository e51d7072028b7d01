"""What a test will run, settled once at collection: its :class:`TestPlan` (the
configuration, run options, gate rules and the reference it is judged against), parsed
from the ``llmperf`` marker (:func:`parse_marker`) and the session's options."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_llmperf.api import CONFIG_FIELDS, Config
from pytest_llmperf.errors import UsageError
from pytest_llmperf.model.args import split_run_args
from pytest_llmperf.model.params import KNOBS, LoadParams, parse_llama_args
from pytest_llmperf.verdict.thresholds import RULE_KEYS, GateRules


@dataclass(frozen=True)
class RunOptions:
    """How a test runs, from its marker; None: the session's setting."""

    repetitions: int | None = None
    warmup: int | None = None
    timeout: float | None = None
    isolate: bool | None = None
    remeasure: int | None = None
    #: seconds to pause before each workload (llama-bench's --delay, for thermals)
    delay: float | None = None


RUN_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RunOptions))


@dataclass(frozen=True)
class MarkerArgs:
    """``@pytest.mark.llmperf(...)`` parsed once: the test's Config (None when the marker
    names no model), its run options and its raw gate rules (thresholds, limits, sla)."""

    config: Config | None
    run: RunOptions = field(default_factory=RunOptions)
    rules: Mapping[str, Any] = field(default_factory=dict)
    #: what differs in the configuration this test is judged against (paired verdicts)
    reference: Mapping[str, Any] | None = None


def parse_marker(
    kwargs: Mapping[str, Any], profiles: Mapping[str, Mapping[str, Any]], where: str
) -> MarkerArgs:
    """Split ``@pytest.mark.llmperf(...)`` kwargs into a Config, run options and rules."""
    data = dict(kwargs)
    rules = {k: data.pop(k) for k in list(data) if k in RULE_KEYS}
    args = data.pop("args", None)
    run_from_args: dict[str, Any] = {}
    if args:
        try:
            args, run_from_args = split_run_args(args)
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from None
    run_kw = {k: data.pop(k) for k in list(data) if k in RUN_KEYS}
    twice = sorted(set(run_from_args) & set(run_kw))
    if twice:
        raise UsageError(
            f"{where}: {twice[0]} is given twice: in args={kwargs.get('args')!r} and as "
            f"{twice[0]}={run_kw[twice[0]]!r}; which one is meant is ambiguous: keep one"
        )
    run_kw.update(run_from_args)
    run = _run_options(run_kw, where)
    model = data.pop("model", None)
    profile = data.pop("profile", None)
    extra = {k: data.pop(k) for k in CONFIG_FIELDS if k in data}
    reference = data.pop("reference", None)
    base: dict[str, Any] = {}
    if profile is not None:
        if str(profile) not in profiles:
            raise UsageError(
                f"{where}: unknown profile {profile!r}; known: "
                f"{', '.join(sorted(profiles)) or '(none defined)'}"
            )
        base.update(profiles[str(profile)])
    try:
        params = LoadParams.from_dict(base, source=where).merged(args, **data)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None
    ref = _reference(reference, where) if reference is not None else None
    if model is None:
        if params != LoadParams() or extra:
            raise UsageError(f"{where}: sets load params but no model; add model=...")
        return MarkerArgs(None, run, rules, ref)
    try:
        cfg = Config(model, params, **extra)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None
    return MarkerArgs(cfg, run, rules, ref)


def _reference(raw: Any, where: str) -> dict[str, Any]:
    """``reference={"build": "main"}`` (or any of model, build, launcher, args and load
    params): what to change in the test's config to get the configuration it is judged
    against."""
    if isinstance(raw, str):
        return parse_reference(raw, where)
    if not isinstance(raw, Mapping) or not raw:
        raise UsageError(
            f"{where}: reference={raw!r}: write a mapping of what differs, e.g. "
            "reference={'build': 'main'} or {'cpu_moe': False}"
        )
    allowed = {"model", "args", *CONFIG_FIELDS, *LoadParams().to_dict()}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise UsageError(
            f"{where}: reference: unknown key(s) {', '.join(unknown)}; accepted: model, build, "
            "launcher, args and the load params"
        )
    return dict(raw)


def parse_reference(text: str, where: str = "--perf-reference") -> dict[str, Any]:
    """``"build:main"``, ``"model:tiny-moe-q8_0,cpu_moe:false"`` -> a reference mapping."""
    out: dict[str, Any] = {}
    for part in (p.strip() for p in text.split(",")):
        name, sep, value = part.partition(":")
        if not sep or not name.strip():
            raise UsageError(
                f"{where}: {part!r}: write key:value pairs, e.g. build:main or "
                "model:tiny-moe-q8_0,cpu_moe:false"
            )
        key, text = name.strip(), value.strip()
        if key in out:
            raise UsageError(
                f"{where}: {key} is given twice ({key}:{out[key]} and {part}); a reference "
                "is one configuration: keep one (compare two builds with llmperf ab)"
            )
        if key in KNOBS:
            try:
                out[key] = KNOBS[key].kind.parse(text)
            except ValueError as exc:
                raise UsageError(f"{where}: {key}: {exc}") from None
        else:
            out[key] = text
    return _reference(out, where)


def apply_reference(cfg: Config, reference: Mapping[str, Any], where: str) -> Config:
    """The configuration ``cfg`` is judged against: ``cfg`` with ``reference`` applied.
    ``{model}`` in the reference's model stands for the test's own model id, so one
    session-wide reference fits every test: ``model:{model}-old`` judges each test's
    model against its old file."""
    data = dict(reference)
    model = str(data.pop("model", cfg.model))
    if "{" in model or "}" in model:
        if model.replace("{model}", "").count("{") or model.replace("{model}", "").count("}"):
            raise UsageError(
                f"{where}: reference model {model!r}: the one placeholder is {{model}}, the "
                "test's own model id (e.g. model:{model}-old)"
            )
        model = model.replace("{model}", cfg.model)
    extra = {k: str(data.pop(k)) for k in CONFIG_FIELDS if k in data}
    args = data.pop("args", None)
    try:
        params = cfg.params.merged(args, **data)
        ref = Config(
            model,
            params,
            build=extra.get("build", cfg.build),
            launcher=extra.get("launcher", cfg.launcher),
            bench_args=extra.get("bench_args", cfg.bench_args),
        )
    except UsageError as exc:
        raise UsageError(f"{where}: reference: {exc}") from None
    if ref.key() == cfg.key():
        raise UsageError(
            f"{where}: the reference {dict(reference)} is the test's own configuration; "
            "name what differs"
        )
    return ref


def _run_options(extras: Mapping[str, Any], where: str) -> RunOptions:
    """The marker's run options: counts are integers, the timeout a positive number."""
    for name, low in (("repetitions", 1), ("warmup", 0), ("remeasure", 0)):
        value = extras.get(name)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < low
        ):
            raise UsageError(f"{where}: {name}={value!r}: must be an integer >= {low}")
    delay = extras.get("delay")
    if delay is not None and (
        isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay < 3600
    ):
        raise UsageError(f"{where}: delay={delay!r}: must be a number of seconds >= 0")
    timeout = extras.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not math.isfinite(timeout)
        or not timeout > 0
    ):
        raise UsageError(f"{where}: timeout={timeout!r}: must be a number of seconds > 0")
    if "isolate" in extras and not isinstance(extras["isolate"], bool):
        raise UsageError(f"{where}: isolate={extras['isolate']!r}: must be True or False")
    return RunOptions(**extras)


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
    #: what the reference varies (its keys, ``args`` as the load params it sets)
    varied: tuple[str, ...] = ()

    @property
    def pair_key(self) -> tuple[Any, Any] | None:
        """The pair of configurations a paired test compares: tests with the same pair
        share their loads."""
        return None if self.reference is None else (self.reference.key(), self.config.key())


def varied_by(reference: Mapping[str, Any]) -> tuple[str, ...]:
    """The names a reference mapping varies: its keys, with ``args`` replaced by the load
    params it sets."""
    out = [str(k) for k in reference if k != "args"]
    args = reference.get("args")
    if args:
        out += list(parse_llama_args(str(args)))
    return tuple(sorted(set(out)))
