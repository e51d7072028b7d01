"""Where this machine's shard comes from: ``--perf-shard``, or the environment a fleet's
scheduler sets (a Slurm job array, a Kubernetes Indexed Job, a CI matrix).

- ``--perf-shard=i/N``, and ``LLMPERF_SHARD=i/N`` (a GitHub matrix:
  ``${{ matrix.shard }}/${{ strategy.job-total }}``): as given;
- a Slurm array task: i = (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) /
  SLURM_ARRAY_TASK_STEP + 1 (the step 1 when unset), N = SLURM_ARRAY_TASK_COUNT;
- a Kubernetes Indexed Job's pod: i = JOB_COMPLETION_INDEX + 1 (it is 0-based),
  N = LLMPERF_SHARD_COUNT.

Every source present must give the same shard (else a UsageError names them);
``LLMPERF_SHARD=off`` ignores the schedulers' variables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from pytest_llmperf.errors import UsageError
from pytest_llmperf.sweep.records import parse_shard

#: the environment variables read here (tests clear them)
SHARD_ENV = (
    "LLMPERF_SHARD",
    "LLMPERF_SHARD_COUNT",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_STEP",
    "JOB_COMPLETION_INDEX",
)
_OFF = ("off", "none", "no", "0")
_FIX = "set LLMPERF_SHARD=i/N (1-based) instead, or LLMPERF_SHARD=off to run unsharded"


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (1-based), and what gave it (``source``)."""

    index: int
    count: int
    source: str

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def _int(env: Mapping[str, str], name: str) -> int:
    text = env[name].strip()
    if not re.fullmatch(r"\d+", text):
        raise UsageError(f"{name}={env[name]!r}: not a whole number; {_FIX}")
    return int(text)


def _given(name: str, text: str) -> Shard:
    try:
        i, n = parse_shard(text)
    except UsageError as exc:
        raise UsageError(f"{name}: {exc}") from None
    return Shard(i, n, f"{name}={text.strip()}")


def _slurm(env: Mapping[str, str]) -> Shard | str:
    """Shard of a Slurm array task, or why there is none."""
    if "SLURM_ARRAY_TASK_COUNT" not in env or "SLURM_ARRAY_TASK_MIN" not in env:
        return (
            f"SLURM_ARRAY_TASK_ID={env['SLURM_ARRAY_TASK_ID']} without SLURM_ARRAY_TASK_COUNT "
            "and SLURM_ARRAY_TASK_MIN: not sharding by it (set LLMPERF_SHARD=i/N to shard)"
        )
    task, count = _int(env, "SLURM_ARRAY_TASK_ID"), _int(env, "SLURM_ARRAY_TASK_COUNT")
    first = _int(env, "SLURM_ARRAY_TASK_MIN")
    step = _int(env, "SLURM_ARRAY_TASK_STEP") if "SLURM_ARRAY_TASK_STEP" in env else 1
    source = (
        f"SLURM_ARRAY_TASK_ID={task} (SLURM_ARRAY_TASK_MIN={first}, "
        + (f"SLURM_ARRAY_TASK_STEP={step}, " if step != 1 else "")
        + f"SLURM_ARRAY_TASK_COUNT={count})"
    )
    offset = task - first
    if count < 1 or step < 1 or offset < 0 or offset % step or offset // step >= count:
        raise UsageError(
            f"{source}: not a task of an evenly spaced array (--array=A-B[:S]); {_FIX}"
        )
    return Shard(offset // step + 1, count, source)


def _kubernetes(env: Mapping[str, str]) -> Shard | str:
    """Shard of a Kubernetes Indexed Job's pod, or why there is none."""
    if "LLMPERF_SHARD_COUNT" not in env:
        return (
            f"JOB_COMPLETION_INDEX={env['JOB_COMPLETION_INDEX']} without LLMPERF_SHARD_COUNT: "
            "not sharding by it (set LLMPERF_SHARD_COUNT to the Job's completions to shard)"
        )
    index, count = _int(env, "JOB_COMPLETION_INDEX"), _int(env, "LLMPERF_SHARD_COUNT")
    source = f"JOB_COMPLETION_INDEX={index} (LLMPERF_SHARD_COUNT={count})"
    if not 0 <= index < count:
        raise UsageError(f"{source}: the index must be below the count (it is 0-based); {_FIX}")
    return Shard(index + 1, count, source)


def resolve_shard(option: str | None, env: Mapping[str, str]) -> tuple[Shard | None, list[str]]:
    """This machine's shard (None: every point) and notes for the plan (variables seen but
    not used). Raises a UsageError for a bad value, or for sources that disagree."""
    found: list[Shard] = []
    notes: list[str] = []
    if option is not None:
        found.append(_given("--perf-shard", option))
    given = env.get("LLMPERF_SHARD", "").strip()
    off = given.lower() in _OFF
    if given and not off:
        found.append(_given("LLMPERF_SHARD", given))
    schedulers = (("SLURM_ARRAY_TASK_ID", _slurm), ("JOB_COMPLETION_INDEX", _kubernetes))
    for name, read in schedulers:
        if name in env and env[name].strip():
            if off:
                notes.append(f"{name} ignored (LLMPERF_SHARD={given})")
                continue
            shard = read(env)
            if isinstance(shard, str):
                notes.append(shard)
            else:
                found.append(shard)
    if "LLMPERF_SHARD_COUNT" in env and "JOB_COMPLETION_INDEX" not in env:
        notes.append("LLMPERF_SHARD_COUNT ignored: it goes with JOB_COMPLETION_INDEX")
    distinct = {(s.index, s.count) for s in found}
    if len(distinct) > 1:
        named = " and ".join(f"{s.source} (shard {s})" for s in found)
        raise UsageError(
            f"the shard sources disagree: {named}; give one, or make them agree "
            "(LLMPERF_SHARD=off ignores the scheduler's variables)"
        )
    return (found[0] if found else None), notes
