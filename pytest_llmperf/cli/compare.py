"""``llmperf compare BASELINE CURRENT``: two result or baseline files (a results.json, a
machine's baseline file or folder), the same verdicts and tables as the plugin (same
thresholds, same statistics); exit 0, or 1 on a regression like a test run, or 3 when
no test is in both (nothing compared is never a pass).

    llmperf compare baselines/box.json report/results.json
    llmperf compare old/results.json new/results.json -v
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pytest_llmperf import options
from pytest_llmperf.cli.baseline import open_store
from pytest_llmperf.errors import UsageError
from pytest_llmperf.fileio import loads_json
from pytest_llmperf.machine.registry import load_registry
from pytest_llmperf.model import ownership
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.results import BaselineValues, Measurement, Verdict, worst
from pytest_llmperf.model.workloads import Workload
from pytest_llmperf.verdict import judge, table, thresholds

#: the exit status of a comparison that compared nothing (as ``llmperf ab``'s)
NOTHING_COMPARED = 3


def add_parser(sub: Any) -> None:
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
    c.set_defaults(func=run)


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
    folder, or a test's file; several fingerprints for one test: the most recently
    accepted)."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"compare: {path}: no such file or folder")
    if p.is_file():
        ownership.expect(p, ["results-json", "baseline"], "compare")
        try:
            head = loads_json(p.read_bytes(), str(p)) if p.suffix == ".json" else None
        except (OSError, ValueError):
            head = None
        if isinstance(head, dict) and "tests" in head:
            from pytest_llmperf.outputs import load_results

            return {
                rep.nodeid: {m.workload.name: BaselineValues.of(m) for m in rep.measurements}
                for rep in load_results(p)
            }
    stored = open_store(p, what="compare")
    out: dict[str, dict[str, BaselineValues]] = {}
    for nodeid in stored.nodeids():
        entry = max(stored.store.entries_for(nodeid).values(), key=lambda e: e.accepted_at)
        out[nodeid] = entry.references()
    return out


def run(args: argparse.Namespace) -> int:
    base = load_references(args.baseline)
    cur = {
        nodeid: {wl: _latest_measurement(nodeid, wl, ref) for wl, ref in refs.items()}
        for nodeid, refs in load_references(args.current).items()
    }
    project = load_registry(Path.cwd(), args.config)
    config = thresholds.rules_from(project.rule_sources)
    verdicts: list[Verdict] = []
    missing = sorted(set(base) - set(cur))
    new = 0
    for nodeid in sorted(cur):
        if nodeid not in base:
            print(f"{nodeid}: new (not in {args.baseline})")
            new += 1
            continue
        by_workload = judge.compare(
            list(cur[nodeid].values()),
            base[nodeid],
            config,
            alpha=args.alpha,
            fail_on_improvement=args.fail_on_improvement,
        )
        if judge.compared_nothing(by_workload):
            print(f"{nodeid}: nothing compared (no metric of one workload is in both files)")
            continue
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
    if not verdicts:  # comparing nothing is never a pass
        print(
            f"nothing compared: no test measured the same workload and metric in both "
            f"{args.baseline} ({len(base)} test(s)) and {args.current} ({len(cur)} test(s), "
            f"{new} not in the first); compare files of the same tests",
            file=sys.stderr,
        )
        return NOTHING_COMPARED
    overall = worst(verdicts)
    failed = overall == "regressed" or (args.fail_on_improvement and overall == "improved")
    others = f" ({new} new, {len(missing)} only in {args.baseline})" if new or missing else ""
    print(f"{len(verdicts)} compared: {overall}{others}" + (f"; {table.REMEDY}" if failed else ""))
    return 1 if failed else 0
