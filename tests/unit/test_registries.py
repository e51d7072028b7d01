"""The backends' registry, checked against what it mirrors: every load knob is applied or
declared not applied by every backend, and the backends' code reads those tables; the
metrics and workload kinds a backend names exist; the struct fields, ``Llama`` keywords and
llama-bench flags the tables name exist in the real llama-cpp-python and KNOBS; README's
flags table agrees with KNOBS; and only native/ calls into llama.cpp.

Split by tier: pure parts in tests/unit/test_registries.py and real model runs in
tests/integration/test_registries.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import pytest_llmperf
from pytest_llmperf.backends.llamabench import bench_args
from pytest_llmperf.backends.protocol import (
    BACKENDS,
    LLAMA_BENCH,
    STREAM,
    WORKLOAD_KINDS,
    Applied,
    Flag,
    Keyword,
    NotApplied,
    StructField,
)
from pytest_llmperf.backends.stream import ENGINE_METRICS
from pytest_llmperf.backends.stream_load import llama_kwargs, model_params_fields
from pytest_llmperf.model.metrics import METRICS
from pytest_llmperf.model.params import FLAGS, KNOBS, LoadParams
from pytest_llmperf.model.workloads import Workload

PACKAGE = Path(pytest_llmperf.__file__).parent
README = PACKAGE.parent / "README.md"

#: every knob away from its default (cpu_moe excepted: it excludes n_cpu_moe)
EVERY_KNOB = LoadParams.from_args(
    "-c 512 -t 2 -tb 3 -b 256 -ub 64 -ngl 1 -ncmoe 1 -fa on -ctk q8_0 -ctv q4_0 --no-mmap "
    "--mlock -ot exps=CPU -sm row -mg 1 -ts 3/1 -nkvo 1 -nopo 1 -dev CUDA0 -embd 1 --repack 0 "
    "--no-host 1 --numa distribute -C 0x1 --cpu-strict 1 --poll 0 --prio 1"
)


def test_every_params_knob_is_set_in_the_fixture() -> None:
    unset = [n for n in KNOBS if not KNOBS[n].shown(getattr(EVERY_KNOB, n))]
    assert unset == ["cpu_moe"]


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_every_backend_declares_every_knob(backend: str) -> None:
    """A knob added to LoadParams fails here until each backend says how it applies it
    or why it cannot: the streaming path can no longer drop one without a word."""
    spec = BACKENDS[backend]
    missing = [n for n in KNOBS if n not in spec.knobs]
    unknown = [n for n in spec.knobs if n not in KNOBS]
    assert not missing, f"{backend} declares nothing for {missing}: Applied(how) or NotApplied(why)"
    assert not unknown, f"{backend} declares knobs that are not in KNOBS: {unknown}"
    for name, entry in spec.knobs.items():
        assert isinstance(entry, Applied | NotApplied), name
        text = entry.how if isinstance(entry, Applied) else entry.why
        assert text.strip(), f"{backend}: {name} says nothing"


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_backend_metrics_and_workload_kinds_exist(backend: str) -> None:
    spec = BACKENDS[backend]
    unknown = sorted(set(spec.missing_metrics) - set(METRICS))
    assert not unknown, f"{backend} names unknown metrics {unknown}"
    assert all(why.strip() for why in spec.missing_metrics.values())
    assert spec.workloads and set(spec.workloads) <= set(WORKLOAD_KINDS)
    assert spec.module.startswith("pytest_llmperf.backends.")


def test_workload_kinds_are_the_workloads_and_every_one_has_a_backend() -> None:
    kinds = {Workload.parse(n).kind for n in ("pp8", "tg8", "pp8+tg8", "stream:short")}
    assert kinds | {Workload().kind} == set(WORKLOAD_KINDS)
    assert {k for b in BACKENDS.values() for k in b.workloads} == set(WORKLOAD_KINDS)


def test_llama_bench_flags_are_the_knobs_flags() -> None:
    for name, entry in LLAMA_BENCH.entries(Flag).items():
        assert entry.fixed or entry.flag in KNOBS[name].flags, name


def test_the_backends_apply_what_their_tables_say() -> None:
    """The code reads the tables: each flag of llama-bench's table is passed, each keyword
    and model params field of the streaming path's is given to Llama, and each knob the
    streaming path or llama-bench cannot take is listed."""
    args = bench_args(EVERY_KNOB)
    for name, entry in LLAMA_BENCH.entries(Flag).items():
        if name != "cpu_moe":
            assert entry.args(KNOBS[name], getattr(EVERY_KNOB, name))[0] in args, name
    assert "-ncmoe" in bench_args(LoadParams(cpu_moe=True))
    kwargs, not_applied = llama_kwargs(EVERY_KNOB, {"flash_attn": "on"})
    assert {e.keyword for e in STREAM.entries(Keyword).values()} <= set(kwargs)
    fields = model_params_fields(EVERY_KNOB, [], [])
    assert {e.field for e in STREAM.entries(StructField).values()} == set(fields)
    for spec in (STREAM, LLAMA_BENCH):
        declared = {n for n, e in spec.knobs.items() if isinstance(e, NotApplied)}
        assert set(spec.not_applied(EVERY_KNOB)) == declared
        assert spec.not_applied(LoadParams()) == {}  # defaults are nothing to report
    assert set(not_applied) == {n for n, e in STREAM.knobs.items() if isinstance(e, NotApplied)}


def test_engine_metrics_beside_a_stream_come_from_the_metric_registry() -> None:
    assert ENGINE_METRICS
    assert set(ENGINE_METRICS) == {
        n.removeprefix("engine_") for n in METRICS if n.startswith("engine_")
    }
    assert set(ENGINE_METRICS) <= set(METRICS)


# -- README's flags table -----------------------------------------------------------------


def _flags_table() -> list[list[str]]:
    lines = README.read_text(encoding="utf-8").splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| llama-bench flag |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_readme_flags_table_agrees_with_knobs() -> None:
    rows = _flags_table()
    by_knob: dict[str, list[str]] = {}
    for row in rows:
        flags = re.findall(r"`(-[^`]+)`", row[0])
        names = [n for n in re.findall(r"`(\w+)`", row[1]) if n in KNOBS]
        if not names:
            continue  # run options, workloads, llama-bench's own flags
        for flag in flags:
            assert FLAGS.get(flag) in names, f"README lists {flag} for {names}: not their flag"
        for name in names:
            assert name not in by_knob, f"README lists {name} twice"
            by_knob[name] = row
    missing = [n for n in KNOBS if n not in by_knob]
    assert not missing, f"README's llama.cpp flags table lacks {missing}"
    for name, row in by_knob.items():
        spec = KNOBS[name]
        listed = set(re.findall(r"`(-[^`]+)`", row[0]))
        assert set(spec.all_flags) <= listed, f"README: {name} lacks {set(spec.all_flags) - listed}"
        assert row[2], f"README: {name} has no default"
        if spec.default not in (None, ""):
            text = spec.kind.text(spec.default)
            assert re.search(rf"(?<![\w.]){re.escape(text)}(?![\w.])", row[2]), (
                f"README: {name}'s default is {text}, the table says {row[2]!r}"
            )


# -- only native/ calls llama.cpp ----------------------------------------------------------

#: calls into llama.cpp outside native/ that are not this floor's to move yet
KNOWN_OUTSIDE = {"machine/tiny.py"}  # quantize(): llama_model_quantize for the tiny models


def _llama_calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and (
            node.attr == "_lib" or (isinstance(node.value, ast.Name) and node.value.id == "lc")
        ):
            found.append(f"{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.ClassDef) and any(
            ast.unparse(b).endswith("Structure") for b in node.bases
        ):
            found.append(f"{node.lineno}: ctypes struct {node.name}")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            if any(m and m.startswith("llama_cpp.llama_cpp") for m in mods):
                found.append(f"{node.lineno}: imports llama_cpp.llama_cpp")
    return found


def test_only_native_calls_llama_cpp() -> None:
    """Every ctypes struct and every call into llama.cpp's C API is native/'s; backends/
    does not even import ctypes (the worker's prctl excepted)."""
    wrong = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("native/") or rel in KNOWN_OUTSIDE:
            continue
        if found := _llama_calls(path):
            wrong[rel] = found
    assert not wrong, f"calls into llama.cpp outside native/: {wrong}"
    ctypes_users = [
        p.name
        for p in (PACKAGE / "backends").glob("*.py")
        if re.search(r"^\s*import ctypes\b", p.read_text(encoding="utf-8"), re.MULTILINE)
    ]
    assert ctypes_users == ["worker.py"]
