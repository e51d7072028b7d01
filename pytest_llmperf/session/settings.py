"""The session's settings: one frozen value built once, from the plugin's options and ini
keys (or by a command), before any test measures."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmperf import baseline as baseline_mod
from pytest_llmperf.backends.runner import DEFAULT_TIMEOUT_S
from pytest_llmperf.verdict import judge
from pytest_llmperf.verdict import paired as paired_mod


@dataclass(frozen=True)
class Settings:
    """The session's settings, from options, ini keys and the environment."""

    policy: judge.Policy = field(default_factory=judge.Policy)
    baseline_dir: Path = Path("baselines")
    machine_id: str | None = None
    repetitions: int = 3
    warmup: int = 1
    isolate: bool = True
    timeout_s: float = DEFAULT_TIMEOUT_S
    remeasure: int = 1
    cache_dir: str | None = None
    max_loaded: int = 2
    #: accepted sessions kept per baseline entry
    history: int = baseline_mod.DEFAULT_HISTORY
    #: the report formats to write at the session's end: format name -> path (see
    #: :data:`pytest_llmperf.outputs.formats.FORMATS`)
    outputs: Mapping[str, Path] = field(default_factory=dict)
    #: rules from the pytest ini section (``llmperf_thresholds`` ...)
    ini_rules: Mapping[str, Any] = field(default_factory=dict)
    #: rules from the command line (``--perf-paired-threshold``)
    cli_rules: Mapping[str, Any] = field(default_factory=dict)
    #: judge every test against this reference (``--perf-reference``), e.g. {"build": "main"}
    reference: Mapping[str, Any] | None = None
    #: run every test that names no build with this one (``--perf-build``)
    build: str = ""
    #: how paired comparisons run and are judged
    paired: paired_mod.Design = field(default_factory=paired_mod.Design)
    #: seconds for every paired round of the session (``--perf-budget``); None: no limit
    budget_s: float | None = None


def default_missing_mode() -> judge.MissingMode:
    """record-and-pass locally; fail where the CI environment variable is set."""
    ci = os.environ.get("CI", "").strip().lower()
    return "fail" if ci not in ("", "0", "false", "no") else "record"
