"""``llmperf ab``: paired A/B comparisons without writing a test.

    llmperf ab --model tiny-moe-mxfp4 --build-b main -p 512 -n 128 --rounds 5
    llmperf ab --model tiny-moe-mxfp4 --args "-t 2" --args-b "-t 2 --cpu-moe" -o json

``ab`` is compare-llama-bench.py with statistics: each workload runs on both sides in
interleaved rounds (see :mod:`pytest_llmperf.verdict.paired`), and the table gives the ratio B/A
with its interval and a verdict. Exit status 1 when any workload regressed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from pytest_llmperf import options
from pytest_llmperf.api import Config
from pytest_llmperf.errors import UsageError
from pytest_llmperf.machine import builds
from pytest_llmperf.machine.registry import Registry, load_registry
from pytest_llmperf.model.metrics import fmt_value
from pytest_llmperf.model.params import KNOBS, LoadParams
from pytest_llmperf.model.workloads import Workload
from pytest_llmperf.session.pairs import PairRunner
from pytest_llmperf.session.perf_session import PerfSession
from pytest_llmperf.session.settings import Settings
from pytest_llmperf.verdict import paired
from pytest_llmperf.verdict.thresholds import RuleSource, rules_from

#: the metric a workload's row shows: tg for generation, pp for prompts
_ROW_METRIC = {"pp": "pp_tps", "tg": "tg_tps", "pg": "tg_tps"}


def _ints(text: str) -> list[int]:
    from pytest_llmperf.model.knobs import int_range

    try:
        return int_range(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def workloads(
    prompts: list[int], gens: list[int], pgs: list[str], depths: list[int]
) -> list[Workload]:
    """llama-bench's tests: every -p and -n and -pg, at every -d."""
    out: list[Workload] = []
    for d in depths or [0]:
        out += [Workload(n_prompt=p, n_depth=d) for p in prompts if p]
        out += [Workload(n_gen=n, n_depth=d) for n in gens if n]
        for pair in pgs:
            a, sep, b = pair.partition(",")
            if not sep:
                raise UsageError(f"-pg {pair}: write PROMPT,GEN, e.g. 512,128")
            out.append(Workload(int(a), int(b), d))
    if not out:
        raise UsageError("ab: no workload: give -p, -n or -pg (e.g. -n 128)")
    return out


