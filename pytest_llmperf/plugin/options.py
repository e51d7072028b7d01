"""The plugin's options and ini keys, and the session's Settings built from them (every
value checked here, before any test measures)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf import options
from pytest_llmperf.backends.runner import DEFAULT_TIMEOUT_S
from pytest_llmperf.baseline import DEFAULT_HISTORY, MAX_HISTORY
from pytest_llmperf.errors import UsageError
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.outputs.formats import FORMATS
from pytest_llmperf.session.plan import parse_reference
from pytest_llmperf.session.settings import Settings, default_missing_mode
from pytest_llmperf.verdict import paired
from pytest_llmperf.verdict.judge import ACCEPT_MODES, MISSING_MODES, Policy


def add(parser: pytest.Parser) -> None:
    g = parser.getgroup("llmperf", "LLM inference performance (pytest-llmperf)")
    g.addoption(
        "--perf-accept",
        nargs="?",
        const="all",
        default=None,
        type=options.choice(ACCEPT_MODES),
        metavar="all|new|failed|reset",
        help="record measurements into the baseline's history: all tests that ran "
        "(default), only those without a baseline, only those that failed the gate, or "
        "reset: all tests, replacing their history with this session; "
        "only those without a baseline, or only those that failed the gate",
    )
    g.addoption(
        "--perf-force-accept",
        action="store_true",
        help="with --perf-accept: also replace baselines whose fingerprint differs",
    )
    g.addoption(
        "--perf-missing",
        type=options.choice(MISSING_MODES),
        default=None,
        help="a test without a baseline: fail, skip, or record it and pass "
        "(default: record; fail when the CI environment variable is set)",
    )
    g.addoption(
        "--perf-baseline-dir",
        default=None,
        metavar="DIR",
        help="where baseline JSON files live (default: baselines/)",
    )
    g.addoption(
        "--perf-machine",
        type=options.machine_id,
        default=None,
        metavar="ID",
        help="baseline file name for this machine (default: derived from CPU/GPU; "
        "env LLMPERF_MACHINE)",
    )
    g.addoption(
        "--perf-repetitions",
        type=options.int_at_least(1),
        default=None,
        metavar="N",
        help="timed repetitions per workload (default 3)",
    )
    g.addoption(
        "--perf-warmup",
        type=options.int_at_least(0),
        default=None,
        metavar="N",
        help="untimed warm-up runs per workload (default 1)",
    )
    g.addoption(
        "--perf-in-process",
        action="store_true",
        default=None,
        help="run llama.cpp in the pytest process (default: an isolated child process "
        "per model configuration, so a crash fails only its tests)",
    )
    g.addoption(
        "--perf-timeout",
        type=options.positive_seconds,
        default=None,
        metavar="SECONDS",
        help=f"kill a measurement that runs longer (default {DEFAULT_TIMEOUT_S:.0f})",
    )
    g.addoption(
        "--perf-remeasure",
        type=options.int_at_least(0),
        default=None,
        metavar="N",
        help="re-measure a suspected regression N times before failing (default 1)",
    )
    g.addoption(
        "--perf-fail-on-improvement",
        action="store_true",
        default=None,
        help="fail tests that improved beyond the threshold, so baselines get refreshed",
    )
    g.addoption(
        "--perf-alpha",
        type=options.probability,
        default=None,
        help="significance level of the regression test (default 0.05)",
    )
    g.addoption(
        "--perf-config",
        default=None,
        metavar="FILE",
        help="model registry / settings YAML (default: llmperf.yaml, then "
        "[tool.llmperf] in pyproject.toml)",
    )
    g.addoption(
        "--perf-cache-dir",
        default=None,
        metavar="DIR",
        help="where built-in tiny models are built (env LLMPERF_CACHE_DIR)",
    )
    for spec in FORMATS.values():  # one option (and ini key) per report format
        g.addoption(spec.option, default=None, metavar=spec.metavar, help=spec.help)
        if spec.ini is not None:
            parser.addini(spec.ini, spec.help.replace("%%", "%"), default=None)
    g.addoption(
        "--perf-reference",
        default=None,
        metavar="KEY:VALUE,...",
        help="judge every test against this reference configuration side by side, in "
        "interleaved rounds (paired verdicts), instead of its stored baseline: "
        "build:main, model:tiny-moe-q8_0, cpu_moe:false, launcher:pin, args:'-t 4'",
    )
    g.addoption(
        "--perf-build",
        default=None,
        metavar="NAME",
        help="run every test that names no build with this build (a registry entry or an "
        "`llmperf build NAME`): with --perf-reference=build:main, a PR build against main",
    )
    g.addoption(
        "--perf-rounds",
        type=options.int_at_least(2),
        default=None,
        metavar="N",
        help="paired verdicts: rounds of a workload at most, spread over its loads (default "
        f"{paired.MAX_ROUNDS})",
    )
    g.addoption(
        "--perf-paired-threshold",
        type=options.positive_percent,
        default=None,
        metavar="PCT",
        help="paired verdicts: the smallest change of a rate (tg_tps, pp_tps, stream_tps) "
        f"that fails (default {paired.DEFAULT_THRESHOLD_PCT:g}%%); every metric's own is in "
        "the rules' paired table",
    )
    g.addoption(
        "--perf-budget",
        type=options.positive_seconds,
        default=None,
        metavar="SECONDS",
        help="paired verdicts: seconds for the session's rounds; rounds go where verdicts "
        "are open, and a metric left undecided says the smallest change it could see "
        "(default: no limit, at most 30 s a workload)",
    )
    g.addoption(
        "--perf-no-reorder",
        action="store_true",
        help="keep collection order (default: tests sharing a model config run together)",
    )
    parser.addini("llmperf_baseline_dir", "baseline directory (default baselines)", default=None)
    parser.addini("llmperf_machine", "baseline machine id", default=None)
    parser.addini("llmperf_repetitions", "timed repetitions per workload", default=None)
    parser.addini("llmperf_warmup", "warm-up runs per workload", default=None)
    parser.addini(
        "llmperf_isolate",
        "run llama.cpp in a child process (true/false)",
        type="bool",
        default=True,
    )
    parser.addini("llmperf_timeout", "per-measurement timeout in seconds", default=None)
    parser.addini("llmperf_max_loaded", "models kept loaded at once", default=None)
    parser.addini(
        "llmperf_paired_threshold",
        "paired verdicts: the smallest change of a rate that fails, in percent",
        default=None,
    )
    parser.addini("llmperf_budget", "paired verdicts: seconds for the session's rounds", None)
    parser.addini(
        "llmperf_history",
        f"accepted sessions kept per baseline entry (default {DEFAULT_HISTORY}, at most "
        f"{MAX_HISTORY})",
        default=None,
    )
    parser.addini("llmperf_remeasure", "re-measurements of a suspected regression", default=None)
    parser.addini(
        "llmperf_thresholds",
        "per-metric thresholds, one 'metric: threshold' a line",
        type="linelist",
        default=[],
    )
    parser.addini(
        "llmperf_limits",
        "absolute limits, one a line ('load_ms < 11000')",
        type="linelist",
        default=[],
    )
    parser.addini("llmperf_sla", "ratio SLAs, one a line", type="linelist", default=[])


def _ini(config: pytest.Config, name: str) -> Any:
    value = config.getini(name)
    return None if value in (None, "", []) else value


def _ini_rules(config: pytest.Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    lines = config.getini("llmperf_thresholds") or []
    if lines:
        table: dict[str, str] = {}
        for line in lines:
            metric, sep, value = str(line).partition(":")
            if not sep:
                raise UsageError(
                    f"ini llmperf_thresholds: {line!r}: write 'metric: threshold', "
                    "e.g. 'tg_tps: -10%'"
                )
            if metric.strip() in table:
                raise UsageError(
                    f"ini llmperf_thresholds: {metric.strip()} is given twice ("
                    f"{table[metric.strip()]!r} and {value.strip()!r}); which one is meant is "
                    "ambiguous: keep one"
                )
            table[metric.strip()] = value.strip()
        out["thresholds"] = table
    for name, key in (("llmperf_limits", "limits"), ("llmperf_sla", "sla")):
        lines = config.getini(name) or []
        if lines:
            out[key] = [str(x) for x in lines]
    rate = _ini(config, "llmperf_paired_threshold")
    if rate is not None:
        try:
            out.update(paired.rate_rules(options.positive_percent(str(rate))))
        except (ValueError, argparse.ArgumentTypeError) as exc:
            raise UsageError(f"ini llmperf_paired_threshold = {rate!r}: {exc}") from None
    return out


def settings_from(config: pytest.Config) -> Settings:
    """The session's settings: command line over ini keys over defaults, each value
    checked here (before any test measures) with the option's own validator."""
    opt = config.option
    root = Path(str(config.rootpath))

    def pick(cli: Any, ini: str, default: Any, conv: Callable[[str], Any] | None = None) -> Any:
        if cli is not None:
            return cli
        value = _ini(config, ini)
        if value is None:
            return default
        try:
            return conv(str(value)) if conv else value
        except (ValueError, argparse.ArgumentTypeError) as exc:
            raise UsageError(f"ini {ini} = {value!r}: {exc}") from None

    base_dir = Path(pick(opt.perf_baseline_dir, "llmperf_baseline_dir", "baselines"))
    if not base_dir.is_absolute():
        base_dir = root / base_dir

    in_process = bool(opt.perf_in_process) or bool(os.environ.get("LLMPERF_IN_PROCESS"))
    isolate = not in_process and bool(config.getini("llmperf_isolate"))
    if not isolate and opt.perf_timeout is not None:
        raise UsageError(
            "--perf-timeout cannot apply with --perf-in-process (or LLMPERF_IN_PROCESS / "
            "llmperf_isolate=false): a native call in the pytest process cannot be stopped; "
            "drop one of them (isolated runs, the default, honour the timeout)"
        )
    machine = opt.perf_machine
    if machine is None:
        env = os.environ.get("LLMPERF_MACHINE")
        source = "LLMPERF_MACHINE" if env is not None else "ini llmperf_machine"
        value = env if env is not None else _ini(config, "llmperf_machine")
        if value is not None:
            try:
                machine = options.check_machine_id(str(value))
            except ValueError as exc:
                raise UsageError(f"{source}: {exc}") from None
    reference = None
    if opt.perf_reference:
        reference = parse_reference(opt.perf_reference)
    design = paired.design_for(
        opt.perf_rounds, alpha=opt.perf_alpha if opt.perf_alpha is not None else 0.05
    )
    cli_rules = (
        paired.rate_rules(opt.perf_paired_threshold)
        if opt.perf_paired_threshold is not None
        else {}
    )
    policy = Policy(
        accept=opt.perf_accept,
        force_accept=bool(opt.perf_force_accept),
        missing=opt.perf_missing or default_missing_mode(),
        fail_on_improvement=bool(opt.perf_fail_on_improvement),
        alpha=opt.perf_alpha if opt.perf_alpha is not None else 0.05,
    )
    return Settings(
        policy=policy,
        baseline_dir=base_dir,
        machine_id=machine,
        repetitions=pick(opt.perf_repetitions, "llmperf_repetitions", 3, options.int_at_least(1)),
        warmup=pick(opt.perf_warmup, "llmperf_warmup", 1, options.int_at_least(0)),
        isolate=isolate,
        timeout_s=pick(
            opt.perf_timeout, "llmperf_timeout", DEFAULT_TIMEOUT_S, options.positive_seconds
        ),
        remeasure=pick(opt.perf_remeasure, "llmperf_remeasure", 1, options.int_at_least(0)),
        cache_dir=opt.perf_cache_dir,
        max_loaded=pick(None, "llmperf_max_loaded", 2, options.int_at_least(1)),
        history=pick(None, "llmperf_history", DEFAULT_HISTORY, options.int_between(1, MAX_HISTORY)),
        outputs=_output_paths(config),
        ini_rules=_ini_rules(config),
        reference=reference,
        paired=design,
        cli_rules=cli_rules,
        budget_s=pick(opt.perf_budget, "llmperf_budget", None, options.positive_seconds),
        build=opt.perf_build or "",
    )


