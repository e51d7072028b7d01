"""Prompt files: named streamed requests read from a file (:func:`load_prompts`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_llmperf.errors import UsageError
from pytest_llmperf.fileio import loads_json, loads_yaml
from pytest_llmperf.model.workloads import (
    DEFAULT_MAX_TOKENS,
    StreamWorkload,
    check_label,
    stream_workload,
)

# -- prompt sets ------------------------------------------------------------------------

_ENTRY_KEYS = frozenset(
    {"prompt", "messages", "max_tokens", "sampling", "chat_template", "chat_format"}
)


def _entry(name: str, raw: Any, where: str, max_tokens: int) -> StreamWorkload:
    if isinstance(raw, str):
        return stream_workload(raw, max_tokens=max_tokens, name=name)
    if isinstance(raw, list):
        return stream_workload(messages=raw, max_tokens=max_tokens, name=name)
    if isinstance(raw, Mapping):
        unknown = sorted(set(map(str, raw)) - _ENTRY_KEYS)
        if unknown:
            raise UsageError(
                f"{where}: prompt {name!r}: unknown key(s) {', '.join(unknown)}; accepted: "
                f"{', '.join(sorted(_ENTRY_KEYS))}"
            )
        try:
            return stream_workload(
                raw.get("prompt"),
                messages=raw.get("messages"),
                max_tokens=raw.get("max_tokens", max_tokens),
                sampling=raw.get("sampling"),
                name=name,
                chat_template=raw.get("chat_template"),
                chat_format=raw.get("chat_format"),
            )
        except UsageError as exc:
            raise UsageError(f"{where}: prompt {name!r}: {exc}") from None
    raise UsageError(
        f"{where}: prompt {name!r} is a {type(raw).__name__}; write a string, a list of "
        "messages or a mapping with prompt: / messages:"
    )


def load_prompts(
    path: str | Path, *, max_tokens: int = DEFAULT_MAX_TOKENS
) -> dict[str, StreamWorkload]:
    """A prompt set from a file, as streamed workloads by name (measure one with
    ``llm_perf.measure(prompts["long"])``).

    - ``.yaml`` / ``.yml`` / ``.json`` holding a mapping: named entries, each a string (a
      text prompt), a list of messages, or a mapping with ``prompt`` or ``messages`` and
      optionally ``max_tokens``, ``sampling``, ``chat_template``, ``chat_format``;
    - the same holding a list: entries named ``<file stem>-1``, ``-2``, ...;
    - any other file: one text prompt per non-empty line, named the same way.
    """
    p = Path(path)
    where = f"prompt file {p}"
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(
            f"{where} does not exist; check the path (relative to {Path.cwd()})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{where} cannot be read as UTF-8 text: {exc}") from None
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", p.stem).strip("-.") or "prompt"
    suffix = p.suffix.lower()
    data: Any
    if suffix in (".yaml", ".yml", ".json"):
        if suffix == ".json":
            try:
                data = loads_json(text, where)
            except ValueError as exc:  # JSONDecodeError
                raise UsageError(f"{where} is not valid JSON: {exc}") from None
        else:
            data = loads_yaml(text, where)
    else:
        data = [line for line in text.splitlines() if line.strip()]
    if isinstance(data, list):
        items: list[tuple[str, Any]] = [(f"{stem}-{i}", e) for i, e in enumerate(data, 1)]
    elif isinstance(data, Mapping):
        items = [(str(k), v) for k, v in data.items()]
    else:
        raise UsageError(
            f"{where}: expected a mapping of named prompts or a list of prompts, got "
            f"{type(data).__name__}"
        )
    if not items:
        raise UsageError(f"{where} holds no prompts")
    out: dict[str, StreamWorkload] = {}
    for name, raw in items:
        if name in out:
            raise UsageError(f"{where}: prompt {name!r} twice")
        try:
            check_label(name, f"{where}: prompt name")
        except UsageError as exc:
            raise UsageError(str(exc)) from None
        out[name] = _entry(name, raw, where, max_tokens)
    return out
