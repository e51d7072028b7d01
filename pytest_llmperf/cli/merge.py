"""``llmperf merge``: join the sweep results (JSONL) of several shards into one file, and
optionally rank each sweep's explore records for the deep phase.

    llmperf merge shard1.jsonl shard2.jsonl -o all.jsonl [--ranking 'rank-{sweep}.yaml']

Records of the same sweep, id and fingerprint key are duplicates: the latest is kept.
Records of different sweeps are different records, even under one id (a note says so). A
point measured under different fingerprint keys is a conflict: every record is kept, and
the command exits 1 (nothing written) unless ``--allow-conflicts``. A path problem, or an
input that is not sweep results (a baseline, a results.json), is one error line naming
the path and the fix (exit 2), and nothing is written; inputs without a single record
exit 3, nothing written.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_llmperf.errors import UsageError
from pytest_llmperf.fileio import write_atomic
from pytest_llmperf.model import ownership
from pytest_llmperf.model.metrics import METRICS
from pytest_llmperf.options import int_at_least
from pytest_llmperf.sweep.definition import Sweep, load_sweeps
from pytest_llmperf.sweep.files import check_output, write_error
from pytest_llmperf.sweep.ranking import (
    DEFAULT_TOP_K,
    RANKING_SUFFIXES,
    Ranked,
    explore_records,
    rank_records,
    ranking_lines,
    write_ranking,
)
from pytest_llmperf.sweep.records import merge_records, read_quietly

#: the exit status when the inputs hold no record (nothing merged, nothing written)
NOTHING_MERGED = 3


def add_parser(sub: Any) -> None:
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
    p.add_argument(
        "--ranking",
        default=None,
        metavar="FILE",
        help="also rank each sweep's explore records and write the ranking the deep phase "
        "reads (--perf-ranking): .yaml, .yml or .json; '{sweep}' in the name is replaced by "
        "the sweep name (needed when the records hold several sweeps)",
    )
    p.add_argument(
        "--sweep-file",
        default=None,
        metavar="SWEEPS.yaml",
        help="with --ranking: the sweeps' definitions; their deep.metric, deep.workload and "
        "deep.top_k choose the ranking, as in the explore run (default: tg_tps, top 3)",
    )
    p.add_argument("--metric", default=None, help="with --ranking: rank by this metric")
    p.add_argument(
        "--top-k", type=int_at_least(1), default=None, metavar="K", help="with --ranking: keep K"
    )
    p.set_defaults(func=run)


def _check_ranking_args(args: argparse.Namespace) -> None:
    if args.ranking is None:
        if args.sweep_file or args.metric or args.top_k:
            raise UsageError("merge: --sweep-file, --metric and --top-k go with --ranking FILE")
        return
    if Path(args.ranking.replace("{sweep}", "x")).suffix.lower() not in RANKING_SUFFIXES:
        raise UsageError(
            f"merge --ranking {args.ranking}: a ranking file ends in .yaml, .yml or .json"
        )
    per_sweep = "{sweep}" in args.ranking
    target = Path(args.ranking.replace("{sweep}", "x"))
    check_output(target, "merge --ranking", "ranking.yaml", parents_only=per_sweep)
    if not per_sweep:
        ownership.check(target, "ranking", "merge --ranking")
    if args.metric is not None and args.metric not in METRICS:
        raise UsageError(
            f"merge --metric {args.metric}: unknown metric; known: {', '.join(sorted(METRICS))}"
        )


def _rankings(
    args: argparse.Namespace, records: Sequence[Mapping[str, Any]]
) -> list[tuple[str, Path, list[Ranked]]]:
    """Each sweep's ranking: (sweep, file, ranked best first)."""
    names = sorted({str(r.get("sweep") or "") for r in records})
    if len(names) > 1 and "{sweep}" not in args.ranking:
        raise UsageError(
            f"merge --ranking {args.ranking}: the records hold sweeps {', '.join(names)}; put "
            "'{sweep}' in the name to write one file per sweep"
        )
    defined: Mapping[str, Sweep] = load_sweeps(args.sweep_file) if args.sweep_file else {}
    out: list[tuple[str, Path, list[Ranked]]] = []
    for name in names:
        sweep = defined.get(name)
        if args.sweep_file and sweep is None:
            raise UsageError(
                f"merge --sweep-file {args.sweep_file}: no sweep {name!r} (the records name "
                f"it); the file has: {', '.join(defined)}"
            )
        mine = [r for r in records if str(r.get("sweep") or "") == name]
        ids = {str(r["id"]) for r in mine}
        known = sweep.find_points(ids) if sweep is not None else ids
        spec = sweep.deep if sweep is not None else None
        top_k = args.top_k or (spec.top_k if spec is not None else DEFAULT_TOP_K)
        ranked = rank_records(explore_records(mine, name, known), spec, top_k, args.metric)
        path = Path(args.ranking.replace("{sweep}", name or "sweep"))
        out.append((name, path, ranked))
    return out


def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    check_output(out, "merge -o", "merged.jsonl")
    ownership.check(out, "sweep-results", "merge -o")
    _check_ranking_args(args)
    inputs = [Path(p) for p in args.inputs]
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        raise UsageError(f"merge: no such file: {', '.join(missing)}")
    for path in inputs:  # a baseline, a results.json, a ranking: refused before any is read
        ownership.expect(path, ["sweep-results"], "merge")
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
    if not result.records:  # merging nothing is never a success
        print(
            f"merge: nothing to merge: {', '.join(name for name, _ in sources)} hold(s) no "
            f"result record; {out} NOT written",
            file=sys.stderr,
        )
        return NOTHING_MERGED
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
    rankings = _rankings(args, result.records) if args.ranking is not None else []
    for _name, path, ranked in rankings:  # every file refused before any is written
        if ranked:
            ownership.check(path, "ranking", "merge --ranking")
    text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in result.records)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, text)
    except OSError as exc:
        raise write_error(out, exc, "merge -o", "merged.jsonl") from None
    print(f"wrote {out}")
    for name, path, ranked in rankings:
        if not ranked:
            print(f"ranking of sweep {name} NOT written: no successful explore result to rank")
            continue
        write_ranking(path, ranked)
        for line in ranking_lines(name, ranked, path):
            print(line)
    return 0
