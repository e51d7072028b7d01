"""Moved to :mod:`pytest_llmperf.sweep.cli`; kept for ``commands.py``'s import."""

from pytest_llmperf.sweep.cli import add_merge_subcommand, cmd_merge

__all__ = ["add_merge_subcommand", "cmd_merge"]
