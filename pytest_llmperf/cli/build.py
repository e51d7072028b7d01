"""``llmperf build``: build a named llama.cpp variant into the cache, reused by key;
``--list`` shows each cached build with its kind and all its names.

    llmperf build floor --version 0.3.16      # a release in its own environment
    llmperf build portable --cmake-args "-DGGML_NATIVE=OFF"
    llmperf build main --source ~/src/llama.cpp
    llmperf build slow --source ~/src/llama.cpp --llama-bench
    llmperf build --list

A release (``--version``; the pinned one when nothing else is given) is built from
source into a virtual environment of its own, and runs its own bindings: any two
releases run side by side. ``--source``, and ``--cmake-args`` without ``--version``,
build a library folder that the installed llama-cpp-python loads (its C API must be the
installed release's).

A name is an alias: building the same arguments under another name adds that name; a
name given again for other arguments moves to the new build (see
:mod:`pytest_llmperf.machine.builds`). Each step runs in its own process group, which a
stop signal stops.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pytest_llmperf.errors import UsageError
from pytest_llmperf.machine import builds


def add_parser(sub: Any) -> None:
    b = sub.add_parser(
        "build",
        help="build a named llama.cpp variant into the cache, or list them",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument("name", nargs="?", help="the build's name (used as build=NAME)")
    b.add_argument("--list", action="store_true", help="list cached builds")
    b.add_argument(
        "--version",
        default=None,
        help="a llama-cpp-python release, in an environment of its own (default: the pinned "
        f"{builds.PINNED_VERSION})",
    )
    b.add_argument("--cmake-args", default="", help="extra CMake arguments")
    b.add_argument("--source", default="", help="a local llama.cpp source tree instead")
    b.add_argument(
        "--llama-bench",
        action="store_true",
        help="build the llama-bench binary (measured as its own backend) instead of the library",
    )
    b.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list:
        cached = builds.cached_build_list()
        if not cached:
            print("no cached builds (llmperf build NAME makes one)")
        for info in sorted(cached, key=lambda i: (not i.names, sorted(i.names), i.key)):
            names = ", ".join(info.names) or f"(no name; build {info.key})"
            print(f"{names}: {info.kind} {info.lib}  ({info.what}; {info.cmake_args})")
        return 0
    if not args.name:
        raise UsageError("build: name the build (llmperf build NAME), or --list")
    if args.llama_bench:
        kind = "llama_bench"
    elif args.source or (args.cmake_args and args.version is None):
        kind = "lib"
    else:
        kind = "release"
    info = builds.build(
        args.name,
        version=args.version or builds.PINNED_VERSION,
        cmake_args=args.cmake_args,
        source=args.source,
        kind=kind,
        log=sys.stderr,
    )
    state = "reused" if info.reused else "built"
    others = [n for n in info.names if n != info.name]
    also = f" (also named {', '.join(others)})" if others else ""
    print(f"{state} build {info.name}{also}: {info.lib}", file=sys.stderr)
    if info.moved_from:
        print(
            f"the name {info.name} now names this build; it was taken from {info.moved_from}",
            file=sys.stderr,
        )
    key = {"llama_bench": "llama_bench", "release": "python"}.get(info.kind, "lib")
    print(
        f"use it as build={info.name!r}, or in llmperf.yaml:  "
        f"builds: {{{info.name}: {{{key}: {info.lib}}}}}",
        file=sys.stderr,
    )
    print(info.lib)
    return 0
