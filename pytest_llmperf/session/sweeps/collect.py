"""Collection: ``llmperf_sweep`` markers into plans and parametrized configs, then the
collected items this run keeps (its shard, and on resume what is not done yet)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmperf.api import Config
from pytest_llmperf.errors import UsageError
from pytest_llmperf.session.perf_session import PerfSession
from pytest_llmperf.sweep.definition import Sweep, load_sweep
from pytest_llmperf.sweep.options import SweepOptions
from pytest_llmperf.sweep.points import PointList, SweepPoint
from pytest_llmperf.sweep.records import completed_ids, read_quietly, shard

MARKER = "llmperf_sweep"
MARKER_KEYS = ("file", "name", "sweep", "strategy", "size", "seed", "k", "model")

#: the deep phase's points of a sweep, and where its winners came from
DeepPoints = Callable[[Sweep, str], tuple[PointList, str]]


@dataclass(frozen=True)
class MarkerCall:
    """A test function with the ``llmperf_sweep`` marker, as collection sees it."""

    nodeid: str
    #: the test file's directory (a sweep file is looked up there first)
    test_dir: Path
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    #: the marker's ``model=``, else the ``llmperf`` marker's
    model: Any = None
    #: whether the test takes ``llmperf_config`` (directly or through llm_perf)
    uses_config: bool = True


@dataclass
class SweepPlan:
    """One sweep of this session: its definition, the points parametrized, and counts."""

    sweep: Sweep
    points: PointList
    phase: str
    #: where the deep phase's winners came from ("" for explore)
    origin: str = ""
    by_id: dict[str, SweepPoint] = field(default_factory=dict)
    collected: int = 0
    shard_skipped: int = 0
    resume_skipped: int = 0
    #: nodeids of the items still selected when collection finished
    selected: list[str] = field(default_factory=list)
    #: result records of this session, in order
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.sweep.name


@dataclass
class SweepItem:
    """One collected sweep test: its plan, its point and its config."""

    plan: SweepPlan
    point: SweepPoint
    config: Config


class Collector:
    """Turns markers into plans and configs, and selects the items of this run."""

    def __init__(
        self,
        options: SweepOptions,
        rootpath: Path,
        perf: Callable[[], PerfSession | None],
        deep_points: DeepPoints,
    ) -> None:
        self.options = options
        self.rootpath = rootpath
        self._perf = perf
        self._deep_points = deep_points
        self.plans: dict[str, SweepPlan] = {}
        #: nodeid -> item, of the items this run keeps
        self.items: dict[str, SweepItem] = {}
        self.notices: list[str] = []
        self._files: dict[tuple[str, str | None], Sweep] = {}

    # -- the marker ---------------------------------------------------------------------------
    def _sweep_file(self, raw: str, test_dir: Path) -> Path:
        candidates = [Path(raw)] if Path(raw).is_absolute() else []
        if not candidates:
            candidates = [test_dir / raw, self.rootpath / raw]
        for path in candidates:
            if path.is_file():
                return path
        raise UsageError(
            f"sweep file {raw!r} not found (looked in {', '.join(str(c) for c in candidates)}); "
            "give a path relative to the test file's directory or the rootdir"
        )

    def _resolve_sweep(self, kwargs: Mapping[str, Any], test_dir: Path, where: str) -> Sweep:
        obj, file, name = kwargs.get("sweep"), kwargs.get("file"), kwargs.get("name")
        if obj is not None:
            if not isinstance(obj, Sweep):
                raise UsageError(
                    f"{where}: sweep= takes a pytest_llmperf.sweep.Sweep (Sweep.define(...) or "
                    f"load_sweep(...)), not {type(obj).__name__}"
                )
            if file is not None or name is not None:
                raise UsageError(f"{where}: give sweep= alone, or file= and/or name=")
            return obj
        if file is not None:
            path = self._sweep_file(str(file), test_dir)
            cache_key = (str(path), None if name is None else str(name))
            if cache_key not in self._files:
                self._files[cache_key] = load_sweep(path, cache_key[1])
            return self._files[cache_key]
        if name is not None:
            perf = self._perf()
            registry: Mapping[str, Any] = perf.registry.sweeps if perf is not None else {}
            source = (perf.registry.source if perf is not None else "") or "llmperf.yaml"
            if str(name) not in registry:
                raise UsageError(
                    f"{where}: no sweep {name!r} under 'sweeps:' in the project registry "
                    f"({source}); known: {', '.join(sorted(registry)) or '(none)'}. Or give "
                    "file='sweeps.yaml'"
                )
            return Sweep.from_dict(
                registry[str(name)], name=str(name), source=source, where=f"sweeps.{name}"
            )
        raise UsageError(
            f"{where}: name the sweep: file='sweeps.yaml' (and name= for a file of several), "
            "name= of a sweep in llmperf.yaml, or sweep=Sweep.define(...)"
        )

    def _plan_for(self, call: MarkerCall, where: str) -> tuple[SweepPlan, PointList]:
        """The plan and points of a sweep marker."""
        kwargs, args = dict(call.kwargs), call.args
        if args:
            if len(args) == 1 and isinstance(args[0], str) and "name" not in kwargs:
                kwargs["name"] = args[0]
            else:
                raise UsageError(f"{where}: takes keyword arguments (file=, name=, sweep=, ...)")
        unknown = sorted(set(kwargs) - set(MARKER_KEYS))
        if unknown:
            raise UsageError(
                f"{where}: unknown argument(s) {', '.join(unknown)}; accepted: "
                f"{', '.join(MARKER_KEYS)}"
            )
        sweep = self._resolve_sweep(kwargs, call.test_dir, where)
        o = self.options
        if o.phase == "deep":
            points, origin = self._deep_points(sweep, where)
        else:
            origin = ""
            points = sweep.points(
                o.strategy or kwargs.get("strategy"),
                size=o.size if o.size is not None else kwargs.get("size"),
                seed=o.seed if o.seed is not None else kwargs.get("seed"),
                k=o.k if o.k is not None else kwargs.get("k"),
            )
        plan = self.plans.get(sweep.name)
        if plan is None:
            plan = SweepPlan(sweep=sweep, points=points, phase=o.phase, origin=origin)
            self.plans[sweep.name] = plan
        elif plan.sweep != sweep:
            raise UsageError(
                f"{where}: two different sweeps are named {sweep.name!r} in this session "
                f"({plan.sweep.source} and {sweep.source}); rename one"
            )
        for p in points:
            plan.by_id.setdefault(p.id, p)
        return plan, points

    def configs_for(self, call: MarkerCall) -> list[Config]:
        """The ``llmperf_config`` values of a sweep test, one per point (the test id of
        each is its ``name``)."""
        where = f"{MARKER} marker on {call.nodeid}"
        if not call.uses_config:
            raise UsageError(
                f"{call.nodeid}: the {MARKER} marker needs a test that uses llm_perf (or "
                "llm_model / llmperf_config)"
            )
        plan, points = self._plan_for(call, where)
        out: list[Config] = []
        for point in points:
            name = point.model or (str(call.model) if call.model else "")
            if not name:
                raise UsageError(
                    f"{where}: sweep {plan.name!r} "
                    "names no models; add 'models:' to the sweep or model=... to the marker"
                )
            out.append(
                Config(
                    model=name,
                    params=point.params,
                    name=point.id,
                    workloads=point.workloads,
                    repetitions=point.repetitions,
                    axes=tuple(point.axes.items()),
                    sweep=plan.name,
                    build=point.build,
                    launcher=point.launcher,
                )
            )
        return out

    # -- selection ----------------------------------------------------------------------------
    def _resume_keys(self, items: Iterable[SweepItem]) -> dict[str, str]:
        """Point id -> the baseline key the session will give its measurements (from the
        model file's metadata; no model is loaded). Points without a model file: none."""
        perf = self._perf()
        keys: dict[str, str] = {}
        for it in items:
            if perf is not None and it.point.id not in keys:
                key = perf.baseline_key(it.config, it.config.workloads)
                if key is not None:
                    keys[it.point.id] = key
        return keys

    def select(self, collected: Iterable[tuple[str, Any]]) -> set[str]:
        """Find the sweep items among ``(nodeid, llmperf_config value)`` pairs; return the
        node ids to deselect: with ``--perf-sweep``, every test of other sweeps or of
        none; those outside this shard; those done before."""
        o = self.options
        if o.only is not None and o.only not in self.plans:
            raise UsageError(
                f"--perf-sweep={o.only}: no collected test runs sweep {o.only!r}; collected "
                f"sweeps: {', '.join(sorted(self.plans)) or '(none)'}; check the name, or "
                "the tests given"
            )
        found: dict[str, SweepItem] = {}
        drop: set[str] = set()
        for nodeid, cfg in collected:
            point = None
            if isinstance(cfg, Config) and cfg.sweep in self.plans:
                point = self.plans[cfg.sweep].by_id.get(cfg.name)
            if o.only is not None and (point is None or cfg.sweep != o.only):
                drop.add(nodeid)
            elif point is not None:
                plan = self.plans[cfg.sweep]
                found[nodeid] = SweepItem(plan, point, cfg)
                plan.collected += 1
        if o.shard is not None:
            i, n = o.shard.index, o.shard.count
            keep = {name: set(shard(sorted(plan.by_id), i, n)) for name, plan in self.plans.items()}
            for nodeid, it in found.items():
                if it.point.id not in keep[it.plan.name]:
                    drop.add(nodeid)
                    it.plan.shard_skipped += 1
        if o.resume and o.results is not None:
            rows, warns = read_quietly(o.results)
            self.notices.extend(warns)
            for plan in self.plans.values():
                mine = {n: it for n, it in found.items() if it.plan is plan and n not in drop}
                done = completed_ids(rows, self._resume_keys(mine.values()), sweep=plan.name)
                for nodeid, it in mine.items():
                    if it.point.id in done:
                        drop.add(nodeid)
                        plan.resume_skipped += 1
        self.items = {k: v for k, v in found.items() if k not in drop}
        return drop

    def finish(self, nodeids: Iterable[str]) -> None:
        """Collection is over: ``nodeids`` are the tests still selected."""
        selected = set(nodeids)
        self.items = {k: v for k, v in self.items.items() if k in selected}
        for plan in self.plans.values():
            plan.selected = []
        for nodeid, it in self.items.items():
            it.plan.selected.append(nodeid)
