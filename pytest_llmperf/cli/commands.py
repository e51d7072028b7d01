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
from pytest_llmperf import options
from pytest_llmperf.errors import UsageError
from pytest_llmperf.machine.registry import load_registry
from pytest_llmperf.model.metrics import fmt_value
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.results import BaselineValues, Measurement, Verdict, worst
from pytest_llmperf.model.workloads import Workload
from pytest_llmperf.verdict import gate, judge, stats, table, thresholds


def open_store(path: Path, machine: str | None = None) -> baseline_mod.BaselineStore:
    """The store a path names: a machine file (``baselines/<id>.json``, either schema), a
    machine folder (``baselines/<id>/``), or a baseline directory with ``machine``."""
    from pytest_llmperf.machine.fingerprint import machine_id

    if path.is_dir() and machine is None and (path.parent / f"{path.name}.json").is_file():
        directory, mid = path.parent, path.name
    elif path.is_dir():
        directory, mid = path, machine or machine_id()
    elif path.suffix == ".json":
        directory, mid = path.parent, path.name.removesuffix(".json")
    else:
        raise UsageError(
            f"{path}: not a baseline file or folder; name baselines/<machine>.json, "
            "baselines/<machine>/ or a results.json"
        )
    return baseline_mod.BaselineStore(directory, mid).load()


def _latest_measurement(nodeid: str, wl: str, ref: BaselineValues) -> Measurement:
    return Measurement(
        model=nodeid,
        model_path="",
        params=LoadParams(),
        workload=Workload.parse(wl),
        samples=[],
        values={k: list(v) for k, v in ref.sessions[-1].items()},
        absent=dict(ref.absent),
    )