def _output_paths(config: pytest.Config) -> dict[str, Path]:
    """Format name -> path of every report format the session writes: its option, else its
    ini key, else its environment variable (a set, non-empty one), in registry order."""
    out: dict[str, Path] = {}
    for spec in FORMATS.values():
        value = getattr(config.option, spec.dest)
        if value is None and spec.ini is not None:
            value = _ini(config, spec.ini)
        if value is None and spec.env is not None:
            value = os.environ.get(spec.env) or None
        if value is not None:
            out[spec.name] = Path(str(value)).absolute()
    return out


def check_outputs(settings: Settings) -> None:
    """Refuse, before anything is measured, an output file that exists and is not the
    file of ours its option writes (a UsageError naming it, what it appears to be and the
    fix); see :mod:`pytest_llmperf.model.ownership`. The writers check again when they write."""
    for name, path in settings.outputs.items():
        spec = FORMATS[name]
        spec.check(path, spec.option)


MARKER_HELP = (
    "llmperf(model=None, args=None, profile=None, thresholds=None, limits=None, sla=None, "
    "repetitions=None, warmup=None, timeout=None, isolate=None, remeasure=None, "
    "**load_params): the model and load params of a performance test (pytest-llmperf; "
    f"load params: {', '.join(LoadParams().to_dict())})"
)
