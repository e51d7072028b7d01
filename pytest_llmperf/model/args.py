"""llama-bench's run flags in load arguments: ``-r N``, ``--no-warmup``, ``--delay S``.

Pure. (The load flags themselves are parsed by
:func:`pytest_llmperf.model.params.parse_llama_args`.)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pytest_llmperf.errors import UsageError
from pytest_llmperf.options import as_words

#: llama-bench's run flags (not load params): -r, --no-warmup, --delay
RUN_FLAGS: dict[str, str] = {
    "-r": "repetitions",
    "--repetitions": "repetitions",
    "--no-warmup": "warmup",
    "--delay": "delay",
}


def split_run_args(
    args: str | Iterable[str], where: str = "args"
) -> tuple[list[str], dict[str, Any]]:
    """llama-bench arguments split into load arguments and run options:
    ``-r N`` (repetitions), ``--no-warmup`` (warmup 0), ``--delay S`` (seconds between
    workloads, as llama-bench pauses between tests for thermals)."""
    tokens = as_words(args, where)
    load: list[str] = []
    run: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        flag, eq, inline = tokens[i].partition("=")
        name = RUN_FLAGS.get(flag)
        if name is None:
            load.append(tokens[i])
            i += 1
            continue
        if name in run:
            raise UsageError(f"argument {flag}: {name} is given twice; keep one")
        if name == "warmup":
            run["warmup"] = 0
            i += 1
            continue
        if eq:
            text, i = inline, i + 1
        elif i + 1 < len(tokens):
            text, i = tokens[i + 1], i + 2
        else:
            raise UsageError(f"argument {flag} needs a value")
        try:
            value = float(text) if name == "delay" else int(text)
        except ValueError:
            raise UsageError(f"argument {flag}: {text!r} is not a number") from None
        if value < (0 if name == "delay" else 1):
            raise UsageError(f"argument {flag}: {text} must be >= {0 if name == 'delay' else 1}")
        run[name] = value
    return load, run
