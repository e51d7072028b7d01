"""Where ``llmperf bisect``'s configurations come from when they are built: the commits of
a local llama.cpp checkout, the releases of llama-cpp-python on the package index; and
ccache, which makes the second build of a tree a few minutes shorter.

**Commits** (:func:`first_parent_commits`): from the good revision to the bad one along
the bad one's first parents (a merge is one step, as ``git bisect --first-parent`` sees
it). Each is built from one **worktree** of the checkout kept in the cache
(:func:`worktree`, ``git worktree add --detach``), checked out commit after commit: the
user's own checkout (its files, index and HEAD) is never touched, and the sources keep
one path, so ccache (told the common folder, ``CCACHE_BASEDIR``) hits across commits.

**Releases** (:func:`releases`): ``pip index versions llama-cpp-python`` through the
package index pip is configured with, oldest first; ``A..B`` is every release from A to
B in that order (:func:`release_range`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from pytest_llmperf.errors import UsageError
from pytest_llmperf.signals import held

PACKAGE = "llama-cpp-python"


# -- git ---------------------------------------------------------------------------------


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """One git command in ``repo``; stop signals are held while it runs (a checkout is
    never cut half way, no index.lock is left behind)."""
    if shutil.which("git") is None:
        raise UsageError("git is not installed; bisecting commits needs it")
    with held():
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
        )
    if check and done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise UsageError(f"git {' '.join(args[:3])} in {repo}: {why}")
    return done


def checkout_root(source: str | Path) -> Path:
    """The top folder of the git checkout ``source``; a UsageError when it is none."""
    path = Path(source).expanduser()
    if not path.is_dir():
        raise UsageError(f"--source {source}: no such folder; name a llama.cpp git checkout")
    done = _git(path, "rev-parse", "--show-toplevel", check=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise UsageError(
            f"--source {source}: not a git checkout (git rev-parse: "
            f"{(done.stderr.strip().splitlines() or ['no repository'])[-1]}); clone llama.cpp "
            "there, or name the folder of your clone"
        )
    return Path(done.stdout.strip())


def resolve(repo: Path, rev: str, what: str) -> str:
    """The full hash of the commit ``rev`` names in ``repo``."""
    if not rev or rev.startswith("-"):
        raise UsageError(f"{what} {rev!r}: name a revision (a hash, tag, branch or HEAD~3)")
    done = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise UsageError(f"{what} {rev}: no such commit in {repo}")
    return done.stdout.strip()


def first_parent_commits(repo: Path, good: str, bad: str) -> list[tuple[str, str]]:
    """(hash, subject) of every commit from ``good`` to ``bad`` (both included) along
    ``bad``'s first parents, oldest first."""
    good_hash = resolve(repo, good, "--good")
    bad_hash = resolve(repo, bad, "--bad")
    if good_hash == bad_hash:
        raise UsageError(f"--good {good} and --bad {bad} are the same commit ({good_hash[:12]})")
    done = _git(
        repo,
        "log",
        "--first-parent",
        "--reverse",
        "--format=%H%x00%P%x00%s",
        f"{good_hash}..{bad_hash}",
    )
    rows = [line.split("\0") for line in done.stdout.splitlines() if line]
    if not rows or rows[0][1].split()[:1] != [good_hash]:
        raise UsageError(
            f"--good {good} ({good_hash[:12]}) is not on the first-parent history of --bad "
            f"{bad} ({bad_hash[:12]}): name a good commit that --bad descends from through "
            "first parents (git log --first-parent BAD)"
        )
    subject = _git(repo, "log", "-1", "--format=%s", good_hash).stdout.strip()
    return [(good_hash, subject), *((h, s) for h, _p, s in rows)]


def worktree(repo: Path, where: Path, commit: str) -> Path:
    """A detached worktree of ``repo`` at ``where`` (made, or kept from an earlier bisect
    of the same checkout) with ``commit`` checked out, its files exactly the commit's
    (changes left by an interrupted checkout are discarded: the folder is ours)."""
    common = _git(repo, "rev-parse", "--git-common-dir").stdout.strip()
    common_path = (repo / common).resolve()
    if where.is_dir() and (where / ".git").exists():
        mine = _git(where, "rev-parse", "--git-common-dir", check=False)
        if mine.returncode != 0 or (where / mine.stdout.strip()).resolve() != common_path:
            raise UsageError(f"{where} is a worktree of another repository than {repo}; remove it")
    else:
        if where.exists():
            shutil.rmtree(where)
        where.parent.mkdir(parents=True, exist_ok=True)
        _git(repo, "worktree", "prune")
        _git(repo, "worktree", "add", "--detach", "--force", str(where), commit)
    _git(where, "checkout", "--force", "--quiet", "--detach", commit)
    _git(where, "clean", "-fdq")
    return where


# -- releases ------------------------------------------------------------------------------


