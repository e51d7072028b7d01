"""llama-bench's knobs through the engine: each one parsed, applied through llama.cpp's API,
seen to reach llama.cpp (its log, a resolved value, the compute threads' placement), and
said to have no effect where this build or machine ignores it.

Split by tier: pure parts in tests/unit/test_knobs.py, real model runs in
tests/integration/test_knobs.py and pytest sessions and child processes in
tests/e2e/test_knobs.py."""

from __future__ import annotations

import pytest

from pytest_llmperf.errors import UsageError
from pytest_llmperf.model.args import split_run_args
from pytest_llmperf.model.params import KNOBS, LoadParams

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
