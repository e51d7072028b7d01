"""The small public API for writing performance tests (re-exported by the package).

    from pytest_llmperf import configs

    @pytest.mark.parametrize("llmperf_config",
                             configs(["tiny-moe-mxfp4", "tiny-moe-q8_0"], n_threads=2,
                                     cpu_moe=[False, True]))
    def test_decode(llm_perf):
        llm_perf.measure("tg64")

gives test ids ``test_decode[tiny-moe-mxfp4-t2]``, ``test_decode[tiny-moe-mxfp4-t2-cpumoe]``...
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_llmperf.errors import UsageError
from pytest_llmperf.model.args import split_run_args
from pytest_llmperf.model.params import KNOBS, LoadParams
from pytest_llmperf.model.workloads import Workload
from pytest_llmperf.verdict.thresholds import RULE_KEYS


@dataclass(frozen=True)
class Config:
    """A model id and the load params to run it with (plus marker-level extras)."""

    model: str
    params: LoadParams = field(default_factory=LoadParams)
    #: an explicit id; default ``<model>-<params.short_id()>``
    name: str = ""
    #: workloads this config should be measured with (sweep points carry them)
    workloads: tuple[Workload, ...] = ()
    #: timed repetitions for those workloads (None: the session default)
    repetitions: int | None = None
    #: sweep axis -> variant name, for reports (empty outside sweeps)
    axes: tuple[tuple[str, str], ...] = ()
    #: the sweep this config belongs to ("" outside sweeps)
    sweep: str = ""
    #: the llama.cpp build the worker runs ("default": the installed llama-cpp-python)
    build: str = "default"
    #: the launcher (command prefix) of the worker ("": none)
    launcher: str = ""
    #: arguments passed untouched to a llama-bench build (a fork's own flags)
    bench_args: str = ""

    def __post_init__(self) -> None:
        for what in ("build", "launcher"):
            value = getattr(self, what)
            if not isinstance(value, str) or (what == "build" and not value):
                raise UsageError(f"{what}={value!r}: write the name of a registry {what}")

    @property
    def id(self) -> str:
        if self.name:
            return self.name
        parts = [self.model]
        sid = self.params.short_id()
        if sid != "default":
            parts.append(sid)
        if self.build != "default":
            parts.append(f"b{self.build}")
        if self.launcher:
            parts.append(f"l{self.launcher}")
        return "-".join(parts)

    def key(self) -> tuple[str, LoadParams, str, str, str]:
        """What makes one loaded model: one worker per key."""
        return (self.model, self.params, self.build, self.launcher, self.bench_args)

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


#: Config fields that are not load params but are set the same way
CONFIG_FIELDS: tuple[str, ...] = ("build", "launcher", "bench_args")


def config(model: str, args: str | None = None, **params: Any) -> Config:
    """One Config: ``config("tiny-moe-mxfp4", "-t 2 -b 256", cpu_moe=True, build="main")``."""
    extra = {k: params.pop(k) for k in CONFIG_FIELDS if k in params}
    return Config(model, LoadParams().merged(args, **params), **extra)


def configs(models: str | Sequence[str], args: str | None = None, **axes: Any) -> list[Any]:
    """``pytest.param`` values over models x every list-valued axis (a full grid).

    Scalar keyword values apply to every config; list values are axes. Ids read like
    ``tiny-moe-mxfp4-t2-b256-cpumoe``, so ``-k mxfp4`` or ``-k cpumoe`` select cases.
    """
    import pytest

    model_list = [models] if isinstance(models, str) else list(models)
    fixed = {k: v for k, v in axes.items() if not isinstance(v, (list, tuple))}
    grid = {k: list(v) for k, v in axes.items() if isinstance(v, (list, tuple))}
    out: list[Any] = []
    seen: set[str] = set()
    for model in model_list:
        for combo in itertools.product(*grid.values()) if grid else [()]:
            values = dict(fixed, **dict(zip(grid, combo, strict=True)))
            try:
                cfg = config(model, args, **values)
            except UsageError as exc:
                call = ", ".join(
                    [
                        repr(models),
                        *([repr(args)] if args else []),
                        *(f"{k}={v!r}" for k, v in axes.items()),
                    ]
                )
                shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
                raise UsageError(
                    f"configs({call}): the combination model={model!r}, {shown}: {exc}"
                ) from None
            if cfg.id in seen:
                raise UsageError(f"configs(): two configs share the id {cfg.id!r}")
            seen.add(cfg.id)
            out.append(pytest.param(cfg, id=cfg.id))
    return out


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
    run_kw = {**run_from_args, **{k: data.pop(k) for k in list(data) if k in RUN_KEYS}}
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
        cfg = Config(str(model), params, **extra)
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
        if key in KNOBS:
            try:
                out[key] = KNOBS[key].kind.parse(text)
            except ValueError as exc:
                raise UsageError(f"{where}: {key}: {exc}") from None
        else:
            out[key] = text
    return _reference(out, where)


def apply_reference(cfg: Config, reference: Mapping[str, Any], where: str) -> Config:
    """The configuration ``cfg`` is judged against: ``cfg`` with ``reference`` applied."""
    data = dict(reference)
    model = str(data.pop("model", cfg.model))
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