def releases(package: str = PACKAGE) -> list[str]:
    """The releases of ``package`` on the configured package index, oldest first."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "index", "versions", package],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"pip index versions {package}: {exc}") from None
    for line in done.stdout.splitlines():
        if line.strip().startswith("Available versions:"):
            newest_first = [v.strip() for v in line.split(":", 1)[1].split(",") if v.strip()]
            return newest_first[::-1]
    why = (done.stderr.strip().splitlines() or ["no 'Available versions' line"])[-1]
    raise UsageError(f"pip index versions {package}: cannot read the release list ({why})")


_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+!-]*$")


def release_range(spec: str, known: list[str] | None) -> list[str]:
    """The releases ``spec`` names: ``A..B`` (every release from A to B in the index's
    order, ``known``, oldest first) or a comma list (taken in the order written; each
    must be in ``known`` when it is given)."""
    text = spec.strip()
    if ".." in text:
        first, _sep, last = (p.strip() for p in text.partition(".."))
        if not first or not last:
            raise UsageError(f"--versions {spec}: write FIRST..LAST, e.g. 0.3.30..0.3.36")
        if known is None:
            raise UsageError(f"--versions {spec}: a range needs the index's release list")
        for v in (first, last):
            if v not in known:
                raise UsageError(
                    f"--versions: {v} is not a release of {PACKAGE} on the index "
                    f"(from {known[0]} to {known[-1]})"
                )
        i, j = known.index(first), known.index(last)
        if j <= i:
            raise UsageError(f"--versions {spec}: {last} is not newer than {first}")
        return known[i : j + 1]
    out = [v.strip() for v in text.split(",") if v.strip()]
    for v in out:
        if not _VERSION.match(v):
            raise UsageError(f"--versions: {v!r} is not a version")
        if known is not None and v not in known:
            raise UsageError(f"--versions: {v} is not a release of {PACKAGE} on the index")
    return out


# -- ccache --------------------------------------------------------------------------------


def ccache() -> str | None:
    """The ccache program, when installed."""
    return shutil.which("ccache")


def ccache_launcher(base_dir: Path, stats_log: Path) -> str:
    """CMake arguments that compile through ccache with ``CCACHE_BASEDIR`` set to
    ``base_dir`` (absolute paths under it are hashed relative to the build folder, so one
    source tree built in fresh build folders hits) and each compilation's counters
    appended to ``stats_log`` (this build's own, whatever else uses ccache meanwhile)."""
    launcher = (
        f"env;CCACHE_BASEDIR={base_dir};CCACHE_STATSLOG={stats_log};"
        "CCACHE_SLOPPINESS=time_macros;ccache"
    )
    return f"'-DCMAKE_C_COMPILER_LAUNCHER={launcher}' '-DCMAKE_CXX_COMPILER_LAUNCHER={launcher}'"


def ccache_log_counts(stats_log: Path) -> dict[str, float]:
    """Hits, misses and hit rate of the compilations a stats log (``CCACHE_STATSLOG``)
    recorded; empty when it holds none."""
    try:
        lines = stats_log.read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        return {}
    hits = sum(line in ("direct_cache_hit", "preprocessed_cache_hit") for line in lines)
    misses = lines.count("cache_miss")
    if not hits + misses:
        return {}
    return {"hits": hits, "misses": misses, "hit_rate": round(hits / (hits + misses), 3)}


def ccache_stats() -> dict[str, int] | None:
    """ccache's counters (``ccache --print-stats``; ``ccache -s`` of older versions), or
    None without ccache."""
    exe = ccache()
    if exe is None:
        return None
    out: dict[str, int] = {}
    for flag in ("--print-stats", "-s"):
        try:
            done = subprocess.run([exe, flag], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if done.returncode != 0:
            continue
        for line in done.stdout.splitlines():
            parts = line.split("\t") if flag == "--print-stats" else line.rsplit(None, 1)
            if len(parts) == 2 and parts[1].strip().isdigit():
                key = re.sub(r"\W+", "_", parts[0].strip().lower()).strip("_")
                out[key] = int(parts[1])
        if out:
            return out
    return None


def ccache_delta(before: dict[str, int] | None, after: dict[str, int] | None) -> dict[str, float]:
    """What one build did: its hits, misses and hit rate (empty without ccache)."""
    if before is None or after is None:
        return {}

    def count(stats: dict[str, int], *names: str) -> int:
        return sum(stats.get(n, 0) for n in names)

    hit_names = ("direct_cache_hit", "preprocessed_cache_hit", "cache_hit_direct")
    miss_names = ("cache_miss",)
    hits = count(after, *hit_names) - count(before, *hit_names)
    misses = count(after, *miss_names) - count(before, *miss_names)
    total = hits + misses
    return {
        "hits": hits,
        "misses": misses,
        "hit_rate": round(hits / total, 3) if total else 0.0,
    }


def environment_base(paths: list[Path]) -> Path:
    """The deepest folder holding every path (ccache's base folder)."""
    return Path(os.path.commonpath([str(p.resolve()) for p in paths]))
