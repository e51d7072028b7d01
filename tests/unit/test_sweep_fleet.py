"""Sweeps across a fleet: the shard from the environment a scheduler sets (a Slurm array,
a Kubernetes Indexed Job, a CI matrix through LLMPERF_SHARD), and a sweep run as N shards
in N separate pytest processes, merged by ``llmperf merge`` into exactly the points of the
unsharded run. Nothing here depends on timing.

Split by tier: pure parts in tests/unit/test_sweep_fleet.py and pytest sessions and child
processes in tests/e2e/test_sweep_fleet.py."""

from __future__ import annotations

import pytest

from pytest_llmperf.errors import UsageError
from pytest_llmperf.sweep.fleet import Shard, resolve_shard

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
