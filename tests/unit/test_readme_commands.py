"""Every ``llmperf`` command the README and the docs show parses as written: the
command's own parser reads each one (nothing runs), so an example that argparse refuses
(``--cmake-args "-DGGML_NATIVE=OFF"`` once was) fails here, naming the file and line."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import pytest

from pytest_llmperf.cli import main

#: the commands' names, as the parser knows them (a line such as "llmperf sweep kv
#: (explore): ..." is printed output, not a command)
COMMANDS = {
    name
    for action in main.build_parser()._actions
    if isinstance(action, argparse._SubParsersAction)
    for name in action.choices
}
ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _commands(path: Path) -> list[tuple[int, str]]:
    """``(line, command)`` of every line that runs ``llmperf`` (after a ``$`` prompt or
    at a line's start, with its continuation lines), its comment cut."""
    out: list[tuple[int, str]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        start, text = i + 1, lines[i].strip().removeprefix("$ ")
        while text.endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text[:-1] + " " + lines[i].strip()
        i += 1
        words = text.split()
        if words[:1] == ["llmperf"] and len(words) > 1 and words[1] in COMMANDS:
            out.append((start, shlex.join(shlex.split(text, comments=True))))
    return out


CASES = [(f"{p.relative_to(ROOT)}:{n}", c) for p in DOCS for n, c in _commands(p)]


def test_the_docs_show_commands() -> None:
    assert len(CASES) >= 10, CASES


@pytest.mark.parametrize(("where", "command"), CASES, ids=[w for w, _ in CASES])
def test_every_documented_command_parses(where: str, command: str) -> None:
    try:
        args = main.parse_args(shlex.split(command)[1:])
    except SystemExit as exc:
        pytest.fail(f"{where}: `{command}` is refused by its parser (exit {exc.code})")
    assert callable(args.func), where


def test_a_value_that_starts_with_a_dash_is_the_option_s_value() -> None:
    args = main.parse_args(["build", "portable", "--cmake-args", "-DGGML_NATIVE=OFF"])
    assert args.cmake_args == "-DGGML_NATIVE=OFF"
    args = main.parse_args(
        ["ab", "--model", "m", "--args", "-t2", "--args-b", "--cpu-moe", "-n", "16"]
    )
    assert (args.args, args.args_b, args.n_gen) == ("-t2", "--cpu-moe", [16])
