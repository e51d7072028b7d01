"""pytest-llmperf: LLM inference performance as ordinary pass/fail pytest tests."""

from __future__ import annotations

__version__ = "0.1.0"

from pytest_llmperf.api import Config, config, configs
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.prompts import load_prompts
from pytest_llmperf.model.workloads import Workload, pg, pp, tg

__all__ = [
    "Config",
    "LoadParams",
    "Workload",
    "__version__",
    "config",
    "configs",
    "load_prompts",
    "pg",
    "pp",
    "tg",
]
