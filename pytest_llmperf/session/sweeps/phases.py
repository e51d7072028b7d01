"""The two phases in a session: which metric ranks a sweep, the explore phase's ranking
file at the end, and the deep phase's winners and points at collection."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_llmperf.errors import LLMPerfError, UsageError
from pytest_llmperf.session.sweeps.collect import SweepPlan
from pytest_llmperf.sweep.definition import Sweep
from pytest_llmperf.sweep.options import SweepOptions
from pytest_llmperf.sweep.points import PointList
from pytest_llmperf.sweep.ranking import (
    DEFAULT_TOP_K,
    deepen,
    explore_records,
    rank_records,
    ranking_lines,
    read_ranking,
    write_ranking,
)
from pytest_llmperf.sweep.records import read_quietly
from pytest_llmperf.sweep.selection import Selection


class Phases:
    """The deep phase's points, and the explore phase's ranking file."""

    def __init__(self, options: SweepOptions) -> None:
        self.options = options

    def top_k(self, sweep: Sweep) -> int:
        return self.options.top_k or (sweep.deep.top_k if sweep.deep else DEFAULT_TOP_K)

    def _deep_selection(self, sweep: Sweep) -> Selection | None:
        o = self.options
        if not o.selection_overrides():
            return None
        base = sweep.deep.selection if sweep.deep else Selection()
        return base.override(o.strategy, o.size, o.seed, o.k)

    def _winners(self, sweep: Sweep, where: str) -> tuple[list[str], str]:
        """The ranked ids the deep phase starts from, and where they came from."""
        path = self.options.ranking_path(sweep.name)
        if path is not None and path.is_file():
            return read_ranking(path), path.name
        results = self.options.results
        if results is not None and results.is_file():
            rows, _warns = read_quietly(results)
            mine = [r for r in rows if r.get("sweep") == sweep.name]
            known = sweep.find_points({str(r["id"]) for r in mine})
            ranked = rank_records(
                explore_records(mine, sweep.name, known), sweep.deep, None, self.options.metric
            )
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

    def deep_points(self, sweep: Sweep, where: str) -> tuple[PointList, str]:
        """The deep phase's points of ``sweep`` and where its winners came from."""
        ids, origin = self._winners(sweep, where)
        points = deepen(sweep, ids, top_k=self.options.top_k, selection=self._deep_selection(sweep))
        return points, f"top {len({p.parent for p in points})} of {origin}"

    def write_ranking(self, plan: SweepPlan) -> tuple[list[str], list[str]]:
        """Rank the sweep's explore results (the results file's, else this session's) and
        write the ranking file: the lines to show, and the write errors."""
        o = self.options
        path = o.ranking_path(plan.name)
        assert path is not None
        records: Sequence[Mapping[str, Any]] = plan.records
        try:
            if o.results is not None and o.results.is_file():
                rows, _warns = read_quietly(o.results)
                records = explore_records(rows, plan.name, plan.by_id)
            ranked = rank_records(records, plan.sweep.deep, self.top_k(plan.sweep), o.metric)
            if ranked:
                write_ranking(path, ranked)
        except (OSError, LLMPerfError) as exc:
            return [], [f"ranking of sweep {plan.name}: {exc}"]
        if not ranked:
            return [f"ranking of sweep {plan.name} NOT written: no successful result to rank"], []
        return ranking_lines(plan.name, ranked, path), []
