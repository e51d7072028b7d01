"""``llmperf bisect``: the first slow configuration of an ordered list (models, builds,
releases or commits), a paired verdict against the first (the good one) at each step.

    llmperf bisect --models m0,m1,m2,m3 -n 64 --args "-t 2"
    llmperf bisect --builds b0,b1,b2 --model tiny-moe-mxfp4 -n 64
    llmperf bisect --versions 0.3.30..0.3.36 --model tiny-moe-mxfp4 -n 64
    llmperf bisect --source ~/src/llama.cpp --good b6000 --bad master --model M -n 128
    llmperf bisect --builds b0,b1,b2 --test perf_tests/test_x.py::test_y

Exit status: 0 the first slow one was found; 1 the bad end (the last) is not slower than
the good end; 3 undecided (the answer names the range the first slow one lies in); 2 bad
input; 128 + N when stopped by signal N (the state file keeps every finished step: run
the same command again to resume).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pytest_llmperf import options
from pytest_llmperf.api import Config
from pytest_llmperf.cli import ab
from pytest_llmperf.errors import UsageError
from pytest_llmperf.machine import builds, revisions
from pytest_llmperf.machine.registry import Registry, load_registry
from pytest_llmperf.model import ownership
from pytest_llmperf.model.metrics import METRICS
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.workloads import Workload
from pytest_llmperf.outputs import bisect as out
from pytest_llmperf.session.bisect import BisectRunner, Plan, Tries, default_state_path
from pytest_llmperf.session.perf_session import PerfSession
from pytest_llmperf.session.probe import probe
from pytest_llmperf.session.settings import Settings
from pytest_llmperf.verdict import bisect, bisect_state, paired
from pytest_llmperf.verdict.thresholds import rules_from


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "bisect",
        help="the first slow model, build, release or commit of a list (paired verdicts; "
        "exit 0 found, 1 not slower, 3 undecided)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--models", help="registry model ids, the good one first (m0,m1,...)")
    what.add_argument("--builds", help="builds (registry or llmperf build), good first")
    what.add_argument("--versions", help="llama-cpp-python releases: FIRST..LAST or a,b,c")
    what.add_argument("--source", help="a llama.cpp git checkout (with --good and --bad)")
    p.add_argument("--good", help="--source: the good revision")
    p.add_argument("--bad", help="--source: the bad revision (its first-parent history)")
    p.add_argument("--model", default=None, help="the model (not with --models)")
    p.add_argument("--args", default=None, help="llama.cpp arguments, e.g. '-t 2'")
    p.add_argument("--build", default=None, help="the build (with --models)")
    p.add_argument("--launcher", default=None, help="the launcher")
    p.add_argument(
        "--test", default=None, metavar="NODEID", help="a test's model, params, workloads"
    )
    p.add_argument("-p", "--n-prompt", type=ab._ints, default=[], help="prompt sizes")
    p.add_argument("-n", "--n-gen", type=ab._ints, default=[], help="generated tokens")
    p.add_argument("-pg", action="append", default=[], metavar="PP,TG")
    p.add_argument("-d", "--n-depth", type=ab._ints, default=[0], help="KV depths")
    p.add_argument("--metric", default=None, help="the deciding metric (default tg_tps, or pp_tps)")
    p.add_argument(
        "--threshold",
        type=options.positive_percent,
        default=None,
        help="the smallest slowdown of a rate that counts "
        f"(default {paired.DEFAULT_THRESHOLD_PCT:g}%%)",
    )
    p.add_argument("--rounds", type=options.int_at_least(2), default=paired.MAX_ROUNDS)
    p.add_argument("--seconds", type=options.positive_seconds, default=paired.MAX_SECONDS)
    p.add_argument(
        "--max-rounds",
        type=options.int_at_least(2),
        default=None,
        help="an undecided step is measured again with twice the rounds, up to this "
        "(default 4 x --rounds)",
    )
    p.add_argument(
        "--max-seconds",
        type=options.positive_seconds,
        default=None,
        help="... and twice the seconds, up to this (default 4 x --seconds)",
    )
    p.add_argument("--max-loads", type=options.int_at_least(1), default=paired.MAX_LOADS)
    p.add_argument("--alpha", type=options.probability, default=0.05)
    p.add_argument("--aa", action="store_true", help="first measure the good end against itself")
    p.add_argument("--state", default=None, help="the state file (default: in the cache)")
    p.add_argument("--fresh", action="store_true", help="forget the state's steps; start over")
    p.add_argument("--plot", default=None, metavar="FILE", help="the ratio by position (PNG)")
    p.add_argument("-o", "--output", choices=("md", "json"), default="md")
    p.add_argument("--config", default=None, help="llmperf.yaml (default: the current folder's)")
    p.set_defaults(func=run)


def _progress(line: str) -> None:
    print(f"bisect: {line}", file=sys.stderr, flush=True)


def _list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _base(args: argparse.Namespace) -> tuple[Config, list[str]]:
    """The configuration the list varies, and the test's workloads (with --test)."""
    model, params_text, build, launcher = args.model, args.args, args.build, args.launcher
    workloads: list[str] = []
    if args.test:
        test = probe(args.test, Path.cwd())
        model = model or test.model
        params_text = params_text if params_text is not None else test.args
        build = build or test.build
        launcher = launcher if launcher is not None else test.launcher
        workloads = list(test.workloads)
        _progress(
            f"{test.nodeid}: model {test.model}, args '{test.args}', workloads "
            f"{', '.join(workloads) or '(none read)'}"
        )
        for line in test.unread:
            _progress(f"{test.nodeid}: not read: {line}")
    if args.models and args.model:
        raise UsageError("bisect: --models names the models; leave out --model")
    if args.models is None and not model:
        raise UsageError("bisect: name the model: --model ID (or --test NODEID)")
    if args.builds is None and args.models and build is None:
        build = builds.DEFAULT
    params = LoadParams.from_args(params_text or "")
    if not model:  # --models: each step replaces it; the first stands in meanwhile
        model = (_list(args.models) or ["-"])[0]
    return (
        Config(model, params, build=build or builds.DEFAULT, launcher=launcher or ""),
        workloads,
    )


