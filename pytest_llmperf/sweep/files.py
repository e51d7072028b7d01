"""Paths a sweep reads and writes: checked before anything runs, and every problem one
:class:`~pytest_llmperf.errors.UsageError` line that names the path and the fix."""

from __future__ import annotations

import errno
from pathlib import Path

from pytest_llmperf.errors import UsageError


def output_problem(path: Path, example: str, *, parents_only: bool = False) -> str | None:
    """Why ``path`` cannot become a file, or None: it is a directory, or a parent of it
    is a regular file. ``example`` is a file name to suggest inside a directory."""
    if not parents_only and path.is_dir():
        return f"{path} is a directory; name a file, e.g. {path / example}"
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is a file, not a directory; choose a path in a directory"
            break
    return None


def check_output(path: Path, what: str, example: str, *, parents_only: bool = False) -> None:
    """Raise a UsageError naming ``what`` (an option, such as ``--perf-sweep-results``)
    when ``path`` cannot be written as a file (``parents_only``: when no file can be
    written where it points)."""
    problem = output_problem(path, example, parents_only=parents_only)
    if problem is not None:
        raise UsageError(f"{what}: {problem}")


def write_error(path: Path, exc: OSError, what: str, example: str) -> UsageError:
    """A failed write of ``path`` as one line naming the path and the fix."""
    problem = output_problem(path, example)
    if problem is None:
        reason = exc.strerror or str(exc)
        fix = "free some space" if exc.errno == errno.ENOSPC else "choose a writable location"
        problem = f"cannot write {path} ({reason}); {fix}"
    return UsageError(f"{what}: {problem}")


def read_error(path: Path, exc: OSError, what: str) -> UsageError:
    """A failed read of ``path`` as one line naming the path and the fix."""
    if path.is_dir():
        return UsageError(f"{path}: is a directory, not {what}; name the file")
    reason = exc.strerror or str(exc)
    return UsageError(f"{path}: cannot read {what} ({reason}); check the path and its permissions")
