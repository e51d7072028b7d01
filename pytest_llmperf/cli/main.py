"""The ``llmperf`` command.

llmperf tiny-model --variant moe-mxfp4     # build (or reuse) a tiny model, print its path
llmperf tiny-model --list
llmperf compare A B                        # results or baseline files: table, exit 0/1
llmperf report RESULTS -o DIR              # re-render a report from results.json (--format)
llmperf baseline list|show|prune           # inspect and clean the baseline store
llmperf history [TEST] [-o DIR]            # session medians over time, and their steps
llmperf merge SHARD.jsonl... -o OUT        # join sweep results of several shards
llmperf ab --model M --build-b main -n 128 # is B slower than A? paired rounds, exit 0/1
llmperf build NAME --cmake-args "..."      # build a named llama.cpp variant; --list
llmperf machine [--measure]                # the measured limits the roofline metrics use
llmperf bisect --models m0,m1,... -n 64    # the first slow model, build, release or commit
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from typing import Any, Protocol

from pytest_llmperf.cli import (
    ab,
    baseline,
    bisect,
    build,
    compare,
    history,
    machine,
    merge,
    report,
    tiny,
)
from pytest_llmperf.errors import LLMPerfError
from pytest_llmperf.signals import SignalGuard, Stopped, exit_status


class Command(Protocol):
    """A command's module (cli/<command>.py): the parser and the dispatch here, the
    command's arguments and body there."""

    def add_parser(self, sub: Any) -> None:
        """Add the command's parser to ``sub`` (argparse's subparsers), its ``func``
        default set to :meth:`run`."""

    def run(self, args: argparse.Namespace) -> int:
        """Run the command; its exit status."""


#: the commands, in the order ``llmperf --help`` lists them
COMMANDS: tuple[Command, ...] = (
    tiny,
    compare,
    report,
    baseline,
    history,
    merge,
    ab,
    build,
    machine,
    bisect,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmperf", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


#: options whose value is a command line of their own (llama.cpp's, CMake's): argparse
#: takes a value that starts with a dash and holds no space (``--cmake-args
#: -DGGML_NATIVE=OFF``) for an option, so such a value is glued to its option first
WORDS_OPTIONS = ("--args", "--args-b", "--cmake-args")


def _glue_words(argv: Sequence[str]) -> list[str]:
    out: list[str] = []
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg in WORDS_OPTIONS and rest and rest[0].startswith("-"):
            arg = f"{arg}={rest.pop(0)}"
        out.append(arg)
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line as the commands read it (``sys.argv[1:]`` by default)."""
    return build_parser().parse_args(_glue_words(sys.argv[1:] if argv is None else argv))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGINT, SIGTERM, SIGHUP, SIGUSR1/2 stop the command as one exception: its finally
    # blocks stop workers and builds, files are written whole or not at all
    guard = SignalGuard().install()
    try:
        return int(args.func(args))
    except Stopped as exc:
        print(f"llmperf {args.command}: {_stopped(exc.name)}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:  # SIGINT under a handler someone else installed
        print(f"llmperf {args.command}: {_stopped('SIGINT')}", file=sys.stderr)
        return exit_status(signal.SIGINT)
    except LLMPerfError as exc:
        print(f"llmperf: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # pragma: no cover - e.g. piped into head
        return 0
    finally:
        guard.restore()


def _stopped(name: str) -> str:
    return (
        f"stopped by {name}; what had finished is kept and no file was half-written "
        "(run it again to finish)"
    )


if __name__ == "__main__":
    sys.exit(main())
