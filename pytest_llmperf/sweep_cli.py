"""``llmperf merge``: join the sweep results (JSONL) of several shards into one file.

    llmperf merge shard1.jsonl shard2.jsonl -o all.jsonl

Records with the same id and fingerprint key are duplicates: the latest is kept. An id
measured under different fingerprint keys is a conflict: every record is kept, and the
command exits 1 (nothing written) unless ``--allow-conflicts``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from pytest_llmperf.errors import UsageError
from pytest_llmperf.sweep import SweepWarning, merge_report, read_results


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


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in records:
            fh.write(json.dumps(row, separators=(",", ":")) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def cmd_merge(args: argparse.Namespace) -> int:
    inputs = [Path(p) for p in args.inputs]
    missing = [str(p) for p in inputs if not p.is_file()]
    if missing:
        raise UsageError(f"merge: no such file: {', '.join(missing)}")
    seen: set[str] = set()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SweepWarning)
        counts = [(p, len(read_results(p))) for p in inputs]
        result = merge_report(inputs)
    for w in caught:
        if str(w.message) not in seen:
            seen.add(str(w.message))
            print(f"warning: {w.message}", file=sys.stderr)
    for path, n in counts:
        print(f"{path}: {n} record(s)")
    print(
        f"merged: {len(result.records)} record(s), {result.duplicates} duplicate(s) dropped, "
        f"{len(result.conflicts)} conflict(s)"
    )
    for line in result.conflicts:
        print(f"conflict: {line}")
    out = Path(args.output)
    if result.conflicts and not args.allow_conflicts:
        print(
            f"{out} NOT written: some points were measured under different fingerprint keys "
            "(another machine or model); re-run with --allow-conflicts "
            "to keep every record",
            file=sys.stderr,
        )
        return 1
    _write_jsonl(out, result.records)
    print(f"wrote {out}")
    return 0
