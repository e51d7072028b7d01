"""pytest-llmperf: LLM inference performance as ordinary pass/fail pytest tests."""

from __future__ import annotations

__version__ = "0.1.0"

from pytest_llmperf.api import Config, config, configs
from pytest_llmperf.model.params import LoadParams, Workload, pg, pp, tg

__all__ = ["Config", "LoadParams", "Workload", "__version__", "config", "configs", "pg", "pp", "tg"]
