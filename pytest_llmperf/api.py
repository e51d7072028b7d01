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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_llmperf.errors import UsageError
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.workloads import Workload
from pytest_llmperf.options import split_words


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
        if not isinstance(self.model, str) or not self.model.strip():
            raise UsageError(
                f"model={self.model!r}: write a model id, a name of the registry or a "
                "built-in tiny model such as 'tiny-moe-mxfp4'"
            )
        for what in ("build", "launcher"):
            value = getattr(self, what)
            if not isinstance(value, str) or (what == "build" and not value):
                raise UsageError(f"{what}={value!r}: write the name of a registry {what}")
        if not isinstance(self.bench_args, str):
            raise UsageError(
                f"bench_args={self.bench_args!r}: write llama-bench's arguments as one string, "
                "e.g. bench_args='-mla 3 -fmoe 1'"
            )
        split_words(self.bench_args, "bench_args")  # an unbalanced quote: refused here

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

    if isinstance(models, str):
        model_list = [models]
    elif isinstance(models, list | tuple) and models and all(isinstance(m, str) for m in models):
        model_list = list(models)
    else:
        raise UsageError(
            f"configs({models!r}, ...): name the models as a model id or a non-empty list of "
            "them, e.g. configs(['tiny-moe-mxfp4', 'tiny-moe-q8_0'], n_threads=2)"
        )
    fixed = {k: v for k, v in axes.items() if not isinstance(v, (list, tuple))}
    grid = {k: list(v) for k, v in axes.items() if isinstance(v, (list, tuple))}
    empty = [k for k, v in grid.items() if not v]
    if empty:
        raise UsageError(
            f"configs(): {empty[0]}=[] gives no configuration at all; give it at least one "
            "value (a list is an axis, one value applies to every config)"
        )
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
