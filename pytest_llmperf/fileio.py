"""The package's one atomic file writer and one YAML reader.

:func:`write_atomic` writes a temporary file in the target's directory, fsyncs it, gives
it the target's permission bits (or, for a new file, what the umask gives an ordinary
file), renames it over the target and fsyncs the directory: a reader or a crash sees the
old file or the new one, never a mix, and a report published from a shared directory is
as readable as any file the user writes there.

Writes go **through symbolic links**: the final path is resolved first
(:func:`os.path.realpath`), so a link stays a link and its target gets the new content,
atomically, in the target's own directory (the temporary file is made there, so the
rename never crosses a file system). A link that points nowhere (dangling) is written
where it points, creating that file; a loop of links is an OSError. Every writer of the
package goes through :func:`atomic_path` or :func:`write_atomic`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pytest_llmperf.errors import UsageError


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def real_target(target: str | os.PathLike[str]) -> Path:
    """The file a write of ``target`` must replace: ``target`` with every symbolic link
    resolved (a dangling link: the path it points to). Raises OSError (ELOOP) for a loop
    of links, which names no file."""
    path = Path(target)
    if not os.path.islink(path):
        return path
    final = Path(os.path.realpath(path))
    if os.path.islink(final):
        raise OSError(errno.ELOOP, "a loop of symbolic links, naming no file", str(path))
    return final


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, durable: bool = True) -> Iterator[Path]:
    """A temporary path beside the file ``target`` names (through symbolic links), renamed
    onto it when the block succeeds (and removed when it fails). The caller writes the
    temporary file however it likes."""
    final = real_target(target)
    try:
        mode = final.stat().st_mode & 0o777
    except OSError:
        mode = _umask_mode()
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    if durable:
        _fsync_dir(final.parent)


def sync_tree(folders: Iterable[Path]) -> None:
    """Make files written with ``durable=False`` durable: sync the file system, then each
    folder (its renames)."""
    folders = list(folders)
    if not folders:
        return
    os.sync()
    for folder in sorted(set(folders)):
        _fsync_dir(folder)


def write_atomic(
    target: str | os.PathLike[str], data: str | bytes, *, durable: bool = True
) -> Path:
    """Write ``data`` (text is UTF-8 with ``\\n`` line ends) to ``target`` atomically,
    through symbolic links (see :func:`atomic_path`). The parent directory must exist.
    OSError propagates: the caller names the fix. Returns ``target`` as given."""
    final = Path(target)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(final, durable=durable) as tmp:
        tmp.write_bytes(raw)
    return final


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """``yaml.safe_load`` of a UTF-8 file; every problem a UsageError naming the file,
    and the line and column of a syntax error."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{p}: not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise UsageError(f"{p}: cannot read ({exc.strerror or exc})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UsageError(f"{p}: YAML syntax error{where}: {problem}") from None
