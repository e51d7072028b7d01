"""The ``llmperf`` subcommands beyond tiny-model: compare, report, baseline, merge.

``compare`` gives the same verdicts and table as the plugin (same thresholds, same
statistics) and exits 0 or 1 like a test run.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
from pathlib import Path
from typing import Any

from pytest_llmperf import baseline as baseline_mod
from pytest_llmperf import gate, judge, thresholds
from pytest_llmperf.errors import UsageError
from pytest_llmperf.metrics import fmt_value
from pytest_llmperf.registry import load_registry
from pytest_llmperf.results import Measurement, Verdict, worst


def load_measurements(path: str) -> dict[str, dict[str, Measurement]]:
    """nodeid -> workload name -> Measurement, from results.json or a baseline file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc})") from None
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    out: dict[str, dict[str, Measurement]] = {}
    if isinstance(data, dict) and "entries" in data:
        doc = baseline_mod.parse_document(raw, p)
        for nodeid, by_key in doc["entries"].items():
            # several fingerprints for one test: the most recently accepted one
            entry = max(by_key.values(), key=lambda e: str(e.get("accepted_at", "")))
            out[nodeid] = {
                name: Measurement.from_dict(m) for name, m in entry.get("measurements", {}).items()
            }
        return out
    from pytest_llmperf.report import load_results

    for rep in load_results(p):
        out[rep.nodeid] = {m.workload.name: m for m in rep.measurements}
    return out


def _cmd_compare(args: argparse.Namespace) -> int:
    base = load_measurements(args.baseline)
    cur = load_measurements(args.current)
    project = load_registry(Path.cwd(), args.config)
    config = thresholds.rules_from(project.rule_sources)
    verdicts: list[Verdict] = []
    missing = sorted(set(base) - set(cur))
    for nodeid in sorted(cur):
        if nodeid not in base:
            print(f"{nodeid}: new (not in {args.baseline})")
            verdicts.append("new")
            continue
        by_workload = judge.compare(
            list(cur[nodeid].values()),
            base[nodeid],
            config,
            alpha=args.alpha,
            fail_on_improvement=args.fail_on_improvement,
        )
        verdict = worst(c.verdict for c in judge.flat(by_workload))
        verdicts.append(verdict)
        print(f"{nodeid}: {verdict}")
        if verdict != "pass" or args.verbose:
            for name, comps in by_workload.items():
                print(f"  [{name}]")
                for line in gate.format_table(comps):
                    print("  " + line)
    for nodeid in missing:
        print(f"{nodeid}: only in {args.baseline}")
    overall = worst(verdicts) if verdicts else "pass"
    failed = overall == "regressed" or (args.fail_on_improvement and overall == "improved")
    print(f"{len(verdicts)} compared: {overall}" + (f"; {gate.REMEDY}" if failed else ""))
    return 1 if failed else 0


def _cmd_report(args: argparse.Namespace) -> int:
    from pytest_llmperf.report import load_results, write_report

    reports = load_results(args.results)
    baseline_reports = load_results(args.baseline) if args.baseline else None
    written = write_report(reports, Path(args.output), baseline_reports=baseline_reports)
    for path in written:
        print(path)
    return 0


def _store(args: argparse.Namespace) -> baseline_mod.BaselineStore:
    from pytest_llmperf.fingerprint import machine_id

    directory = Path(args.dir)
    if args.file:
        path = Path(args.file)
        directory, mid = path.parent, path.name.removesuffix(".json")
    else:
        mid = args.machine or machine_id()
    store = baseline_mod.BaselineStore(directory, mid)
    store.load()
    return store


def _cmd_baseline_list(args: argparse.Namespace) -> int:
    store = _store(args)
    rows = store.list_entries()
    print(f"{store.path}: {len(rows)} entries")
    for e in rows:
        print(
            f"  {e.nodeid}  [{e.key}]  {e.model}  {','.join(e.workloads)}  "
            f"accepted {e.accepted_at}" + (f" at {e.git_commit[:10]}" if e.git_commit else "")
        )
    return 0


