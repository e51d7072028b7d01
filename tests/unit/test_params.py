from __future__ import annotations

import pytest

from pytest_llmperf.errors import UsageError
from pytest_llmperf.model.params import LoadParams, parse_llama_args
from pytest_llmperf.model.workloads import Workload


def test_parse_short_and_long_forms() -> None:
    p = LoadParams.from_args(
        "-t 8 -b 256 -ub 128 -ngl 99 -ctk q8_0 -ctv f16 -fa on --cpu-moe --no-mmap -c 8192"
    )
    assert p == LoadParams(
        n_threads=8,
        n_batch=256,
        n_ubatch=128,
        n_gpu_layers=99,
        type_k="q8_0",
        type_v="f16",
        flash_attn="on",
        cpu_moe=True,
        use_mmap=False,
        n_ctx=8192,
    )
    q = LoadParams.from_args(
        "--threads 8 --batch-size 256 --ubatch-size 128 --n-gpu-layers 99 "
        "--cache-type-k q8_0 --flash-attn=off -ncmoe 4 --mlock -tb 4"
    )
    assert q.n_threads == 8 and q.n_cpu_moe == 4 and q.flash_attn == "off"
    assert q.use_mlock and q.n_threads_batch == 4


def test_llama_bench_spellings() -> None:
    assert parse_llama_args("-fa 1 -mmp 0 -ngl all") == {
        "flash_attn": "on",
        "use_mmap": False,
        "n_gpu_layers": -1,
    }
    assert parse_llama_args("-fa") == {"flash_attn": "on"}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ("--frobnicate 3", "unknown llama.cpp argument '--frobnicate'"),
        ("-t x", "-t: 'x' is not an integer"),
        ("-t 0", "-t: 0 must be >= 1"),
        ("-ctk q3_0", "unknown KV cache type 'q3_0'; accepted: f16, bf16"),
        ("-fa maybe", "accepted: on, off, auto"),
        ("-b", "argument -b needs a value"),
        ("--cpu-moe=1", "takes no value"),
    ],
)
def test_bad_args_name_flag_and_accepted_values(args: str, fragment: str) -> None:
    with pytest.raises(UsageError, match=None) as info:
        LoadParams.from_args(args)
    assert fragment in str(info.value)


def test_validation() -> None:
    # llama.cpp's own rule: an explicit -ub larger than -b is refused ...
    with pytest.raises(UsageError, match="n_ubatch=512 is larger than n_batch=256"):
        LoadParams(n_batch=256, n_ubatch=512)
    # ... while -b alone takes llama.cpp's default micro-batch, min(512, n_batch)
    assert LoadParams(n_batch=128).ubatch == 128
    assert LoadParams.from_args("-t 2 -b 128").ubatch == 128
    assert LoadParams().ubatch == 512
    with pytest.raises(UsageError, match="n_threads=0"):
        LoadParams(n_threads=0)
    with pytest.raises(UsageError, match="n_ctx=1000000000"):
        LoadParams(n_ctx=10**9)
    with pytest.raises(UsageError, match="exclusive"):
        LoadParams(cpu_moe=True, n_cpu_moe=2)
    with pytest.raises(UsageError, match="unknown load parameter"):
        LoadParams.from_dict({"n_thread": 2})


def test_hashable_short_id_and_round_trip() -> None:
    p = LoadParams(n_threads=2, n_batch=256, n_ubatch=256, cpu_moe=True)
    assert p.short_id() == "t2-b256-ub256-cpumoe"
    assert LoadParams().short_id() == "default"
    assert {p: 1}[LoadParams.from_dict(p.to_dict())] == 1
    assert LoadParams.from_args(p.to_args()) == p
    assert LoadParams(n_gpu_layers=-1, use_mmap=False).short_id() == "nglall-nommap"


@pytest.mark.parametrize(
    ("text", "expected", "name"),
    [
        ("pp512", Workload(512, 0, 0), "pp512"),
        ("tg128", Workload(0, 128, 0), "tg128"),
        ("pg512,128", Workload(512, 128, 0), "pp512+tg128"),
        ("pp512+tg128", Workload(512, 128, 0), "pp512+tg128"),
        ("tg128@d4096", Workload(0, 128, 4096), "tg128@d4096"),
        ("pp64 @ d1024", Workload(64, 0, 1024), "pp64@d1024"),
        ("load", Workload(), "load"),
    ],
)
def test_workload_parse(text: str, expected: Workload, name: str) -> None:
    w = Workload.parse(text)
    assert w == expected
    assert w.name == name
    assert Workload.parse(w.name) == w


def test_workload_errors() -> None:
    with pytest.raises(UsageError, match="write pp<N>, tg<N>"):
        Workload.parse("gen128")
    with pytest.raises(UsageError, match="depth needs"):
        Workload(n_depth=5)
    assert Workload(0, 16).n_tokens == 17
    assert Workload(8, 16, 100).n_tokens == 124
