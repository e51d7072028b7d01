"""``llmperf history [TEST]``: each metric's accepted session medians over time and where
they stepped; ``-o DIR`` writes the same as history.md, history.html and a plot per test.

    llmperf history test_decode
    llmperf history --file baselines/box.json -o history/
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pytest_llmperf.cli.baseline import add_store_arguments, store_of


def add_parser(sub: Any) -> None:
    h = sub.add_parser(
        "history",
        help="each metric's accepted session medians over time, and where they stepped",
    )
    h.add_argument("test", nargs="?", default="", help="node ids containing this (default: all)")
    add_store_arguments(h)
    h.add_argument(
        "-o", "--output", default=None, help="write history.md, history.html and plots here"
    )
    h.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pytest_llmperf.outputs import history
    from pytest_llmperf.outputs.files import HISTORY_FILES, HISTORY_PLOT_NAME, check_folder

    if args.output:  # refused before anything is read or written
        check_folder(Path(args.output), "history -o", HISTORY_FILES, HISTORY_PLOT_NAME)
    stored = store_of(args)
    store = stored.store
    nodeids = stored.nodeids(args.test)
    if not nodeids:
        raise stored.nothing_matches(args.test, "history")
    entries = [e for n in nodeids for e in store.entries_for(n).values()]
    for line in history.lines(entries):
        print(line)
    if args.output:
        for path in history.write(entries, Path(args.output), what="history -o"):
            print(path)
    return 0