def add_parser(sub: Any) -> None:
    ab = sub.add_parser(
        "ab",
        help="is B slower than A? paired rounds of two configurations (exit 1 on a regression)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for side in ("", "-b"):
        who = "B (default: A's)" if side else "A, the reference"
        ab.add_argument(f"--model{side}", default=None, help=f"model id of {who}")
        ab.add_argument(f"--build{side}", default=None, help=f"build of {who}")
        ab.add_argument(f"--launcher{side}", default=None, help=f"launcher of {who}")
        ab.add_argument(f"--args{side}", default=None, help=f"llama.cpp arguments of {who}")
    ab.add_argument("-p", "--n-prompt", type=_ints, default=[], help="prompt sizes (512,1024)")
    ab.add_argument("-n", "--n-gen", type=_ints, default=[], help="generated tokens (128)")
    ab.add_argument(
        "-pg", action="append", default=[], metavar="PP,TG", help="prompt then generation"
    )
    ab.add_argument("-d", "--n-depth", type=_ints, default=[0], help="KV depths (0,4096)")
    ab.add_argument(
        "--rounds",
        type=options.int_at_least(2),
        default=paired.MAX_ROUNDS,
        help=f"rounds of a workload at most (default {paired.MAX_ROUNDS})",
    )
    ab.add_argument(
        "--max-loads",
        type=options.int_at_least(1),
        default=paired.MAX_LOADS,
        help=f"loads of each side at most (default {paired.MAX_LOADS})",
    )
    ab.add_argument(
        "--threshold",
        type=options.positive_percent,
        default=None,
        help="the smallest change of a rate that fails (default: each metric's paired "
        f"threshold, {paired.DEFAULT_THRESHOLD_PCT:g}%% for the rates)",
    )
    ab.add_argument(
        "--seconds",
        type=options.positive_seconds,
        default=paired.MAX_SECONDS,
        help=f"seconds a workload's rounds may take at most (default {paired.MAX_SECONDS:g})",
    )
    ab.add_argument("--alpha", type=options.probability, default=0.05)
    ab.add_argument("-o", "--output", choices=("md", "json", "csv"), default="md")
    ab.add_argument("--config", default=None, help="llmperf.yaml (default: the current folder's)")
    ab.set_defaults(func=run)


def _side(args: argparse.Namespace, suffix: str, base: Config | None) -> Config:
    def pick(name: str) -> Any:
        value = getattr(args, name + suffix)
        if value is None and base is not None:
            return getattr(base, {"args": "params"}.get(name, name))
        return value

    model = pick("model")
    if not model:
        raise UsageError("ab: name the model: --model MODEL_ID (a registry id or tiny-moe-mxfp4)")
    params = pick("args")
    if not isinstance(params, LoadParams):
        params = LoadParams.from_args(params or "", f"ab --args{suffix.replace('_', '-')}")
    return Config(
        str(model),
        params,
        build=pick("build") or builds.DEFAULT,
        launcher=pick("launcher") or "",
    )


def design_of(args: argparse.Namespace) -> paired.Design:
    """The paired design the options ask for (``ab``'s and ``bisect``'s)."""
    return paired.design_for(
        args.rounds,
        max_loads=args.max_loads,
        loads=min(paired.LOADS, args.max_loads),
        concurrent_loads=args.max_loads,
        alpha=args.alpha,
        max_seconds=args.seconds,
    )


def rule_sources(args: argparse.Namespace, registry: Registry) -> list[RuleSource]:
    """The registry's rule sources, then ``--threshold`` (the rates' paired threshold)."""
    sources = list(registry.rule_sources)
    if args.threshold is not None:
        sources.append(RuleSource("--threshold", "cli", paired.rate_rules(args.threshold)))
    return sources


def run(args: argparse.Namespace) -> int:
    registry = load_registry(Path.cwd(), args.config)
    session = PerfSession(Settings(), registry)
    a = _side(args, "", None)
    b = _side(args, "_b", a)
    if a.key() == b.key():
        raise UsageError(
            "ab: A and B are the same configuration; give what differs (--build-b, --args-b, ...)"
        )
    paths = {}
    for side, cfg in (("A", a), ("B", b)):
        path, reason = session.resolve_path(cfg)
        if path is None:
            raise UsageError(f"ab: {side} cannot run: {reason}")
        paths[side] = path
    design = design_of(args)
    rules = rules_from(rule_sources(args, registry))
    varied = [k for k in ("model", "build", "launcher") if getattr(a, k) != getattr(b, k)]
    varied += [k for k in KNOBS if getattr(a.params, k) != getattr(b.params, k)]
    pair = PairRunner(
        lambda: session.start_runner(a, paths["A"], True),
        lambda: session.start_runner(b, paths["B"], True),
        design,
        varied=varied,
    )
    results: list[tuple[Workload, paired.PairedResult]] = []
    try:
        for wl in workloads(args.n_prompt, args.n_gen, args.pg, args.n_depth):
            result = pair.measure(wl, rules)
            results.append((wl, result))
            for line in result.unalike:
                print(f"warning: the two sides differ in {line}", file=sys.stderr)
            print(
                f"{wl.name}: {paired.summary_line(result, _ROW_METRIC[wl.kind])}", file=sys.stderr
            )
    except KeyboardInterrupt:  # a stop signal: the workers stop; the finished rows stay
        pair.close()
        session.close()
        if results:
            sys.stdout.write(render(a, b, results, args.output))
        raise
    finally:
        pair.close()
        session.close()
    sys.stdout.write(render(a, b, results, args.output))
    return exit_status(results)


def exit_status(results: list[tuple[Workload, paired.PairedResult]]) -> int:
    """1 when a workload regressed; 3 when one compared nothing (every round
    contaminated or failed: no verdict at all); else 0."""
    if any(c.verdict == "regressed" for _wl, r in results for c in r.comparisons):
        return 1
    if any(not r.runs.log_ratios(_ROW_METRIC[wl.kind]) for wl, r in results):
        return 3
    return 0


def _row(a: Config, b: Config, wl: Workload, result: paired.PairedResult) -> dict[str, Any]:
    metric = _ROW_METRIC[wl.kind]
    c = paired.as_mapping(result.comparisons).get(metric)
    return {
        "model_a": a.model,
        "model_b": b.model,
        "a": a.id,
        "b": b.id,
        "test": wl.name,
        "metric": metric,
        "a_median": None if c is None else c.baseline_median,
        "b_median": None if c is None else c.current_median,
        "ratio": None if c is None else c.ratio,
        "ratio_low": None if c is None else c.ratio_low,
        "ratio_high": None if c is None else c.ratio_high,
        "verdict": "inconclusive" if c is None else c.verdict,
        "reason": "not measured on both sides" if c is None else c.reason,
        "decided": paired.decided(result.comparisons),
        "loads": len(result.runs.blocks),
        "rounds": len(result.runs.rounds),
        "repetitions": result.repetitions,
        "contaminated_rounds": result.runs.contaminated(),
        "stopped": result.stopped,
        "seconds": round(result.seconds, 1),
    }


def _notes(results: list[tuple[Workload, paired.PairedResult]]) -> list[str]:
    """Every gated metric that did not pass, with why (the table shows one per row)."""
    out: list[str] = []
    for wl, result in results:
        for c in result.comparisons:
            if c.threshold and c.verdict != "pass":
                out.append(f"- {wl.name} {c.metric}: {c.verdict}: {c.reason}")
        out.extend(f"- {wl.name}: the sides differ in {line}" for line in result.unalike)
    return out


def render(
    a: Config, b: Config, results: list[tuple[Workload, paired.PairedResult]], fmt: str
) -> str:
    rows = [_row(a, b, wl, r) for wl, r in results]
    if fmt == "json":
        out = [
            dict(
                row,
                comparisons=[c.to_dict() for c in r.comparisons],
                rounds_data=paired.to_rows(r),
                unalike=r.unalike,
                loads_records=r.records,
            )
            for row, (_wl, r) in zip(rows, results, strict=True)
        ]
        return json.dumps({"a": a.id, "b": b.id, "results": out}, indent=1) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["test"])
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()
    lines = [
        f"A = {a.id}, B = {b.id}",
        "",
        "| test | metric | A | B | B/A | interval | verdict | rounds |",
        "| --- | --- | ---: | ---: | ---: | --- | --- | ---: |",
    ]
    for r in rows:
        interval = (
            f"[{r['ratio_low']:.3f}, {r['ratio_high']:.3f}]" if r["ratio_low"] is not None else "-"
        )
        ratio = f"{r['ratio']:.3f}" if r["ratio"] is not None else "-"
        lines.append(
            f"| {r['test']} | {r['metric']} | {fmt_value(r['a_median'])} | "
            f"{fmt_value(r['b_median'])} | {ratio} | {interval} | {r['verdict']} | "
            f"{r['rounds']} on {r['loads']} loads, x{r['repetitions']} |"
        )
    notes = _notes(results)
    return "\n".join(lines + (["", *notes] if notes else [])) + "\n"
