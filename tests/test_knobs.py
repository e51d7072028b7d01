"""llama-bench's knobs through the engine: each one parsed, applied through llama.cpp's API,
seen to reach llama.cpp (its log, a resolved value, the compute threads' placement), and
said to have no effect where this build or machine ignores it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_llmperf.backends.engine import LoadedModel
from pytest_llmperf.backends.runner import IsolatedRunner
from pytest_llmperf.errors import UsageError
from pytest_llmperf.machine import gguf_info
from pytest_llmperf.model.args import split_run_args
from pytest_llmperf.model.params import KNOBS, LoadParams
from pytest_llmperf.model.workloads import Workload

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

#: every flag of llama-bench's --help that sets a load parameter (llama-cpp-python 0.3.36)
BENCH_FLAGS = {
    "-t": "n_threads",
    "-b": "n_batch",
    "-ub": "n_ubatch",
    "-ctk": "type_k",
    "-ctv": "type_v",
    "-C": "cpu_mask",
    "--cpu-strict": "cpu_strict",
    "--poll": "poll",
    "-ngl": "n_gpu_layers",
    "-ncmoe": "n_cpu_moe",
    "-sm": "split_mode",
    "-mg": "main_gpu",
    "-nkvo": "no_kv_offload",
    "-fa": "flash_attn",
    "-dev": "device",
    "-embd": "embeddings",
    "-ts": "tensor_split",
    "-ot": "override_tensor",
    "-nopo": "no_op_offload",
    "--no-host": "no_host",
    "--repack": "repack",
    "--numa": "numa",
    "--prio": "prio",
}


@pytest.fixture(scope="module")
def moe(tiny_model: object) -> Path:
    return tiny_model("moe-q8_0")  # type: ignore[operator,no-any-return]


def test_every_llama_bench_load_flag_is_known() -> None:
    from pytest_llmperf.model.params import FLAGS

    for flag, name in BENCH_FLAGS.items():
        assert FLAGS.get(flag) == name, flag
        assert KNOBS[name].prefix, name


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("-ot exps=CPU", {"override_tensor": "exps=CPU"}),
        ("-ot 'blk\\.0\\.=CPU;exps=CPU'", {"override_tensor": "blk\\.0\\.=CPU;exps=CPU"}),
        ("-sm row -mg 1 -ts 3/1", {"split_mode": "row", "main_gpu": 1, "tensor_split": "3/1"}),
        (
            "-nkvo 1 -nopo 1 -embd 1",
            {"no_kv_offload": True, "no_op_offload": True, "embeddings": True},
        ),
        ("-nkvo -t 2", {"no_kv_offload": True, "n_threads": 2}),
        ("--repack 0 --no-host 1", {"repack": False, "no_host": True}),
        ("-dev CUDA0/CUDA1", {"device": "CUDA0/CUDA1"}),
        (
            "--numa distribute -C 0x3 --cpu-strict 1 --poll 0 --prio 2",
            {"numa": "distribute", "cpu_mask": "0x3", "cpu_strict": True, "poll": 0, "prio": 2},
        ),
    ],
)
def test_knobs_parse_with_llama_bench_syntax(args: str, expected: dict[str, object]) -> None:
    p = LoadParams.from_args(args)
    for name, value in expected.items():
        assert getattr(p, name) == value, name
    assert LoadParams.from_args(p.to_args()) == p  # to_args reproduces them


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ("-ot exps", "is not PATTERN=BUFFER_TYPE"),
        ("-ot '[=CPU'", "is not a regular expression"),
        ("-sm diagonal", "unknown split mode 'diagonal'"),
        ("-ts a/b", "proportions per GPU"),
        ("--poll 101", "101: must be <= 100"),
        ("--prio 9", "9: must be <= 3"),
        ("-C 0xZZ", "hexadecimal CPU mask"),
        ("--numa wide", "unknown NUMA mode"),
    ],
)
def test_bad_knob_values_name_the_flag(args: str, fragment: str) -> None:
    with pytest.raises(UsageError) as exc:
        LoadParams.from_args(args)
    assert fragment in str(exc.value) and args.split()[0] in str(exc.value)


def test_new_knobs_at_their_defaults_change_no_id_and_no_key() -> None:
    p = LoadParams(n_threads=2)
    assert p.short_id() == "t2" and p.to_args() == "-t 2" and p.identity() == {"n_threads": 2}


def test_run_flags_split_from_load_flags() -> None:
    load, run = split_run_args("-t 2 -r 5 --no-warmup --delay 1.5 -b 256")
    assert load == ["-t", "2", "-b", "256"]
    assert run == {"repetitions": 5, "warmup": 0, "delay": 1.5}
    with pytest.raises(UsageError, match="-r: 0 must be >= 1"):
        split_run_args("-r 0")


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


def test_a_sweep_over_override_patterns_and_poll(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".yaml",
        sweeps="""
models: [tiny-moe-q8_0]
workloads: [tg8]
repetitions: 1
base: "-c 256 -t 2"
axes:
  overrides:
    - {name: none, args: ""}
    - {name: experts, args: "-ot exps=CPU"}
    - {name: layer0, args: "-ot blk\\\\.0\\\\.=CPU"}
  poll: [0, 50]
""",
    )
    pytester.makepyfile(
        """
import pytest

@pytest.mark.llmperf_sweep(file="sweeps.yaml")
def test_sweep(llm_perf):
    llm_perf.measure_all()
"""
    )
    res = pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--perf-machine=m",
        "--perf-missing=record",
        "--perf-warmup=0",
        "-q",
    )
    res.assert_outcomes(passed=6)


def test_marker_run_flags(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest

@pytest.mark.llmperf(model="tiny-moe-q8_0", args="-t 2 -c 256 -r 2 --no-warmup")
def test_x(llm_perf):
    m = llm_perf.measure("tg8")
    assert m.repetitions == 2 and m.warmup == 0
"""
    )
    res = pytester.runpytest("-p", "no:cacheprovider", "--perf-machine=m", "--perf-missing=record")
    res.assert_outcomes(passed=1)
