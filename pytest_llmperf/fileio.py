"""The package's one atomic file writer and its readers of JSON and YAML.

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

Every JSON and YAML document the package reads (baselines, results.json, sweep records,
rankings, the registry, sweep definitions, prompt files) goes through :func:`loads_json`
or :func:`read_yaml` / :func:`loads_yaml`, which refuse a key given twice in one object or
mapping (JSON and YAML parsers otherwise keep the last one silently): the error names the
file, the key and the lines it is on.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
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


class DuplicateKeyError(UsageError):
    """A JSON object or YAML mapping that gives one key twice."""

    def __init__(self, source: str, key: object, lines: Sequence[int] = ()) -> None:
        self.source = source
        self.key = key
        where = f" (lines {', '.join(map(str, lines))})" if len(set(lines)) > 1 else ""
        super().__init__(
            f"{source}: key {str(key)!r} is given twice in one object{where}; which one is "
            "meant is ambiguous: keep one"
        )


class _Twice(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Twice(key)
        out[key] = value
    return out


def _key_lines(text: str, key: str) -> list[int]:
    """The lines of the first object in ``text`` (valid JSON) that gives ``key`` twice."""
    stack: list[dict[str, int]] = []
    i, line, n = 0, 1, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        elif c == "{":
            stack.append({})
        elif c == "}" and stack:
            stack.pop()
        elif c == '"':
            end = i + 1
            while text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            after = text[end + 1 : end + 64].lstrip()
            if stack and after.startswith(":") and json.loads(text[i : end + 1]) == key:
                if key in stack[-1]:
                    return [stack[-1][key], line]
                stack[-1][key] = line
            line += text.count("\n", i, end)
            i = end
        i += 1
    return []


def loads_json(data: str | bytes, source: str) -> Any:
    """``json.loads`` of ``data`` (the content of ``source``, a file name as the user wrote
    it), refusing an object that gives a key twice: :class:`DuplicateKeyError` (a
    UsageError) naming the file, the key and its lines. Invalid JSON raises
    ``json.JSONDecodeError`` as ``json.loads`` does, for the caller to word."""
    try:
        return json.loads(data, object_pairs_hook=_unique_object)
    except _Twice as exc:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        raise DuplicateKeyError(source, exc.key, _key_lines(text, exc.key)) from None


def _yaml_loader() -> Any:
    """A ``yaml.SafeLoader`` that refuses a mapping giving one key twice (merge keys,
    ``<<``, may be overridden, as YAML means them to be)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                seen: dict[Any, int] = {}
                for key_node, _value in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        hash(key)
                    except TypeError:
                        continue  # left to SafeLoader's own error
                    line = key_node.start_mark.line + 1
                    if key in seen:
                        raise _YamlTwice(key, (seen[key], line))
                    seen[key] = line
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


class _YamlTwice(Exception):
    def __init__(self, key: object, lines: tuple[int, int]) -> None:
        super().__init__(key)
        self.key = key
        self.lines = lines


def loads_yaml(text: str, source: str) -> Any:
    """The YAML document ``text`` (the content of ``source``), safely loaded (no Python
    objects), refusing a mapping that gives a key twice; every problem a UsageError naming
    ``source``, and the line and column of a syntax error."""
    import yaml

    loader = _yaml_loader()(text)  # a SafeLoader: no Python objects are constructed
    try:
        return loader.get_single_data()
    except _YamlTwice as exc:
        raise DuplicateKeyError(source, exc.key, exc.lines) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UsageError(f"{source}: YAML syntax error{where}: {problem}") from None
    finally:
        loader.dispose()


def read_text(path: str | os.PathLike[str]) -> str:
    """A UTF-8 file's text; every problem a UsageError naming the file."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{p}: not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8"
        ) from None
    except OSError as exc:
        raise UsageError(f"{p}: cannot read ({exc.strerror or exc})") from None


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """The YAML of a UTF-8 file (:func:`loads_yaml`: safe, a key given twice refused);
    every problem a UsageError naming the file, and the line and column of a syntax
    error."""
    return loads_yaml(read_text(path), str(path))
