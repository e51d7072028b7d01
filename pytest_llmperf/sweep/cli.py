"""``llmperf merge``: join the sweep results (JSONL) of several shards into one file.

    llmperf merge shard1.jsonl shard2.jsonl -o all.jsonl

Records of the same sweep, id and fingerprint key are duplicates: the latest is kept.
Records of different sweeps are different records, even under one id (a note says so). A
point measured under different fingerprint keys is a conflict: every record is kept, and
the command exits 1 (nothing written) unless ``--allow-conflicts``. A path problem is one
error line naming the path and the fix (exit 2), and nothing is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pytest_llmperf.errors import UsageError
from pytest_llmperf.fileio import write_atomic
from pytest_llmperf.sweep.files import check_output, write_error
from pytest_llmperf.sweep.stream import merge_records, read_quietly


def add_merge_subcommand(sub: Any) -> None:
    """Register ``merge`` on the ``llmperf`` command's argparse subparsers."""
    p = sub.add_parser(
        "merge",
        help="join the sweep results (JSONL) of several shards",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="RESULTS.jsonl", help="shard result files")
    p.add_argument("-o", "--output", required=True, metavar="OUT.jsonl", help="merged file")
    p.add_argument(
        "--allow-conflicts",
        action="store_true",
        help="write the merged file even when an id was measured under different "
        "fingerprint keys (every record is kept)",
    )
    p.set_defaults(func=cmd_merge)


def cmd_merge(args: argparse.Namespace) -> int:
    out = Path(args.output)
    check_output(out, "merge -o", "merged.jsonl")
    inputs = [Path(p) for p in args.inputs]
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        raise UsageError(f"merge: no such file: {', '.join(missing)}")
    sources: list[tuple[str, list[dict[str, Any]]]] = []
    seen: set[str] = set()
    for path in inputs:
        rows, warns = read_quietly(path)
        sources.append((str(path), rows))
        for line in warns:
            if line not in seen:
                seen.add(line)
                print(f"warning: {line}", file=sys.stderr)
    result = merge_records(sources)
    for name, rows in sources:
        print(f"{name}: {len(rows)} record(s)")
    print(
        f"merged: {len(result.records)} record(s), {result.duplicates} duplicate(s) dropped, "
        f"{len(result.conflicts)} conflict(s)"
    )
    for line in result.shared:
        print(f"note: {line}")
    for line in result.conflicts:
        print(f"conflict: {line}")
    if result.conflicts and not args.allow_conflicts:
        print(
            f"{out} NOT written: some points were measured under different fingerprint keys "
            "(another machine or model); re-run with --allow-conflicts "
            "to keep every record",
            file=sys.stderr,
        )
        return 1
    text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in result.records)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, text)
    except OSError as exc:
        raise write_error(out, exc, "merge -o", "merged.jsonl") from None
    print(f"wrote {out}")
    return 0
