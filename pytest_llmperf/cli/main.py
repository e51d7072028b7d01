"""The ``llmperf`` command.

llmperf tiny-model --variant moe-mxfp4     # build (or reuse) a tiny model, print its path
llmperf tiny-model --list
llmperf compare A B                        # results or baseline files: table, exit 0/1
llmperf report RESULTS -o DIR              # re-render a report from results.json
llmperf baseline list|show|prune           # inspect and clean the baseline store
llmperf merge SHARD.jsonl... -o OUT        # join sweep results of several shards
llmperf ab --model M --build-b main -n 128 # is B slower than A? paired rounds, exit 0/1
llmperf build NAME --cmake-args "..."      # build a named llama.cpp variant; --list
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pytest_llmperf.errors import LLMPerfError
from pytest_llmperf.signals import SignalGuard, Stopped, exit_status


def _cmd_tiny(args: argparse.Namespace) -> int:
    from pytest_llmperf.machine import tiny

    if args.list:
        for name in tiny.variant_names():
            print(name)
        return 0
    if args.prune:
        stale = tiny.stale_files(args.cache_dir)
        for path in stale:
            path.unlink()
            print(f"removed {path}")
        print(f"{len(stale)} stale built-in tiny model file(s) removed", file=sys.stderr)
        return 0
    family, spec, quant = tiny.parse_variant(args.variant)
    overrides = {
        k: getattr(args, k)
        for k in ("n_layer", "n_embd", "n_ff", "n_expert", "n_vocab", "seed")
        if getattr(args, k) is not None
    }
    if overrides:
        import dataclasses

        spec = dataclasses.replace(spec, **overrides)
    start = time.perf_counter()
    info = tiny.ensure_model(spec, quant, args.cache_dir, family=family)
    size_mb = info.path.stat().st_size / 1e6
    state = f"built in {time.perf_counter() - start:.2f} s" if info.built else "cached"
    print(f"{family}-{quant}: {state}, {size_mb:.1f} MB", file=sys.stderr)
    print(info.path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmperf", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("tiny-model", help="build or reuse a built-in tiny GGUF model")
    t.add_argument(
        "--variant",
        default="moe-mxfp4",
        help="<dense|moe>-<f16|q8_0|q4_k_m|mxfp4> (default moe-mxfp4)",
    )
    t.add_argument("--list", action="store_true", help="list the built-in variants")
    t.add_argument(
        "--prune",
        action="store_true",
        help="remove cached built-in variants of older specs or generator versions",
    )
    t.add_argument("--cache-dir", default=None, help="cache directory (env LLMPERF_CACHE_DIR)")
    for name in ("n_layer", "n_embd", "n_ff", "n_expert", "n_vocab", "seed"):
        t.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=int,
            default=None,
            help=f"override the spec's {name}",
        )
    t.set_defaults(func=_cmd_tiny)

    from pytest_llmperf.cli import ab, commands

    commands.add_subcommands(sub)
    ab.add_subcommands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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


__all__ = ["Path", "main"]