def _cmd_baseline_show(args: argparse.Namespace) -> int:
    store = _store(args)
    entries = store.entries_for(args.nodeid)
    if not entries:
        raise UsageError(
            f"{store.path}: no entry for {args.nodeid!r}; `llmperf baseline list` "
            "shows the stored node ids"
        )
    for key, entry in sorted(entries.items()):
        print(
            f"{args.nodeid} [{key}] accepted {entry.get('accepted_at')} "
            f"commit {entry.get('git_commit')}"
        )
        for name, mdict in sorted(entry.get("measurements", {}).items()):
            m = Measurement.from_dict(mdict)
            print(f"  {name}: {m.params.to_args() or 'default params'}")
            for metric, s in sorted(m.summaries().items()):
                unit = mdict.get("metrics", {}).get(metric, {}).get("unit", "")
                print(
                    f"    {metric:<14} median {fmt_value(s.median, unit):>14}  "
                    f"stddev {fmt_value(s.stddev):>9}  n={s.n}"
                )
    return 0


def _cmd_baseline_prune(args: argparse.Namespace) -> int:
    store = _store(args)
    older = _dt.timedelta(days=args.older_than) if args.older_than is not None else None
    entries: list[tuple[str, str]] | None = None
    if args.nodeid:
        entries = [(n, k) for n in args.nodeid for k in store.entries_for(n)]
    if older is None and entries is None and not args.keep_from:
        raise UsageError(
            "baseline prune: say what to remove: --older-than DAYS, --nodeid ID "
            "(repeatable), or --keep-from FILE (node ids to keep, one a line, e.g. "
            "from `pytest --collect-only -q`)"
        )
    keep: list[str] | None = None
    if args.keep_from:
        keep = [
            line.strip()
            for line in Path(args.keep_from).read_text().splitlines()
            if line.strip() and "::" in line
        ]
    removed = store.prune(
        keep_nodeids=keep, older_than=older, entries=entries, dry_run=args.dry_run
    )
    verb = "would remove" if args.dry_run else "removed"
    print(f"{store.path}: {verb} {len(removed)} entries")
    for nodeid, key in removed:
        print(f"  {nodeid} [{key}]")
    return 0


def add_subcommands(sub: Any) -> None:
    c = sub.add_parser(
        "compare", help="compare two result or baseline files (exit 1 on regression)"
    )
    c.add_argument("baseline", help="results.json or baselines/<machine>.json: the reference")
    c.add_argument("current", help="results.json or baseline file: the new numbers")
    c.add_argument("--alpha", type=float, default=0.05)
    c.add_argument("--fail-on-improvement", action="store_true")
    c.add_argument(
        "--config",
        default=None,
        help="llmperf.yaml with thresholds (default: "
        "llmperf.yaml / pyproject.toml in the current directory)",
    )
    c.add_argument("-v", "--verbose", action="store_true", help="tables for passing tests too")
    c.set_defaults(func=_cmd_compare)

    r = sub.add_parser("report", help="re-render a report from results.json")
    r.add_argument("results")
    r.add_argument("-o", "--output", required=True, help="output directory")
    r.add_argument("--baseline", default=None, help="a results.json to draw as the baseline")
    r.set_defaults(func=_cmd_report)

    b = sub.add_parser("baseline", help="inspect and clean the baseline store")
    bsub = b.add_subparsers(dest="baseline_command", required=True)
    for name, func, helptext in (
        ("list", _cmd_baseline_list, "list stored entries"),
        ("show", _cmd_baseline_show, "show one test's entries"),
        ("prune", _cmd_baseline_prune, "remove entries"),
    ):
        p = bsub.add_parser(name, help=helptext)
        p.add_argument("--dir", default="baselines", help="baseline directory")
        p.add_argument("--machine", default=None, help="machine id (default: this machine)")
        p.add_argument("--file", default=None, help="a baseline file (instead of dir+machine)")
        p.set_defaults(func=func)
        if name == "show":
            p.add_argument("nodeid")
        if name == "prune":
            p.add_argument("--older-than", type=float, default=None, metavar="DAYS")
            p.add_argument("--nodeid", action="append", default=None)
            p.add_argument("--keep-from", default=None, metavar="FILE")
            p.add_argument("--dry-run", action="store_true")
    try:
        from pytest_llmperf.sweep_cli import add_merge_subcommand
    except ImportError:  # pragma: no cover - sweep CLI not installed
        return
    add_merge_subcommand(sub)
