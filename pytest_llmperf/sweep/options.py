"""The sweep options of one pytest session, validated before anything is collected."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_llmperf.errors import UsageError
from pytest_llmperf.model import ownership
from pytest_llmperf.model.metrics import METRICS
from pytest_llmperf.sweep.files import check_output
from pytest_llmperf.sweep.fleet import Shard, resolve_shard
from pytest_llmperf.sweep.ranking import RANKING_SUFFIXES
from pytest_llmperf.sweep.selection import Selection

PHASES = ("explore", "deep")


def parse_strategy(text: str) -> str:
    """``--perf-strategy``: a strategy name or alias -> its name."""
    try:
        return Selection(text).strategy
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    shard: Shard | None = None
    #: shard variables of the environment seen but not used, for the plan
    shard_notes: tuple[str, ...] = ()
    phase: str = "explore"
    ranking: str | None = None
    top_k: int | None = None
    #: run only this sweep's tests (--perf-sweep)
    only: str | None = None

    @classmethod
    def from_namespace(cls, opt: Any, environ: Mapping[str, str] | None = None) -> SweepOptions:
        """The options from parsed command-line values (``config.option``) and the
        environment (the shard of a Slurm array, a Kubernetes Indexed Job, a CI matrix)."""
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
        shard, notes = resolve_shard(opt.perf_shard, os.environ if environ is None else environ)
        if results is not None:
            check_output(results, "--perf-sweep-results", "results.jsonl")
            ownership.check(results, "sweep-results", "--perf-sweep-results")
        ranking = str(Path(opt.perf_ranking).absolute()) if opt.perf_ranking else None
        if ranking is not None:
            suffix = Path(ranking.replace("{sweep}", "x")).suffix.lower()
            if suffix not in RANKING_SUFFIXES:
                raise UsageError(
                    f"--perf-ranking={opt.perf_ranking}: a ranking file ends in .yaml, .yml "
                    "or .json"
                )
            # with '{sweep}', the file names are known later: check where they go
            per_sweep = "{sweep}" in ranking
            target = Path(ranking.replace("{sweep}", "x") if per_sweep else ranking)
            check_output(target, "--perf-ranking", "ranking.yaml", parents_only=per_sweep)
            if not per_sweep and opt.perf_phase != "deep":  # the deep phase only reads it
                ownership.check(target, "ranking", "--perf-ranking")
        return cls(
            strategy=opt.perf_strategy,
            size=opt.perf_sample_size,
            seed=opt.perf_seed,
            k=opt.perf_k,
            probe=bool(opt.perf_probe),
            metric=metric,
            results=results,
            resume=bool(opt.perf_resume),
            shard=shard,
            shard_notes=tuple(notes),
            phase=opt.perf_phase,
            ranking=ranking,
            top_k=opt.perf_top_k,
            only=opt.perf_sweep,
        )

    def ranking_path(self, sweep: str) -> Path | None:
        return None if self.ranking is None else Path(self.ranking.replace("{sweep}", sweep))

    def selection_overrides(self) -> bool:
        """Whether the command line sets any part of the selection."""
        return any(v is not None for v in (self.strategy, self.size, self.seed, self.k))
