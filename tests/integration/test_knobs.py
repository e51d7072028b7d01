"""llama-bench's knobs through the engine: each one parsed, applied through llama.cpp's API,
seen to reach llama.cpp (its log, a resolved value, the compute threads' placement), and
said to have no effect where this build or machine ignores it.

Split by tier: pure parts in tests/unit/test_knobs.py, real model runs in
tests/integration/test_knobs.py and pytest sessions and child processes in
tests/e2e/test_knobs.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_llmperf.backends.engine import LoadedModel
from pytest_llmperf.backends.runner import IsolatedRunner
from pytest_llmperf.errors import UsageError
from pytest_llmperf.machine import gguf_info
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.workloads import Workload

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="module")
def moe(tiny_model: object) -> Path:
    return tiny_model("moe-q8_0")  # type: ignore[operator,no-any-return]


def test_the_issues_command_line_runs_and_each_knob_is_resolved(moe: Path) -> None:
    args = "-t 2 -c 256 -ot exps=CPU -nkvo 1 --numa distribute -C 0x1 --cpu-strict 1 --prio 1"
    r = IsolatedRunner(str(moe), LoadParams.from_args(args), "m")
    try:
        m = r.measure(Workload.parse("tg8"), repetitions=1, warmup=0)
    finally:
        r.close()
    res = m.resolved
    experts = len(gguf_info.inspect(moe).expert_tensors)
    assert res["overridden_tensors"] == experts == res["cpu_moe_tensors"]
    assert res["threadpool"] == {"cpu_mask": "0x1", "strict": True, "poll": 50, "prio": 1}
    assert res["numa"] == "distribute"
    # a GPU knob on a CPU build, NUMA on one node: said, never silent
    assert "no GPU backend" in res["ineffective"]["no_kv_offload"]
    assert "one NUMA node" in res["ineffective"]["numa"]
    assert any("no_kv_offload has no effect here" in w for w in r.warnings)
    # the compute threads ran where the mask says
    assert "0" in res["thread_affinity"]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_cpu_mask_places_the_compute_threads(moe: Path) -> None:
    """-C places the compute threads, the caller (ggml's worker 0) included, for the model's
    runs only: the rest of the process keeps every CPU it had."""
    from pytest_llmperf.machine.devices import thread_affinities

    before = os.sched_getaffinity(0)
    with LoadedModel(moe, LoadParams.from_args("-t 2 -c 256 -C 0x2 --cpu-strict 1")) as m:
        assert os.sched_getaffinity(0) == before  # loading placed nothing outside
        assert m.load.resolved["cpu_affinity"] == sorted(before)
        m.run(Workload.parse("tg8"), 1, 0)
        assert "1" in thread_affinities()
        assert os.sched_getaffinity(0) == before
    # a model without a mask, loaded after, has its workers on every CPU again
    with LoadedModel(moe, LoadParams.from_args("-t 2 -c 256")) as m:
        m.run(Workload.parse("tg8"), 1, 0)
        assert os.sched_getaffinity(0) == before


def test_no_mmap_reaches_llama_cpp(moe: Path) -> None:
    """llama.cpp here has a load mode, not use_mmap/use_mlock: --no-mmap must become it
    (setting a field the struct does not declare would do nothing, silently)."""
    with LoadedModel(moe, LoadParams(n_threads=2, n_ctx=256, use_mmap=False)) as m:
        assert m.load.resolved["load_mode"] == "none"
    with LoadedModel(moe, LoadParams(n_threads=2, n_ctx=256)) as m:
        assert m.load.resolved["load_mode"] == "mmap"


def test_override_to_an_unknown_buffer_type_names_the_accepted(moe: Path) -> None:
    with pytest.raises(UsageError, match=r"no buffer type 'CUDA7'.*accepted: CPU"):
        LoadedModel(moe, LoadParams.from_args("-t 2 -c 256 -ot exps=CUDA7"))


def test_override_by_layer_moves_exactly_those_tensors(moe: Path) -> None:
    with LoadedModel(moe, LoadParams.from_args(r"-t 2 -c 256 -ot blk\.0\.=CPU")) as m:
        names = [n for n in gguf_info.inspect(moe).tensor_names if n.startswith("blk.0.")]
        assert m.load.resolved["overridden_tensors"] == len(names)
