"""``llmperf compare BASELINE CURRENT``: two result or baseline files (a results.json, a
machine's baseline file or folder), the same verdicts and tables as the plugin (same
thresholds, same statistics); exit 0, or 1 on a regression like a test run.

    llmperf compare baselines/box.json report/results.json
    llmperf compare old/results.json new/results.json -v
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pytest_llmperf import options
from pytest_llmperf.cli.baseline import open_store
from pytest_llmperf.errors import UsageError
from pytest_llmperf.machine.registry import load_registry
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.results import BaselineValues, Measurement, Verdict, worst
from pytest_llmperf.model.workloads import Workload
from pytest_llmperf.verdict import judge, table, thresholds


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
