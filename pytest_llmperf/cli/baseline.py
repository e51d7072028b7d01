"""``llmperf baseline list|show|prune``: the baseline store of a machine, inspected and
cleaned; and the store a path names, which ``compare`` and ``history`` read too.

    llmperf baseline list                          # this machine's entries under baselines/
    llmperf baseline show 'perf_tests/test_x.py::test_tg[tiny]' --file baselines/box.json
    llmperf baseline prune --keep-from ids.txt     # ids: pytest --collect-only -q; --yes
"""

from __future__ import annotations

import argparse
import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_llmperf import baseline as baseline_mod
from pytest_llmperf import options
from pytest_llmperf.errors import UsageError
from pytest_llmperf.fileio import loads_json
from pytest_llmperf.machine.registry import load_registry
from pytest_llmperf.model import ownership
from pytest_llmperf.model.metrics import fmt_value
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.verdict import gate, stats, thresholds


@dataclass(frozen=True)
class Stored:
    """The store a path names, and the one test a test's own file holds (None: all)."""

    store: baseline_mod.BaselineStore
    nodeid: str | None = None

    def nodeids(self, containing: str = "") -> list[str]:
        """The stored tests whose node id contains ``containing`` (a test's file: its
        own), each file they are in readable."""
        store = self.store
        found = {e.nodeid for e in store.list_entries() if containing in e.nodeid}
        if self.nodeid is not None:
            found &= {self.nodeid}
        broken = store.broken_files
        if broken:  # a file that cannot be read is never taken for an absent test
            _path, exc = sorted(broken.items())[0]
            more = f" (and {len(broken) - 1} more unreadable file(s))" if len(broken) > 1 else ""
            raise UsageError(f"{exc}{more}")
        return sorted(found)

    def nothing_matches(self, containing: str, what: str, *, exact: bool = False) -> UsageError:
        """The error of a selection that matched nothing: where it looked, what is there
        (``exact``: a node id, not a part of one)."""
        store = self.store
        stored = sorted({e.nodeid for e in store.list_entries()})
        if not stored:
            there = machines_in(store.directory)
            return UsageError(
                f"{what}: no baselines of machine {store.machine_id!r} in {store.directory}"
                + (
                    f"; machines with baselines there: {', '.join(there)} (--machine ID)"
                    if there
                    else "; none are stored there (record them with pytest --perf-accept)"
                )
            )
        shown = ", ".join(stored[:8]) + (f", ... ({len(stored)} in all)" if len(stored) > 8 else "")
        where = f"machine {store.machine_id!r} ({store.entries_dir})"
        match = (
            f"{where} has no entry for {containing!r}"
            if exact
            else f"no stored test of {where} matches {containing!r}"
        )
        return UsageError(f"{what}: {match}; stored: {shown} (`llmperf baseline list` lists them)")


def machines_in(directory: Path) -> list[str]:
    """The machine ids whose baselines ``directory`` holds."""
    try:
        names = {p.stem for p in directory.glob("*.json") if p.is_file()}
        names |= {p.name for p in directory.iterdir() if p.is_dir() and any(p.rglob("*.json"))}
    except OSError:
        return []
    return sorted(names)


def _test_file(path: Path, nodeid: str, what: str) -> Stored:
    """The store of the machine whose folder holds ``path``, the file of test ``nodeid``."""
    rel = baseline_mod.entry_relpath(nodeid)
    entries_dir = path.parents[len(rel.parts) - 1]
    if (entries_dir / rel).resolve() != path.resolve():
        raise UsageError(
            f"{what} {path}: the baseline file of test {nodeid!r} is not where that test's "
            "file lies under its machine's folder (a renamed test or a moved file?); name the "
            "machine's folder or file instead"
        )
    store = baseline_mod.BaselineStore(entries_dir.parent, entries_dir.name).load()
    return Stored(store, nodeid)


def open_store(path: Path, machine: str | None = None, *, what: str = "baseline") -> Stored:
    """The store a path names: a machine file (``baselines/<id>.json``, either schema), a
    test's file under ``baselines/<id>/``, a machine folder (``baselines/<id>/``), or a
    baseline directory with ``machine``. A path that is none of them is a UsageError
    naming it, what it appears to be, and what is there."""
    from pytest_llmperf.machine.fingerprint import machine_id

    if not path.exists():
        raise UsageError(
            f"{what} {path}: no such file or folder (name baselines/<machine>.json, a "
            "test's file under baselines/<machine>/, or the folder with --dir)"
        )
    if path.is_dir():
        if machine is None and (path.parent / f"{path.name}.json").is_file():
            return Stored(baseline_mod.BaselineStore(path.parent, path.name).load())
        mid = machine or machine_id()
        if not (path / f"{mid}.json").exists() and not (path / mid).exists():
            there = machines_in(path)
            whose = "this machine" if machine is None else "machine"
            raise UsageError(
                f"{what} {path}: no baselines of {whose} {mid!r} there; "
                + (
                    f"machines with baselines there: {', '.join(there)} (--machine ID)"
                    if there
                    else "it holds no baselines (record them with pytest --perf-accept)"
                )
            )
        return Stored(baseline_mod.BaselineStore(path, mid).load())
    ownership.expect(path, ["baseline"], what)
    try:
        head = loads_json(path.read_bytes(), str(path)) if path.suffix == ".json" else None
    except (OSError, ValueError):
        head = None
    if isinstance(head, dict) and isinstance(head.get("nodeid"), str):
        return _test_file(path, head["nodeid"], what)
    if path.suffix != ".json":
        raise UsageError(
            f"{what} {path}: not a baseline file or folder; name baselines/<machine>.json, "
            "a test's file under baselines/<machine>/, or baselines/<machine>/"
        )
    return Stored(baseline_mod.BaselineStore(path.parent, path.name.removesuffix(".json")).load())


def add_store_arguments(p: argparse.ArgumentParser) -> None:
    """``--dir``, ``--machine``, ``--file``: the store a command reads (:func:`store_of`)."""
    p.add_argument("--dir", default="baselines", help="baseline directory")
    p.add_argument("--machine", default=None, help="machine id (default: this machine)")
    p.add_argument(
        "--file",
        default=None,
        help="a machine's baseline file, or one test's (instead of --dir and --machine)",
    )


def store_of(args: argparse.Namespace) -> Stored:
    """The store :func:`add_store_arguments`' arguments name."""
    if args.file:
        if args.machine:
            raise UsageError("--file names the machine's store: leave out --machine")
        return open_store(Path(args.file), what="--file")
    return open_store(Path(args.dir), args.machine, what="--dir")


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
    stored = store_of(args)
    store = stored.store
    rows = [e for e in store.list_entries() if stored.nodeid in (None, e.nodeid)]
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
    stored = store_of(args)
    store = stored.store
    if args.nodeid not in stored.nodeids(args.nodeid):
        raise stored.nothing_matches(args.nodeid, "baseline show", exact=True)
    entries = store.entries_for(args.nodeid)
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
    stored = store_of(args)
    if stored.nodeid is not None:
        raise UsageError(
            f"baseline prune --file {args.file}: the file of one test; name its machine's "
            "file or folder, and the test with --nodeid"
        )
    store = stored.store
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
