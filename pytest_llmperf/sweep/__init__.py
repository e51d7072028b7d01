"""Parameter sweeps: grids over load params, sparse selection, two phases, result files.

Pure: no pytest import, no llama.cpp import. A :class:`Sweep` (from YAML with
:func:`load_sweeps`, or from Python with :meth:`Sweep.define`) expands into a list of
:class:`SweepPoint` (``Sweep.points(strategy=...)``); each point has a stable, pytest-safe
id, the merged :class:`~pytest_llmperf.model.params.LoadParams`, the model id and the workloads.
The user documentation is docs/SWEEPS.md.

One module per concern:

- :mod:`.definition` (with :mod:`.axes`): Sweep, Axis, Variant, DeepPhase; YAML and
  Python parsing
- :mod:`.selection`: Selection and the table of strategies (add a strategy there)
- :mod:`.points`: SweepPoint, PointList, building and validating points
- :mod:`.ranking`: rank, the ranking file, deepen (the two phases)
- :mod:`.records`: the JSONL results file, resume, shards, merge
- :mod:`.progress`: plan summary and progress lines
- :mod:`.context`, :mod:`.files`: errors that name the file and key, or the path and fix
- :mod:`.options` (validated options), :mod:`.fleet` (the shard, from the option or a
  scheduler's environment)

The session side is :mod:`pytest_llmperf.session.sweeps` (collect: markers into plans,
shard and resume selection; phases: the ranking file, the deep phase's winners; planner:
plan lines and estimates; log: result records and progress; state: the thin
coordinator), the pytest glue :mod:`pytest_llmperf.plugin.sweep`, and ``llmperf merge``
:mod:`pytest_llmperf.cli.merge`.
"""

from pytest_llmperf.sweep.axes import Axis, Variant, parse_int_range
from pytest_llmperf.sweep.definition import DeepPhase, Sweep, load_sweep, load_sweeps
from pytest_llmperf.sweep.points import PointList, SweepPoint
from pytest_llmperf.sweep.progress import ProgressLine, fmt_duration, plan_summary
from pytest_llmperf.sweep.ranking import Ranked, deepen, rank, read_ranking, write_ranking
from pytest_llmperf.sweep.records import (
    RESULT_KEY_FIELD,
    MergeResult,
    SweepWarning,
    append_result,
    completed_ids,
    merge,
    merge_report,
    parse_shard,
    read_results,
    shard,
)
from pytest_llmperf.sweep.selection import (
    STRATEGIES,
    STRATEGY_TABLE,
    Selection,
    Strategy,
    axis_indices,
    lhs_default_size,
    select_indices,
)

__all__ = [
    "RESULT_KEY_FIELD",
    "STRATEGIES",
    "STRATEGY_TABLE",
    "Axis",
    "DeepPhase",
    "MergeResult",
    "PointList",
    "ProgressLine",
    "Ranked",
    "Selection",
    "Strategy",
    "Sweep",
    "SweepPoint",
    "SweepWarning",
    "Variant",
    "append_result",
    "axis_indices",
    "completed_ids",
    "deepen",
    "fmt_duration",
    "lhs_default_size",
    "load_sweep",
    "load_sweeps",
    "merge",
    "merge_report",
    "parse_int_range",
    "parse_shard",
    "plan_summary",
    "rank",
    "read_ranking",
    "read_results",
    "select_indices",
    "shard",
    "write_ranking",
]
