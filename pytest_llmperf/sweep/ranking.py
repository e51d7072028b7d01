"""The two phases: :func:`rank` explore results, keep the winners in an editable ranking
file (:func:`write_ranking`, :func:`read_ranking`), then :func:`deepen`: sweep more axes
around each winner with more repetitions."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_llmperf.errors import UsageError
from pytest_llmperf.fileio import read_yaml, write_atomic
from pytest_llmperf.model import ownership
from pytest_llmperf.model.metrics import METRICS, Better
from pytest_llmperf.model.workloads import Workload
from pytest_llmperf.sweep.axes import Axis, parse_axes
from pytest_llmperf.sweep.context import PathLike, Where, check_keys
from pytest_llmperf.sweep.definition import DeepPhase, Root, Sweep, expand
from pytest_llmperf.sweep.files import write_error
from pytest_llmperf.sweep.points import PointList, SweepPoint
from pytest_llmperf.sweep.selection import Selection, select_indices

RANKING_SUFFIXES = (".yaml", ".yml", ".json")
DEFAULT_METRIC = "tg_tps"
DEFAULT_TOP_K = 3


@dataclass(frozen=True)
class Ranked:
    """One ranked configuration: its id and the median of the ranking metric."""

    id: str
    value: float
    metric: str
    better: Better


def _metric_value(raw: Any) -> float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, Mapping):
        if "median" in raw:
            return _metric_value(raw["median"])
        if isinstance(raw.get("summary"), Mapping):
            return _metric_value(raw["summary"].get("median"))
        return None
    else:
        return None
    return None if math.isnan(value) else value


def _workload_name(raw: Any) -> str | None:
    if isinstance(raw, Mapping):
        raw = raw.get("name")
    if isinstance(raw, str):
        try:
            return Workload.parse(raw).name
        except UsageError:
            return raw
    return None


def rank(
    results: Iterable[Mapping[str, Any]],
    metric: str,
    top_k: int | None = None,
    better: Better | None = None,
    *,
    workload: str | None = None,
) -> list[Ranked]:
    """Completed results, best first by the median of ``metric``.

    A result is a mapping with at least ``id`` and ``metrics: {name: median}`` (a number,
    or ``{"median": x}``, or ``{"summary": {"median": x}}``). Rows with a truthy
    ``error`` or without the metric are ignored; with ``workload`` only rows of that
    workload count; the last row of an id wins. ``better`` defaults to the metric's
    direction in the registry. Ties keep id order.
    """
    if better is None:
        if metric not in METRICS:
            raise UsageError(
                f"unknown metric {metric!r}; known: {', '.join(sorted(METRICS))} "
                "(or pass better='higher'/'lower')"
            )
        better = METRICS[metric].better
    wanted = Workload.parse(workload).name if workload else None
    values: dict[str, float] = {}
    for row in results:
        pid = row.get("id")
        if not isinstance(pid, str) or row.get("error"):
            continue
        if wanted is not None and _workload_name(row.get("workload")) != wanted:
            continue
        metrics = row.get("metrics")
        value = _metric_value(metrics.get(metric)) if isinstance(metrics, Mapping) else None
        if value is not None:
            values[pid] = value
    sign = -1.0 if better == "higher" else 1.0
    order = sorted(values, key=lambda pid: (sign * values[pid], pid))
    if top_k is not None:
        order = order[:top_k]
    return [Ranked(pid, values[pid], metric, better) for pid in order]


def with_fallback(metric: str) -> list[str]:
    """tg_tps falls back on pp_tps for points that generate nothing."""
    return [metric, "pp_tps"] if metric == "tg_tps" else [metric]


def _flat_rows(
    records: Iterable[Mapping[str, Any]], metric: str, workload: str | None
) -> list[dict[str, Any]]:
    """Records ``{id, metrics: {workload: {metric: median}}}`` as the flat rows of
    :func:`~pytest_llmperf.sweep.rank`: the metric of ``workload``, or of the first
    workload that has it."""
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


def rank_records(
    records: Iterable[Mapping[str, Any]],
    spec: DeepPhase | None,
    top_k: int | None,
    metric: str | None = None,
) -> list[Ranked]:
    """Result records (``{id, metrics: {workload: {metric: median}}}``) best first: by
    ``metric``, else the deep phase's ``metric`` (on its ``workload`` when set), tg_tps
    falling back on pp_tps for points that generate nothing."""
    records = list(records)
    chosen = metric or (spec.metric if spec else DEFAULT_METRIC)
    for name in [metric] if metric else with_fallback(chosen):
        rows = _flat_rows(records, name, spec.workload if spec else None)
        better = spec.better if spec is not None and name == spec.metric else None
        ranked = rank(rows, name, top_k=top_k, better=better)
        if ranked:
            return ranked
    return []


def explore_records(
    rows: Iterable[Mapping[str, Any]], sweep: str, ids: Iterable[str]
) -> list[Mapping[str, Any]]:
    """The explore-phase records of ``sweep`` whose id is one of ``ids``."""
    known = set(ids)
    return [
        r
        for r in rows
        if r.get("sweep") == sweep
        and r.get("phase", "explore") == "explore"
        and r.get("id") in known
    ]


def write_ranking(path: PathLike, ranked: Sequence[Ranked | str]) -> None:
    """Write a ranking file the user can edit (reorder, delete lines): a list of ids.

    ``.json``: a JSON list. ``.yaml``/``.yml``: a YAML list with the metric values as
    comments. Written atomically; a path that cannot be written, or an existing file that
    is not a ranking file, is a UsageError naming it and the fix.
    """
    p = Path(path)
    ownership.check(p, "ranking", "ranking file")
    ids = [r.id if isinstance(r, Ranked) else str(r) for r in ranked]
    suffix = p.suffix.lower()
    if suffix == ".json":
        text = json.dumps(ids, indent=2) + "\n"
    elif suffix in (".yaml", ".yml"):
        first = next((r for r in ranked if isinstance(r, Ranked)), None)
        lines = ["# ranking, best first: reorder or delete lines, then run the deep phase"]
        if first is not None:
            lines.append(f"# by {first.metric} ({first.better} is better)")
        for r in ranked:
            item = json.dumps(r.id if isinstance(r, Ranked) else str(r))
            lines.append(f"- {item}  # {r.value:g}" if isinstance(r, Ranked) else f"- {item}")
        text = "\n".join(lines) + "\n"
    else:
        raise UsageError(f"{p}: a ranking file ends in .json, .yaml or .yml")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(p, text)
    except OSError as exc:
        raise write_error(p, exc, "ranking file", "ranking.yaml") from None


def ranking_lines(sweep: str, ranked: Sequence[Ranked], path: Path) -> list[str]:
    """What a written ranking file says to the user."""
    return [
        f"ranking of sweep {sweep} by {ranked[0].metric} (top {len(ranked)}): {path}",
        *(f"  {i}. {r.id}  {r.value:g}" for i, r in enumerate(ranked, 1)),
        f"  edit it if you like, then: --perf-phase=deep --perf-ranking={path}",
    ]


def read_ranking(path: PathLike) -> list[str]:
    """The ids of a ranking file (JSON or YAML list, or a mapping with ``ranking:``)."""
    where = Where(str(path))
    ownership.expect(path, ["ranking"], "ranking file")
    data = read_yaml(path)
    if isinstance(data, Mapping):
        check_keys(data, ("ranking",), where, "a ranking file")
        data = data.get("ranking")
        where = where.key("ranking")
    if not isinstance(data, list) or not data:
        raise where.error("write a list of point ids, best first")
    out: list[str] = []
    for i, item in enumerate(data):
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise where.key(i).error(f"{item!r}: each entry is a point id (a string)")
        if str(item) not in out:
            out.append(str(item))
    return out


def deepen(
    sweep: Sweep,
    ranked_ids: Sequence[str | Ranked | SweepPoint],
    top_k: int | None = None,
    deep_axes: Mapping[str, Any] | Sequence[Axis] | None = None,
    repetitions: int | None = None,
    *,
    selection: Selection | str | None = None,
) -> PointList:
    """The deep phase: for each of the ``top_k`` best configs, sweep ``deep_axes``
    (same syntax as ``axes``) around it with ``repetitions``.

    Defaults come from the sweep's ``deep:`` section, then: top 3, no extra axes (the
    winners re-measured), twice the exploration's repetitions, the full deep grid.
    Deep ids extend the parent's: ``<parent id>-<deep variant names>`` (``-deep`` when
    there are no deep axes). Unknown ids raise a UsageError naming them.
    """
    spec = sweep.deep or DeepPhase()
    k = spec.top_k if top_k is None else top_k
    if k < 1:
        raise UsageError(f"deepen: top_k={k}: must be >= 1")
    axes = (
        parse_axes(deep_axes, Where(sweep.source, "deep.axes"))
        if deep_axes is not None
        else spec.axes
    )
    reps = repetitions or spec.repetitions or 2 * sweep.repetitions
    s = sweep.selection_for(selection, base=spec.selection)

    ordered: list[str | SweepPoint] = []
    seen: set[str] = set()
    for item in ranked_ids:
        pid = item.id if isinstance(item, Ranked | SweepPoint) else str(item)
        if pid not in seen:
            seen.add(pid)
            ordered.append(item if isinstance(item, SweepPoint) else pid)
        if len(ordered) >= k:
            break
    wanted = [x for x in ordered if isinstance(x, str)]
    found = sweep.find_points(wanted) if wanted else {}
    missing = [pid for pid in wanted if pid not in found]
    if missing:
        raise UsageError(
            f"{sweep.source}: sweep {sweep.name!r}: ranked id(s) {', '.join(missing)} are not "
            "points of this sweep; check the ranking file against the sweep's ids"
        )
    parents = [x if isinstance(x, SweepPoint) else found[x] for x in ordered]
    roots = [
        Root(
            prefix=p.id,
            model=p.model,
            params=p.params,
            variants=p.variants,
            parent=p.id,
            build=p.build,
            launcher=p.launcher,
        )
        for p in parents
    ]
    lengths = [len(a) for a in axes]
    combos = select_indices(lengths, s, defaults=[a.default for a in axes])
    return expand(
        sweep,
        roots,
        axes,
        combos,
        repetitions=reps,
        workloads=spec.workloads or sweep.workloads,
        selection=s,
        grid_size=len(roots) * math.prod(lengths),
        deep=True,
    )
