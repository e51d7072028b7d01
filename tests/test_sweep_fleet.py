"""Sweeps across a fleet: the shard from the environment a scheduler sets (a Slurm array,
a Kubernetes Indexed Job, a CI matrix through LLMPERF_SHARD), and a sweep run as N shards
in N separate pytest processes, merged by ``llmperf merge`` into exactly the points of the
unsharded run. Nothing here depends on timing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_llmperf.errors import UsageError
from pytest_llmperf.sweep import load_sweep, read_ranking, read_results
from pytest_llmperf.sweep.fleet import SHARD_ENV, Shard, resolve_shard

# -- where the shard comes from -------------------------------------------------------------


def slurm(task: int, count: int, first: int = 0, step: int | None = None) -> dict[str, str]:
    env = {
        "SLURM_ARRAY_TASK_ID": str(task),
        "SLURM_ARRAY_TASK_COUNT": str(count),
        "SLURM_ARRAY_TASK_MIN": str(first),
    }
    if step is not None:
        env["SLURM_ARRAY_TASK_STEP"] = str(step)
    return env


@pytest.mark.parametrize(
    ("option", "env", "shard"),
    [
        (None, {}, None),
        ("2/4", {}, Shard(2, 4, "--perf-shard=2/4")),
        (None, {"LLMPERF_SHARD": " 3/4 "}, Shard(3, 4, "LLMPERF_SHARD=3/4")),
        (None, {"LLMPERF_SHARD": ""}, None),  # an empty matrix expression: unset
        (
            None,
            slurm(0, 4),
            Shard(1, 4, "SLURM_ARRAY_TASK_ID=0 (SLURM_ARRAY_TASK_MIN=0, SLURM_ARRAY_TASK_COUNT=4)"),
        ),
        (
            None,
            slurm(7, 4, first=5),
            Shard(3, 4, "SLURM_ARRAY_TASK_ID=7 (SLURM_ARRAY_TASK_MIN=5, SLURM_ARRAY_TASK_COUNT=4)"),
        ),
        (
            None,
            slurm(8, 4, first=0, step=4),
            Shard(
                3,
                4,
                "SLURM_ARRAY_TASK_ID=8 "
                "(SLURM_ARRAY_TASK_MIN=0, SLURM_ARRAY_TASK_STEP=4, SLURM_ARRAY_TASK_COUNT=4)",
            ),
        ),
        (
            None,
            {"JOB_COMPLETION_INDEX": "0", "LLMPERF_SHARD_COUNT": "3"},
            Shard(1, 3, "JOB_COMPLETION_INDEX=0 (LLMPERF_SHARD_COUNT=3)"),
        ),
        # agreeing sources: the first named
        ("3/4", {"LLMPERF_SHARD": "3/4", **slurm(7, 4, first=5)}, Shard(3, 4, "--perf-shard=3/4")),
        # off: the scheduler's variables are ignored, the option still counts
        ("1/2", {"LLMPERF_SHARD": "off", **slurm(7, 4, first=5)}, Shard(1, 2, "--perf-shard=1/2")),
        (None, {"LLMPERF_SHARD": "off", **slurm(7, 4, first=5)}, None),
    ],
)
def test_shard_sources(option: str | None, env: dict[str, str], shard: Shard | None) -> None:
    assert resolve_shard(option, env)[0] == shard


def test_variables_seen_but_not_used_are_noted() -> None:
    _, notes = resolve_shard(None, {"JOB_COMPLETION_INDEX": "2"})
    assert notes == [
        "JOB_COMPLETION_INDEX=2 without LLMPERF_SHARD_COUNT: not sharding by it (set "
        "LLMPERF_SHARD_COUNT to the Job's completions to shard)"
    ]
    _, notes = resolve_shard(None, {"SLURM_ARRAY_TASK_ID": "2"})
    assert "without SLURM_ARRAY_TASK_COUNT" in notes[0]
    _, notes = resolve_shard(None, {"LLMPERF_SHARD": "off", **slurm(1, 2)})
    assert notes == ["SLURM_ARRAY_TASK_ID ignored (LLMPERF_SHARD=off)"]
    _, notes = resolve_shard(None, {"LLMPERF_SHARD_COUNT": "4"})
    assert notes == ["LLMPERF_SHARD_COUNT ignored: it goes with JOB_COMPLETION_INDEX"]


@pytest.mark.parametrize(
    ("option", "env", "message"),
    [
        (
            "1/4",
            slurm(1, 4),  # --array=0-3: task 1 is shard 2, not 1
            "the shard sources disagree: --perf-shard=1/4 (shard 1/4) and SLURM_ARRAY_TASK_ID=1 "
            "(SLURM_ARRAY_TASK_MIN=0, SLURM_ARRAY_TASK_COUNT=4) (shard 2/4); give one",
        ),
        (
            None,
            {"LLMPERF_SHARD": "2/3", "JOB_COMPLETION_INDEX": "2", "LLMPERF_SHARD_COUNT": "3"},
            "LLMPERF_SHARD=2/3 (shard 2/3) and JOB_COMPLETION_INDEX=2 (LLMPERF_SHARD_COUNT=3) "
            "(shard 3/3)",
        ),
        (None, {"LLMPERF_SHARD": "2of4"}, "LLMPERF_SHARD: shard '2of4': write i/N"),
        (None, {"LLMPERF_SHARD": "5/4"}, "LLMPERF_SHARD: shard '5/4': i must be between 1 and N"),
        (None, slurm(3, 2, first=1, step=1), "not a task of an evenly spaced array"),
        (None, slurm(5, 4, first=0, step=4), "not a task of an evenly spaced array"),
        (None, {**slurm(1, 4), "SLURM_ARRAY_TASK_ID": "x"}, "SLURM_ARRAY_TASK_ID='x': not a whole"),
        (
            None,
            {"JOB_COMPLETION_INDEX": "3", "LLMPERF_SHARD_COUNT": "3"},
            "the index must be below the count (it is 0-based)",
        ),
    ],
)
def test_bad_or_disagreeing_sources_name_them(
    option: str | None, env: dict[str, str], message: str
) -> None:
    with pytest.raises(UsageError) as err:
        resolve_shard(option, env)
    assert message in str(err.value)


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