def load_references(path: str) -> dict[str, dict[str, BaselineValues]]:
    """nodeid -> workload -> BaselineValues, from results.json or baselines (a machine file or
    folder; several fingerprints for one test: the most recently accepted)."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{path}: no such file or folder")
    if p.is_file() and p.suffix == ".json":
        try:
            head = json.loads(p.read_bytes())
        except (OSError, ValueError):
            head = None
        if isinstance(head, dict) and "tests" in head:
            from pytest_llmperf.outputs import load_results

            return {
                rep.nodeid: {m.workload.name: BaselineValues.of(m) for m in rep.measurements}
                for rep in load_results(p)
            }
    store = open_store(p)
    out: dict[str, dict[str, BaselineValues]] = {}
    for nodeid in sorted({info.nodeid for info in store.list_entries()}):
        entry = max(store.entries_for(nodeid).values(), key=lambda e: e.accepted_at)
        out[nodeid] = entry.references()
    return out


def _cmd_compare(args: argparse.Namespace) -> int:
    base = load_references(args.baseline)
    cur = {
        nodeid: {wl: _latest_measurement(nodeid, wl, ref) for wl, ref in refs.items()}
        for nodeid, refs in load_references(args.current).items()
    }
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
                for line in table.format_table(comps):
                    print("  " + line)
    for nodeid in missing:
        print(f"{nodeid}: only in {args.baseline}")
    overall = worst(verdicts) if verdicts else "pass"
    failed = overall == "regressed" or (args.fail_on_improvement and overall == "improved")
    print(f"{len(verdicts)} compared: {overall}" + (f"; {table.REMEDY}" if failed else ""))
    return 1 if failed else 0


def _cmd_report(args: argparse.Namespace) -> int:
    from pytest_llmperf.outputs import load_results, write_report
    from pytest_llmperf.outputs.files import check_folder

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UsageError(f"report -o {out}: is a file; name a folder for the report files")
    check_folder(out, f"report -o {out}")
    reports = load_results(args.results)
    baseline_reports = load_results(args.baseline) if args.baseline else None
    try:
        written = write_report(
            reports, out, baseline_reports=baseline_reports, what=f"report -o {out}"
        )
    except OSError as exc:
        raise UsageError(f"report -o {out}: cannot write there ({exc.strerror or exc})") from None
    for path in written:
        print(path)
    return 0


def _store(args: argparse.Namespace) -> baseline_mod.BaselineStore:
    if args.file:
        return open_store(Path(args.file))
    return open_store(Path(args.dir), args.machine)


def _cmd_baseline_list(args: argparse.Namespace) -> int:
    store = _store(args)
    rows = store.list_entries()
    print(f"{store.entries_dir}: {len(rows)} entries")
    for e in rows:
        print(
            f"  {e.nodeid}  [{e.key}]  {e.model}  {','.join(e.workloads)}  "
            f"{e.sessions} session(s), latest {e.accepted_at}"
            + (f" at {e.git_commit[:10]}" if e.git_commit else "")
        )
    for path, exc in sorted(store.broken_files.items()):
        print(f"  unreadable: {path}: {exc}")
    return 0


def _cmd_baseline_show(args: argparse.Namespace) -> int:

    store = _store(args)
    entries = store.entries_for(args.nodeid)
    if not entries:
        raise UsageError(
            f"{store.entries_dir}: no entry for {args.nodeid!r}; `llmperf baseline list` "
            "shows the stored node ids"
        )
    rules = thresholds.rules_from(load_registry(Path.cwd(), None).rule_sources)
    for key, entry in sorted(entries.items()):
        print(f"{args.nodeid} [{key}] {len(entry.sessions)} accepted session(s)")
        for s in entry.sessions:
            state = "" if s.usable else f"  SKIPPED: {s.problem}"
            print(f"  {s.accepted_at}  commit {s.git_commit or '-'}{state}")
        params = entry.fingerprint.get("params", {})
        for wl, ref in sorted(entry.references().items()):
            print(f"  {wl}: {LoadParams.from_dict(params).to_args() or 'default params'}")
            for metric, per_session in sorted((m, ref.per_session(m)) for m in ref.pooled()):
                medians = ", ".join(fmt_value(stats.median(v)) for v in per_session)
                drift = gate.history_drift(
                    metric, per_session, len(per_session[-1]), rules.threshold(metric)
                )
                what = ""
                if rules.threshold(metric) is not None:
                    what = (
                        f"  drift ±{drift.spread_pct:.1f}%"
                        if drift.spread_pct is not None
                        else "  drift unknown"
                    ) + f"  detects >= {drift.detectable_pct:.1f}%"
                print(f"    {metric:<14} medians {medians}{what}")
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    from pytest_llmperf.outputs import history
    from pytest_llmperf.outputs.files import HISTORY_FILES, HISTORY_PLOT_NAME, check_folder

    if args.output:  # refused before anything is read or written
        check_folder(Path(args.output), "history -o", HISTORY_FILES, HISTORY_PLOT_NAME)
    store = _store(args)
    nodeids = sorted({e.nodeid for e in store.list_entries() if args.test in e.nodeid})
    if not nodeids:
        raise UsageError(
            f"{store.entries_dir}: no entry matches {args.test!r}; `llmperf baseline list` "
            "shows the stored node ids"
        )
    entries = [e for n in nodeids for e in store.entries_for(n).values()]
    for line in history.lines(entries):
        print(line)
    if args.output:
        for path in history.write(entries, Path(args.output), what="history -o"):
            print(path)
    return 0


def _keep_list(path: str) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(
            f"baseline prune --keep-from {path}: cannot read it ({exc.strerror or exc}); "
            "write it with `pytest --collect-only -q > FILE`"
        ) from None
    keep = [line.strip() for line in text.splitlines() if "::" in line.strip()]
    if not keep:
        raise UsageError(
            f"baseline prune --keep-from {path}: holds no test node ids (lines with '::'): "
            "was the collection that wrote it successful? Nothing was removed"
        )
    return keep


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
    keep = _keep_list(args.keep_from) if args.keep_from else None
    doomed = store.prune(keep_nodeids=keep, older_than=older, entries=entries, dry_run=True)
    total = len(store.list_entries())
    if doomed and len(doomed) == total and not args.all:
        raise UsageError(
            f"baseline prune would remove every entry ({total}) of {store.entries_dir}; "
            "add --all if that is what you want. Nothing was removed"
        )
    apply = args.yes and not args.dry_run
    removed = store.prune(keep_nodeids=keep, older_than=older, entries=entries) if apply else doomed
    print(f"{store.entries_dir}: {'removed' if apply else 'would remove'} {len(removed)} entries")
    for nodeid, key in removed:
        print(f"  {nodeid} [{key}]")
    if removed and not apply:
        print("nothing removed: run again with --yes to remove them")
    return 0


def add_subcommands(sub: Any) -> None:
    c = sub.add_parser(
        "compare", help="compare two result or baseline files (exit 1 on regression)"
    )
    c.add_argument("baseline", help="results.json or baselines/<machine>.json: the reference")
    c.add_argument("current", help="results.json or baseline file: the new numbers")
    c.add_argument("--alpha", type=options.probability, default=0.05)
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
            p.add_argument("--older-than", type=options.non_negative, default=None, metavar="DAYS")
            p.add_argument("--nodeid", action="append", default=None)
            p.add_argument(
                "--keep-from",
                default=None,
                metavar="FILE",
                help="keep only these node ids (one a line: `pytest --collect-only -q`)",
            )
            p.add_argument(
                "--yes", action="store_true", help="remove them (default: show what would go)"
            )
            p.add_argument("--all", action="store_true", help="allow removing every entry")
            p.add_argument("--dry-run", action="store_true", help="show only (the default)")
    h = sub.add_parser(
        "history",
        help="each metric's accepted session medians over time, and where they stepped",
    )
    h.add_argument("test", nargs="?", default="", help="node ids containing this (default: all)")
    h.add_argument("--dir", default="baselines", help="baseline directory")
    h.add_argument("--machine", default=None, help="machine id (default: this machine)")
    h.add_argument("--file", default=None, help="a machine's baseline file instead")
    h.add_argument(
        "-o", "--output", default=None, help="write history.md, history.html and plots here"
    )
    h.set_defaults(func=_cmd_history)

    from pytest_llmperf.cli.merge import add_merge_subcommand

    add_merge_subcommand(sub)