def _workloads(args: argparse.Namespace, from_test: list[str]) -> list[Workload]:
    if args.n_prompt or args.n_gen or args.pg:
        return ab.workloads(args.n_prompt, args.n_gen, args.pg, args.n_depth)
    if from_test:
        return [Workload.parse(w) for w in from_test]
    raise UsageError("bisect: no workload: give -p, -n or -pg (e.g. -n 64), or --test NODEID")


def _ids(
    args: argparse.Namespace, registry: Registry
) -> tuple[str, list[str], dict[str, str], Path | None]:
    """The kind of list, its ids in order, labels (commit subjects) and the checkout."""
    if args.source is None and (args.good or args.bad):
        raise UsageError("bisect: --good and --bad go with --source DIR")
    if args.models is not None:
        ids = _list(args.models)
        for mid in ids:
            registry.model(mid)  # an unknown id is a usage error naming the known ones
        return "models", ids, {}, None
    if args.builds is not None:
        ids = _list(args.builds)
        for name in ids:
            registry.build(name)
        return "builds", ids, {}, None
    if args.versions is not None:
        known = revisions.releases() if ".." in args.versions else None
        return "versions", revisions.release_range(args.versions, known), {}, None
    if not args.good or not args.bad:
        raise UsageError("bisect: --source needs --good REV and --bad REV")
    root = revisions.checkout_root(args.source)
    commits = revisions.first_parent_commits(root, args.good, args.bad)
    return "commits", [h for h, _s in commits], dict(commits), root


def _metric(args: argparse.Namespace, workloads: list[Workload]) -> str:
    generates = any(w.n_gen for w in workloads)
    metric = args.metric or ("tg_tps" if generates else "pp_tps")
    if metric not in METRICS:
        raise UsageError(f"--metric {metric}: unknown; known: {', '.join(sorted(METRICS))}")
    if metric == "tg_tps" and not generates:
        raise UsageError("--metric tg_tps: no workload generates tokens (-n or -pg)")
    if metric == "pp_tps" and not any(w.n_prompt for w in workloads):
        raise UsageError("--metric pp_tps: no workload has a prompt (-p or -pg)")
    return metric


def _state(path: Path, question: dict[str, Any], fresh: bool) -> bisect_state.State:
    """The state at ``path`` for ``question`` (a new one when absent or ``fresh``)."""
    ownership.check(path, "bisect-state", "--state")
    if fresh or not path.is_file() or not path.read_bytes().strip():
        return bisect_state.State(question)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        state = bisect_state.from_document(data, question)
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"--state {path}: {exc}; name another --state, or add --fresh to start over"
        ) from None
    if state.steps:
        _progress(f"resuming from {path}: {len(state.steps)} step(s) measured before")
    return state


def run(args: argparse.Namespace) -> int:
    registry = load_registry(Path.cwd(), args.config)
    if args.state is not None and Path(args.state).is_dir():
        raise UsageError(f"--state {args.state}: a folder; name a file")
    base, from_test = _base(args)
    workloads = _workloads(args, from_test)
    kind, ids, labels, root = _ids(args, registry)
    metric = _metric(args, workloads)
    plan = Plan(kind, ids, base, workloads, metric, args.threshold, root, labels)
    question = plan.question()
    try:
        bisect_state.check_question(question)
    except ValueError as exc:
        raise UsageError(f"bisect: {str(exc).removeprefix('question: ')}") from None
    state_path = (
        Path(args.state) if args.state else default_state_path(bisect_state.question_key(question))
    )
    state = _state(state_path, question, args.fresh)
    if args.plot:
        ownership.check(args.plot, "plot-png", "--plot")
    design = ab.design_of(args)
    tries = Tries(
        design,
        args.max_rounds or 4 * args.rounds,
        args.max_seconds or 4 * args.seconds,
    )
    session = PerfSession(Settings(), registry)
    _progress(
        f"{len(ids)} {kind} from {ids[0][:12]} (good) to {ids[-1][:12]} (bad); workloads "
        f"{', '.join(w.name for w in workloads)}; {metric}; state {state_path}"
    )
    runner = BisectRunner(
        session,
        plan,
        state,
        state_path,
        tries,
        rules_from(ab.rule_sources(args, registry)),
        check_good=args.aa,
        progress=_progress,
    )
    try:
        result = runner.run()
        runner.save()
    except KeyboardInterrupt:
        _progress(
            f"stopped; {len(state.steps)} step(s) kept in {state_path}: the same command resumes"
        )
        raise
    finally:
        session.close()
    if args.output == "json":
        sys.stdout.write(out.to_json(state, result, state_path))
    else:
        sys.stdout.write(out.table(state, result))
    if args.plot:
        out.plot(Path(args.plot), state, result)
    return bisect.exit_status(result)
