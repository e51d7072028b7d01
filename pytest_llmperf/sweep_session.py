"""The sweep side of one pytest session, without pytest: options, plans, resume keys,
results streaming, ranking, the deep phase and progress bookkeeping.

:mod:`pytest_llmperf.sweep_plugin` is the thin pytest glue around this module: it reads
the markers, parametrizes, deselects and writes to the terminal, and hands this module
plain data (node ids, :class:`~pytest_llmperf.api.Config` objects, option values).
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmperf import gguf_info
from pytest_llmperf.api import Config
from pytest_llmperf.errors import LLMPerfError, UsageError
from pytest_llmperf.metrics import METRICS
from pytest_llmperf.results import TestReport
from pytest_llmperf.session import PerfSession
from pytest_llmperf.sweep import (
    PointList,
    ProgressLine,
    Sampling,
    Sweep,
    SweepPoint,
    SweepWarning,
    append_result,
    completed_ids,
    deepen,
    fmt_duration,
    load_sweep,
    parse_shard,
    plan_summary,
    rank,
    read_ranking,
    read_results,
    shard,
    write_ranking,
)

MARKER = "llmperf_sweep"
PHASES = ("explore", "deep")
DEFAULT_METRIC = "tg_tps"
DEFAULT_TOP_K = 3
MARKER_KEYS = ("file", "name", "sweep", "strategy", "size", "seed", "k", "model")


# -- option values --------------------------------------------------------------------------


def int_at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} must be >= {minimum}")
        return value

    return parse


def parse_strategy(text: str) -> str:
    try:
        return Sampling(text).strategy  # type: ignore[arg-type]
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_phase(text: str) -> str:
    if text not in PHASES:
        raise argparse.ArgumentTypeError(f"{text!r}: accepted: {', '.join(PHASES)}")
    return text


@dataclass(frozen=True)
class SweepOptions:
    """The sweep options of one session, validated."""

    strategy: str | None = None
    size: int | None = None
    seed: int | None = None
    k: int | None = None
    probe: bool = False
    metric: str | None = None
    results: Path | None = None
    resume: bool = False
    shard: tuple[int, int] | None = None
    phase: str = "explore"
    ranking: str | None = None
    top_k: int | None = None

    @classmethod
    def from_namespace(cls, opt: Any) -> SweepOptions:
        """The options from parsed command-line values (``config.option``)."""
        metric = opt.perf_sweep_metric
        if metric is not None and metric not in METRICS:
            raise UsageError(
                f"--perf-sweep-metric={metric}: unknown metric; known: {', '.join(sorted(METRICS))}"
            )
        results = Path(opt.perf_sweep_results).absolute() if opt.perf_sweep_results else None
        if opt.perf_resume and results is None:
            raise UsageError(
                "--perf-resume needs --perf-sweep-results=FILE.jsonl (the results to resume)"
            )
        shard_spec = None
        if opt.perf_shard is not None:
            try:
                shard_spec = parse_shard(opt.perf_shard)
            except UsageError as exc:
                raise UsageError(f"--perf-shard: {exc}") from None
        ranking = str(Path(opt.perf_ranking).absolute()) if opt.perf_ranking else None
        if ranking is not None:
            suffix = Path(ranking.replace("{sweep}", "x")).suffix.lower()
            if suffix not in (".yaml", ".yml", ".json"):
                raise UsageError(
                    f"--perf-ranking={opt.perf_ranking}: a ranking file ends in .yaml, .yml "
                    "or .json"
                )
        return cls(
            strategy=opt.perf_strategy,
            size=opt.perf_sample_size,
            seed=opt.perf_seed,
            k=opt.perf_k,
            probe=bool(opt.perf_probe),
            metric=metric,
            results=results,
            resume=bool(opt.perf_resume),
            shard=shard_spec,
            phase=opt.perf_phase,
            ranking=ranking,
            top_k=opt.perf_top_k,
        )

    def ranking_path(self, sweep: str) -> Path | None:
        return None if self.ranking is None else Path(self.ranking.replace("{sweep}", sweep))


# -- state ------------------------------------------------------------------------------


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


def _key_figure(report: TestReport, metrics: Sequence[str]) -> str:
    for metric in metrics:
        for m in report.measurements:
            value = m.median(metric)
            if value is not None:
                unit = METRICS[metric].unit if metric in METRICS else ""
                text = f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"
                return f"{metric} {text} {unit}".rstrip()
    return ""


def _first_line(text: str, limit: int = 200) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return ""


def _flat_rows(
    records: Sequence[Mapping[str, Any]], metric: str, workload: str | None
) -> list[dict[str, Any]]:
    """Records ``{id, metrics: {workload: {metric: median}}}`` as the flat rows of
    :func:`~pytest_llmperf.sweep.rank`: the metric of ``workload``, or of the first workload
    that has it."""
    out: list[dict[str, Any]] = []
    for rec in records:
        metrics = rec.get("metrics")
        if not isinstance(metrics, Mapping):
            continue
        for wl_name, values in metrics.items():
            if workload is not None and wl_name != workload:
                continue
            if isinstance(values, Mapping) and values.get(metric) is not None:
                out.append(
                    {
                        "id": rec.get("id"),
                        "error": rec.get("error"),
                        "workload": wl_name,
                        "metrics": {metric: values[metric]},
                    }
                )
                break
    return out


def _quiet_read(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SweepWarning)
        rows = read_results(path)
    return rows, [str(w.message) for w in caught]


class SweepState:
    """Everything the sweep hooks share during one session."""

    def __init__(
        self,
        options: SweepOptions,
        rootpath: Path,
        perf: Callable[[], PerfSession | None] = lambda: None,
    ) -> None:
        self.options = options
        self.rootpath = rootpath
        self._perf = perf
        self.plans: dict[str, SweepPlan] = {}
        self.items: dict[str, SweepItem] = {}
        self.started: dict[str, float] = {}
        self.outcomes: dict[str, tuple[str, str]] = {}
        self.recorded: set[str] = set()
        self.figures: dict[str, str] = {}
        self.durations: list[float] = []
        self.total = 0
        self.done = 0
        self.notices: list[str] = []
        self.write_errors: list[str] = []
        self._sweep_files: dict[tuple[str, str | None], Sweep] = {}
        self._fingerprints: dict[tuple[str, str], dict[str, Any]] = {}
        self._infos: dict[str, gguf_info.ModelInfo] = {}

    @property
    def perf(self) -> PerfSession | None:
        return self._perf()

    # -- metrics ----------------------------------------------------------------------------
    def figure_metrics(self) -> list[str]:
        metric = self.options.metric or DEFAULT_METRIC
        return [metric, "pp_tps"] if metric == "tg_tps" else [metric]

    def rank_metrics(self, sweep: Sweep) -> list[str]:
        if self.options.metric:
            return [self.options.metric]
        metric = sweep.deep.metric if sweep.deep else DEFAULT_METRIC
        return [metric, "pp_tps"] if metric == "tg_tps" else [metric]

    def ranking(
        self, sweep: Sweep, records: Sequence[Mapping[str, Any]], top_k: int | None
    ) -> list[Any]:
        spec = sweep.deep
        for metric in self.rank_metrics(sweep):
            rows = _flat_rows(records, metric, spec.workload if spec else None)
            better = spec.better if spec is not None and metric == spec.metric else None
            ranked = rank(rows, metric, top_k=top_k, better=better)
            if ranked:
                return ranked
        return []

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
            if cache_key not in self._sweep_files:
                self._sweep_files[cache_key] = load_sweep(path, cache_key[1])
            return self._sweep_files[cache_key]
        if name is not None:
            perf = self.perf
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

    def _deep_sampling(self, sweep: Sweep) -> Sampling | None:
        o = self.options
        if o.strategy is None and o.size is None and o.seed is None and o.k is None:
            return None
        base = sweep.deep.sampling if sweep.deep else Sampling()
        return Sampling(
            o.strategy or base.strategy,  # type: ignore[arg-type]
            o.size if o.size is not None else base.size,
            o.seed if o.seed is not None else base.seed,
            o.k if o.k is not None else base.k,
        )

    def _winners(self, sweep: Sweep, where: str) -> tuple[list[str], str]:
        """The ranked ids the deep phase starts from, and where they came from."""
        path = self.options.ranking_path(sweep.name)
        if path is not None and path.is_file():
            return read_ranking(path), path.name
        results = self.options.results
        if results is not None and results.is_file():
            rows, _warns = _quiet_read(results)
            rows = [
                r
                for r in rows
                if r.get("sweep") == sweep.name and r.get("phase", "explore") == "explore"
            ]
            known = sweep.find_points({str(r["id"]) for r in rows})
            rows = [r for r in rows if r["id"] in known]
            ranked = self.ranking(sweep, rows, None)
            if ranked:
                return [r.id for r in ranked], f"the explore results in {results.name}"
        tried = [str(p) for p in (path, results) if p is not None]
        raise UsageError(
            f"{where}: --perf-phase=deep needs the explore phase's ranking of sweep "
            f"{sweep.name!r}: "
            + (f"none found in {', '.join(tried)}" if tried else "none given")
            + "; run the explore phase with --perf-ranking=FILE or --perf-sweep-results=FILE, "
            "then pass the same option here"
        )

    def plan_for(
        self, nodeid: str, test_dir: Path, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[SweepPlan, PointList]:
        """The plan and points of a sweep marker (``args``, ``kwargs``) on test ``nodeid``."""
        where = f"{MARKER} marker on {nodeid}"
        kwargs = dict(kwargs)
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
        sweep = self._resolve_sweep(kwargs, test_dir, where)
        o = self.options
        if o.phase == "deep":
            ids, origin = self._winners(sweep, where)
            points = deepen(sweep, ids, top_k=o.top_k, sampling=self._deep_sampling(sweep))
            origin = f"top {len({p.parent for p in points}) or 0} of {origin}"
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

    def configs_for(
        self,
        nodeid: str,
        test_dir: Path,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        model: Any = None,
    ) -> list[Config]:
        """The ``llmperf_config`` values of a sweep test, one per point (the test id of
        each is its ``name``). ``model``: the model of the sweep marker, else of the
        ``llmperf`` marker."""
        plan, points = self.plan_for(nodeid, test_dir, args, kwargs)
        out: list[Config] = []
        for point in points:
            name = point.model or (str(model) if model else "")
            if not name:
                raise UsageError(
                    f"{MARKER} marker on {nodeid}: sweep {plan.name!r} "
                    "names no models; add 'models:' to the sweep or model=... to the marker"
                )
            cfg = Config(
                model=name,
                params=point.params,
                name=point.id,
                workloads=point.workloads,
                repetitions=point.repetitions,
                axes=tuple(point.axes.items()),
                sweep=plan.name,
            )
            out.append(cfg)
        return out

    # -- collection ---------------------------------------------------------------------------
    def fingerprint_key(self, cfg: Config) -> str | None:
        """The baseline key the Recorder will give this config's measurements."""
        perf = self.perf
        return None if perf is None else perf.baseline_key(cfg, cfg.workloads)

    def select(self, collected: Iterable[tuple[str, Any]]) -> set[str]:
        """Find the sweep items among ``(nodeid, llmperf_config value)`` pairs; return the
        node ids to deselect: those outside this shard and those done before."""
        found: dict[str, SweepItem] = {}
        for nodeid, cfg in collected:
            if not isinstance(cfg, Config) or not cfg.sweep or cfg.sweep not in self.plans:
                continue
            plan = self.plans[cfg.sweep]
            point = plan.by_id.get(cfg.name)
            if point is None:
                continue
            found[nodeid] = SweepItem(plan, point, cfg)
            plan.collected += 1
        if not found:
            return set()
        drop: set[str] = set()
        o = self.options
        if o.shard is not None:
            i, n = o.shard
            keep = {name: set(shard(sorted(plan.by_id), i, n)) for name, plan in self.plans.items()}
            for nodeid, it in found.items():
                if it.point.id not in keep[it.plan.name]:
                    drop.add(nodeid)
                    it.plan.shard_skipped += 1
        if o.resume and o.results is not None:
            rows, warns = _quiet_read(o.results)
            self.notices.extend(warns)
            keys: dict[str, str] = {}
            for nodeid, it in found.items():
                if nodeid in drop or it.point.id in keys:
                    continue
                key = self.fingerprint_key(it.config)
                if key is not None:
                    keys[it.point.id] = key
            done = completed_ids(rows, keys)
            for nodeid, it in found.items():
                if nodeid not in drop and it.point.id in done:
                    drop.add(nodeid)
                    it.plan.resume_skipped += 1
        self.items = {k: v for k, v in found.items() if k not in drop}
        return drop

    def finish_collection(self, nodeids: Iterable[str]) -> None:
        """Collection is over: ``nodeids`` are the tests still selected."""
        selected = set(nodeids)
        self.items = {k: v for k, v in self.items.items() if k in selected}
        for plan in self.plans.values():
            plan.selected = []
        for nodeid, it in self.items.items():
            it.plan.selected.append(nodeid)
        self.total = len(self.items)

    # -- the plan -----------------------------------------------------------------------------
    def _probe(self, plan: SweepPlan) -> tuple[float, str] | str:
        """Seconds for one run of the first selected point's workloads, or why not."""
        perf = self.perf
        if perf is None or not plan.selected:
            return "nothing to probe"
        it = self.items[plan.selected[0]]
        try:
            path, reason = perf.resolve_path(it.config)
            if path is None:
                return f"probe skipped: {reason}"
            runner = perf.runner(it.config, path)
            start = time.perf_counter()
            for wl in it.config.workloads:
                runner.measure(wl, 1, 0)
            return time.perf_counter() - start, it.point.id
        except LLMPerfError as exc:
            return f"probe failed on {it.point.id}: {_first_line(str(exc))}"

    def _estimate(self, plan: SweepPlan, points: Sequence[SweepPoint]) -> str:
        perf = self.perf
        warmup = perf.settings.warmup if perf is not None else 1
        if self.options.probe:
            probed = self._probe(plan)
            if isinstance(probed, str):
                return probed
            seconds, pid = probed
            runs = sum(p.repetitions + warmup for p in points)
            wls = "+".join(w.name for w in points[0].workloads) if points else "-"
            return (
                f"estimated time: {fmt_duration(seconds * runs)} (probe: one run of {wls} on "
                f"{pid} took {seconds:.2f} s; x {len(points)} points x (repetitions + "
                f"{warmup} warm-up); model loads not included)"
            )
        results = self.options.results
        if results is not None and results.is_file():
            rows, _warns = _quiet_read(results)
            spent, runs_done, n = 0.0, 0, 0
            for row in rows:
                d, reps, names = row.get("duration_s"), row.get("repetitions"), row.get("workloads")
                if (
                    row.get("sweep") == plan.name
                    and isinstance(d, int | float)
                    and isinstance(reps, int)
                    and isinstance(names, list)
                    and reps * len(names) > 0
                ):
                    spent += float(d)
                    runs_done += reps * len(names)
                    n += 1
            if n:
                per_run = spent / runs_done
                runs = sum(p.repetitions * len(p.workloads) for p in points)
                return (
                    f"estimated time: {fmt_duration(per_run * runs)} (from {n} earlier "
                    f"result(s) in {results.name}: {per_run:.3g} s per timed run, loads and "
                    "warm-ups included)"
                )
        return "estimated time: unknown (no earlier results; --perf-probe times one run first)"

    def plan_lines(self) -> list[str]:
        lines: list[str] = []
        for plan in self.plans.values():
            if not plan.collected:
                continue
            if not plan.selected and not (plan.shard_skipped or plan.resume_skipped):
                continue  # deselected by -k / -m (e.g. the smoke run): no plan to show
            summary = plan_summary(plan.points)
            head = f"sweep {plan.name}: "
            first = summary[0][len(head) :] if summary[0].startswith(head) else summary[0]
            phase = plan.phase + (f", {plan.origin}" if plan.origin else "")
            lines.append(f"llmperf sweep {plan.name} ({phase}): {first}")
            lines.extend(f"  {line}" for line in summary[1:])
            points = [self.items[nodeid].point for nodeid in plan.selected]
            others = plan.collected - plan.shard_skipped - plan.resume_skipped
            others -= len(plan.selected)
            parts: list[str] = []
            if self.options.shard is not None:
                i, n = self.options.shard
                parts.append(f"shard {i}/{n} leaves out {plan.shard_skipped}")
            if self.options.resume:
                name = self.options.results.name if self.options.results else ""
                parts.append(f"resume: {plan.resume_skipped} already done in {name}")
            if others > 0:
                parts.append(f"{others} deselected otherwise (-k, -m, --lf)")
            tail = f" ({'; '.join(parts)})" if parts else ""
            runs = sum(p.repetitions * len(p.workloads) for p in points)
            lines.append(f"  this run: {len(plan.selected)} test(s), {runs} timed runs{tail}")
            if plan.selected:
                lines.append(f"  {self._estimate(plan, points)}")
        return lines

    # -- results ------------------------------------------------------------------------------
    def _write(self, plan: SweepPlan, record: dict[str, Any]) -> None:
        plan.records.append(record)
        if self.options.results is None:
            return
        try:
            append_result(self.options.results, record)
        except (OSError, LLMPerfError) as exc:
            self.write_errors.append(f"{record['id']}: {exc}")

    def _record(self, it: SweepItem, nodeid: str, **fields: Any) -> dict[str, Any]:
        point = it.point
        start = self.started.get(nodeid)
        duration = time.perf_counter() - start if start is not None else None
        record: dict[str, Any] = {
            "id": point.id,
            "sweep": it.plan.name,
            "phase": point.phase,
            "parent": point.parent,
            "nodeid": nodeid,
            "model": it.config.model,
            "fingerprint_key": None,
            "axes": dict(point.axes),
            "params": it.config.params.to_dict(),
            "workloads": [w.name for w in it.config.workloads],
            "repetitions": point.repetitions,
            "metrics": {},
            "verdict": None,
            "duration_s": None if duration is None else round(duration, 3),
            "error": None,
        }
        record.update(fields)
        return record

    def on_report(self, report: TestReport, cfg: Config) -> None:
        """PerfSession listener: one gated test. Streams its result record."""
        it = self.items.get(report.nodeid)
        if it is None or it.config != cfg:
            return
        metrics: dict[str, dict[str, float]] = {}
        for m in report.measurements:
            metrics[m.workload.name] = {k: s.median for k, s in sorted(m.summaries().items())}
        error = None
        if not report.measurements:
            error = "nothing measured (call llm_perf.measure_all() in the test)"
        record = self._record(
            it,
            report.nodeid,
            fingerprint_key=report.baseline_key or None,
            metrics=metrics,
            verdict=report.verdict,
            error=error,
        )
        self._write(it.plan, record)
        self.recorded.add(report.nodeid)
        figure = _key_figure(report, self.figure_metrics())
        if report.verdict not in ("pass", "new"):
            figure = f"{figure}  {report.verdict}".strip()
        self.figures[report.nodeid] = figure

    def wants_outcome(self, nodeid: str) -> bool:
        """Whether a test report of ``nodeid`` still matters (first failure or skip)."""
        return nodeid in self.items and nodeid not in self.outcomes

    def on_start(self, nodeid: str) -> None:
        """A test starts."""
        if nodeid in self.items:
            self.started[nodeid] = time.perf_counter()

    def on_outcome(self, nodeid: str, outcome: str, message: str) -> None:
        """A sweep test ``failed`` or was ``skipped``, with this message (the first failure
        or skip of a test counts)."""
        if self.wants_outcome(nodeid):
            self.outcomes[nodeid] = (outcome, _first_line(message))

    def on_finish(self, nodeid: str) -> str | None:
        """A sweep test finished: write a record if the gate did not, return the progress
        line."""
        it = self.items.get(nodeid)
        if it is None:
            return None
        outcome, message = self.outcomes.get(nodeid, ("passed", ""))
        if nodeid not in self.recorded:
            verdict = "skipped" if outcome == "skipped" else "error"
            error = message or ("not measured" if outcome == "passed" else outcome)
            self._write(it.plan, self._record(it, nodeid, verdict=verdict, error=error))
            self.recorded.add(nodeid)
            figure = f"{outcome.upper()}: {message}" if message else outcome.upper()
        else:
            figure = self.figures.get(nodeid, "")
            if outcome == "failed" and "regressed" not in figure:
                figure = f"{figure}  FAILED".strip()
        start = self.started.get(nodeid)
        self.durations.append(time.perf_counter() - start if start is not None else 0.0)
        self.done += 1
        name = it.point.id if len(self.plans) == 1 else f"{it.plan.name}:{it.point.id}"
        total = max(self.total, self.done)
        return ProgressLine(self.done, total, name, figure, list(self.durations)).render()

    # -- end of session -----------------------------------------------------------------------
    def finish_session(self) -> list[str]:
        lines: list[str] = []
        ran = [plan for plan in self.plans.values() if plan.records]
        o = self.options
        if o.results is not None and ran:
            n = sum(len(plan.records) for plan in ran)
            lines.append(f"sweep results: {n} record(s) appended to {o.results}")
        if o.phase == "explore" and o.ranking is not None and ran:
            if len(ran) > 1 and "{sweep}" not in o.ranking:
                lines.append(
                    f"ranking NOT written: sweeps {', '.join(p.name for p in ran)} ran; put "
                    "'{sweep}' in --perf-ranking to write one file per sweep"
                )
            else:
                for plan in ran:
                    lines.extend(self._write_ranking(plan))
        if self.write_errors:
            lines.append(f"sweep output NOT written ({len(self.write_errors)} failure(s)):")
            lines.extend(f"  {e}" for e in self.write_errors[:10])
        return lines

    def _write_ranking(self, plan: SweepPlan) -> list[str]:
        o = self.options
        path = o.ranking_path(plan.name)
        assert path is not None
        records: list[Mapping[str, Any]] = list(plan.records)
        if o.results is not None and o.results.is_file():
            rows, _warns = _quiet_read(o.results)
            records = [
                r
                for r in rows
                if r.get("sweep") == plan.name
                and r.get("phase", "explore") == "explore"
                and r.get("id") in plan.by_id
            ]
        top_k = o.top_k or (plan.sweep.deep.top_k if plan.sweep.deep else DEFAULT_TOP_K)
        ranked = self.ranking(plan.sweep, records, top_k)
        if not ranked:
            return [f"ranking of sweep {plan.name} NOT written: no successful result to rank"]
        try:
            write_ranking(path, ranked)
        except (OSError, LLMPerfError) as exc:
            self.write_errors.append(f"ranking {path}: {exc}")
            return []
        first = ranked[0]
        return [
            f"ranking of sweep {plan.name} by {first.metric} (top {len(ranked)}): {path}",
            *(f"  {i}. {r.id}  {r.value:g}" for i, r in enumerate(ranked, 1)),
            f"  edit it if you like, then: --perf-phase=deep --perf-ranking={path}",
        ]
