"""The builds of ``llmperf bisect``: a llama-cpp-python release, or a commit of a local
llama.cpp checkout, built into the build cache by :func:`pytest_llmperf.machine.builds.build`
(reused by key: a resumed bisect builds nothing twice) under a name of its own
(``release-<version>``, ``commit-<12 hex>``).

A release is built as ``llmperf build NAME --version V`` builds it, in an environment of
its own with its own bindings (kind "release"; the same key: a release built before by
hand is reused). A commit is checked out in the checkout's
worktree (:func:`worktree_path`, :func:`pytest_llmperf.machine.revisions.worktree`) and
built from there with :data:`COMMIT_CMAKE_ARGS`, its hash as a CMake definition (the
worktree's path is the same for every commit, so the hash is what keys its build), and
through ccache when it is installed: ``CCACHE_BASEDIR`` the folder that holds both the
worktree and the build folders, and this build's own counters in a stats log, from which
its hit rate is read (the counters of ``ccache -s`` before and after where ccache keeps
no log).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmperf import paths
from pytest_llmperf.errors import LLMPerfError
from pytest_llmperf.machine import builds, revisions

#: CMake arguments of a commit's build: the libraries only (a worker loads neither the
#: unified binary, common nor mtmd; the unified binary does not build without the tools
#: on recent trees), each finding the others beside it ($ORIGIN: the build folder they
#: are linked in is gone once they are copied into the cache)
COMMIT_CMAKE_ARGS = (
    "-DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_MTMD=OFF "
    "-DCMAKE_BUILD_RPATH_USE_ORIGIN=ON"
)


@dataclass(frozen=True)
class Made:
    """One configuration's build: its name, whether the cache had it, how long it took
    and what ccache did (hits, misses, hit_rate; empty without ccache or when reused)."""

    name: str
    reused: bool
    seconds: float
    ccache: dict[str, Any] = field(default_factory=dict)
    log: str = ""

    def record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "build": "reused" if self.reused else "built",
            "seconds": round(self.seconds, 1),
            "ccache": dict(self.ccache),
        }


def worktree_path(source: Path) -> Path:
    """The worktree a checkout's commits are built in (one per checkout, kept)."""
    digest = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:12]
    return paths.bisect_dir() / "worktrees" / f"{source.name}-{digest}"


def build_name(kind: str, cid: str) -> str:
    return f"release-{cid}" if kind == "versions" else f"commit-{cid[:12]}"


def build(
    kind: str,
    cid: str,
    source: Path | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Made:
    """Build release ``cid`` (``kind`` "versions") or commit ``cid`` of the checkout
    ``source`` (``kind`` "commits"), or find it in the build cache. A failed build is an
    LLMPerfError naming its log."""
    name = build_name(kind, cid)
    cmake_args, tree, stats_log = "", "", None
    if kind == "commits":
        if source is None:
            raise LLMPerfError("a commit needs its checkout")
        where = revisions.worktree(source, worktree_path(source), cid)
        tree = str(where)
        cmake_args = f"{COMMIT_CMAKE_ARGS} -DLLMPERF_BISECT_COMMIT={cid}"
        if revisions.ccache() is not None:
            stats_log = paths.bisect_dir() / "ccache" / f"{cid}.log"
            stats_log.parent.mkdir(parents=True, exist_ok=True)
            base_dir = revisions.environment_base([paths.builds_dir(), where])
            if base_dir == Path(base_dir.anchor):  # nothing shared but the root: the tree
                base_dir = where
            cmake_args = f"{revisions.ccache_launcher(base_dir, stats_log)} {cmake_args}"
    before = revisions.ccache_stats() if stats_log is not None else None
    if stats_log is not None:
        stats_log.write_text("")
    log_path = paths.bisect_dir() / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = clock()
    with open(log_path, "w", encoding="utf-8") as log:
        try:
            info = builds.build(
                name,
                version=cid if kind == "versions" else builds.PINNED_VERSION,
                cmake_args=cmake_args,
                source=tree,
                kind="release" if kind == "versions" else "lib",
                log=log,
            )
        except LLMPerfError as exc:
            raise LLMPerfError(f"{exc}; the build's output is in {log_path}") from None
    seconds = clock() - t0
    ccache: dict[str, Any] = {}
    if stats_log is not None and not info.reused:
        ccache = revisions.ccache_log_counts(stats_log) or revisions.ccache_delta(
            before, revisions.ccache_stats()
        )
    return Made(info.name, info.reused, seconds, ccache, str(log_path))
