"""Sweeps across a fleet: the shard from the environment a scheduler sets (a Slurm array,
a Kubernetes Indexed Job, a CI matrix through LLMPERF_SHARD), and a sweep run as N shards
in N separate pytest processes, merged by ``llmperf merge`` into exactly the points of the
unsharded run. Nothing here depends on timing.

Split by tier: pure parts in tests/unit/test_sweep_fleet.py and pytest sessions and child
processes in tests/e2e/test_sweep_fleet.py."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from pytest_llmperf.sweep import load_sweep, read_ranking, read_results
from pytest_llmperf.sweep.fleet import SHARD_ENV
from tests.unit.test_sweep_fleet import slurm

# -- where the shard comes from -------------------------------------------------------------


# -- N shards in N processes ------------------------------------------------------------------

SWEEPS = """
sweeps:
  fleet:
    models: [tiny-dense-q4_k_m]
    workloads: [tg4]
    repetitions: 1
    base: "-c 128 -t 1"
    axes:
      n_batch: [32, 64, 128]
      n_ubatch: [8, 16]
    deep:
      top_k: 2
      axes:
        n_threads: [1, 2]
"""

TEST = """
import pytest

@pytest.mark.llmperf_sweep(file="sweeps.yaml", name="fleet")
def test_fleet(llm_perf):
    llm_perf.measure_all()
"""


def clean_env(**shard: str) -> dict[str, str]:
    """This environment without any shard variable or pytest option of the outer run."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in SHARD_ENV and not k.startswith(("PYTEST_", "SLURM_"))
    }
    env.pop("CI", None)
    return {**env, **shard}


def pytest_run(cwd: Path, *args: str, **shard: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_fleet.py",
         "--perf-in-process", "--perf-warmup=0", "--perf-missing=record", *args],
        cwd=cwd, env=clean_env(**shard), capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip


def ids_of(output: str) -> list[str]:
    return re.findall(r"::test_fleet\[([^\]]+)\]", output)


def test_a_sweep_in_three_processes_merges_into_the_unsharded_points(tmp_path: Path) -> None:
    (tmp_path / "sweeps.yaml").write_text(SWEEPS)
    (tmp_path / "test_fleet.py").write_text(TEST)
    whole = pytest_run(tmp_path, "--collect-only")
    assert whole.returncode == 0, whole.stdout + whole.stderr
    everything = ids_of(whole.stdout)
    assert sorted(everything) == sorted(load_sweep(tmp_path / "sweeps.yaml").points().ids())
    assert len(everything) == 6

    shards = [  # how each scheduler names shard i of 3
        ("SLURM_ARRAY_TASK_ID=10", dict(slurm(10, 3, first=10))),  # --array=10-12
        ("LLMPERF_SHARD=2/3", {"LLMPERF_SHARD": "2/3"}),  # a GitHub matrix
        ("JOB_COMPLETION_INDEX=2", {"JOB_COMPLETION_INDEX": "2", "LLMPERF_SHARD_COUNT": "3"}),
    ]
    files: list[str] = []
    ran: list[set[str]] = []
    for i, (source, env) in enumerate(shards, start=1):
        out = f"shard-{i}.jsonl"
        proc = pytest_run(
            tmp_path, f"--perf-sweep-results={out}", f"--perf-baseline-dir=bl-{i}", **env
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"shard {i}/3 leaves out 4, from {source}" in proc.stdout, proc.stdout
        assert "2 passed, 4 deselected" in proc.stdout
        ran.append({r["id"] for r in read_results(tmp_path / out)})
        files.append(out)
    assert all(len(ids) == 2 for ids in ran) and len(set().union(*ran)) == 6

    merged = subprocess.run(
        [sys.executable, "-m", "pytest_llmperf.cli.main", "merge", *files, "-o", "all.jsonl",
         "--ranking", "ranking-{sweep}.yaml", "--sweep-file", "sweeps.yaml"],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert merged.returncode == 0, merged.stdout + merged.stderr
    assert "merged: 6 record(s), 0 duplicate(s) dropped, 0 conflict(s)" in merged.stdout
    records = read_results(tmp_path / "all.jsonl")
    assert sorted(r["id"] for r in records) == sorted(everything)

    # the ranking for the deep phase: the top 2 (deep.top_k) of the merged records
    ranking = read_ranking(tmp_path / "ranking-fleet.yaml")
    by_tps = sorted(records, key=lambda r: (-r["metrics"]["tg4"]["tg_tps"], r["id"]))
    assert ranking == [r["id"] for r in by_tps[:2]]
    assert "ranking of sweep fleet by tg_tps (top 2): ranking-fleet.yaml" in merged.stdout
    deep = pytest_run(
        tmp_path, "--collect-only", "--perf-phase=deep", "--perf-ranking=ranking-fleet.yaml"
    )
    assert sorted(ids_of(deep.stdout)) == sorted(f"{p}-{t}" for p in ranking for t in ("t1", "t2"))
