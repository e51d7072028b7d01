"""``llmperf baseline list|show|prune``: the baseline store of a machine, inspected and
cleaned; and the store a path names, which ``compare`` and ``history`` read too.

    llmperf baseline list                          # this machine's entries under baselines/
    llmperf baseline show 'perf_tests/test_x.py::test_tg[tiny]' --file baselines/box.json
    llmperf baseline prune --keep-from ids.txt     # ids: pytest --collect-only -q; --yes
"""

from __future__ import annotations

import argparse
import datetime as _dt
from pathlib import Path
from typing import Any

from pytest_llmperf import baseline as baseline_mod
from pytest_llmperf import options
from pytest_llmperf.errors import UsageError
from pytest_llmperf.machine.registry import load_registry
from pytest_llmperf.model.metrics import fmt_value
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.verdict import gate, stats, thresholds


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


def add_store_arguments(p: argparse.ArgumentParser) -> None:
    """``--dir``, ``--machine``, ``--file``: the store a command reads (:func:`store_of`)."""
    p.add_argument("--dir", default="baselines", help="baseline directory")
    p.add_argument("--machine", default=None, help="machine id (default: this machine)")
    p.add_argument("--file", default=None, help="a baseline file (instead of dir+machine)")


def store_of(args: argparse.Namespace) -> baseline_mod.BaselineStore:
    """The store :func:`add_store_arguments`' arguments name."""
    if args.file:
        return open_store(Path(args.file))
    return open_store(Path(args.dir), args.machine)


def add_parser(sub: Any) -> None:
    b = sub.add_parser("baseline", help="inspect and clean the baseline store")
    bsub = b.add_subparsers(dest="baseline_command", required=True)
    for name, helptext in (
        ("list", "list stored entries"),
        ("show", "show one test's entries"),
        ("prune", "remove entries"),
    ):
        p = bsub.add_parser(name, help=helptext)
        add_store_arguments(p)
        p.set_defaults(func=run)
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


def run(args: argparse.Namespace) -> int:
    """``list``, ``show`` or ``prune``, as the command line says."""
    return {"list": _list, "show": _show, "prune": _prune}[args.baseline_command](args)


def _list(args: argparse.Namespace) -> int:
    store = store_of(args)
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


def _show(args: argparse.Namespace) -> int:

    store = store_of(args)
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


def _prune(args: argparse.Namespace) -> int:
    store = store_of(args)
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
