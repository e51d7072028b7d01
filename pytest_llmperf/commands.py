"""The ``llmperf`` subcommands beyond tiny-model: compare, report, baseline, merge."""

from __future__ import annotations

import argparse
from typing import Any


def add_subcommands(sub: Any) -> None:
    """Register the subcommands (filled in as their modules land)."""
    del sub
