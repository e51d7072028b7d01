"""Tests of the pure sweep core: grids, selection strategies, ids, YAML, two phases,
progress, JSONL streams, resume, sharding and merge. No llama.cpp needed."""

from __future__ import annotations

import json
import re
import textwrap
import warnings
from pathlib import Path

import pytest

from pytest_llmperf.errors import UsageError
from pytest_llmperf.model.knobs import Choice, Switch, Text
from pytest_llmperf.model.params import KNOBS, LoadParams, value_id
from pytest_llmperf.model.workloads import Workload
from pytest_llmperf.sweep import (
    STRATEGY_TABLE,
    Axis,
    PointList,
    ProgressLine,
    Ranked,
    Selection,
    Sweep,
    SweepPoint,
    SweepWarning,
    append_result,
    axis_indices,
    completed_ids,
    deepen,
    fmt_duration,
    load_sweep,
    load_sweeps,
    merge,
    merge_report,
    parse_int_range,
    parse_shard,
    plan_summary,
    rank,
    read_ranking,
    read_results,
    select_indices,
    shard,
    write_ranking,
)

# The seed's example: max_crops 2..12 step 2 (6), top_k 4..32 step 4 (8, default 8),
# num_active_blocks 8..16 step 2 (5), mapped onto integer load params.
SEED_AXES = {
    "n_threads": "2-12+2",  # max_crops
    "n_batch": {"values": "4-32+4", "default": 8},  # top_k
    "n_ctx": "8-16+2",  # num_active_blocks
}
FIELDS = ("n_threads", "n_batch", "n_ctx")


@pytest.fixture
def seed_sweep() -> Sweep:
    return Sweep.define("exp5", models=["tiny-moe"], base="-ub 1", axes=SEED_AXES)


def axis_values(points: list[SweepPoint]) -> tuple[list[int], ...]:
    return tuple(sorted({getattr(p.params, f) for p in points}) for f in FIELDS)


KV_BATCH_YAML = """
sweeps:
  cpu:
    models: [tiny-moe, tiny-dense]
    workloads: [pp512, tg128, "pg512,128", "tg128@d4096"]
    repetitions: 2
    base: "-c 8192 -fa on"
    axes:
      kv_cache:
        - {name: f16_f16, args: "-ctk f16 -ctv f16"}
        - {name: q8_f16, args: "-ctk q8_0 -ctv f16"}
      batch:
        - {name: std, args: "-b 2048 -ub 512"}
        - {name: small, args: "-b 256 -ub 64"}
      n_threads: "1-4*2"
    deep:
      top_k: 2
      metric: tg_tps
      repetitions: 5
      axes:
        n_ubatch: [64, 128]
"""


def write(tmp_path: Path, text: str, name: str = "sweeps.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# -- seed counts and value lists ----------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "count", "values"),
    [
        ("full", 240, ([2, 4, 6, 8, 10, 12], list(range(4, 33, 4)), [8, 10, 12, 14, 16])),
        ("stratified", 27, ([2, 6, 12], [4, 16, 32], [8, 12, 16])),
        ("boundary", 45, ([2, 6, 12], [4, 8, 16, 24, 32], [8, 12, 16])),
        ("balanced", 36, ([2, 6, 12], [4, 12, 20, 32], [8, 12, 16])),
        ("custom_sparse", 36, ([2, 6, 12], [4, 12, 20, 32], [8, 12, 16])),
    ],
)
def test_seed_counts_and_values(
    seed_sweep: Sweep, strategy: str, count: int, values: tuple[list[int], ...]
) -> None:
    points = seed_sweep.points(strategy)
    assert len(points) == count
    assert axis_values(points) == values
    assert points.grid_size == 240


def test_balanced_without_default_is_the_same(seed_sweep: Sweep) -> None:
    axes = dict(SEED_AXES, n_batch="4-32+4")
    sweep = Sweep.define("exp5", base="-ub 1", axes=axes)
    assert len(sweep.points("balanced")) == 36


def test_balanced_adds_a_default_far_from_the_chosen_values() -> None:
    # 16 values -> 5 spread evenly: indices 0, 3, 7, 11, 15; default index 5 is added
    assert axis_indices("balanced", 16) == [0, 3, 7, 11, 15]
    assert axis_indices("balanced", 16, default=5) == [0, 3, 5, 7, 11, 15]
    assert axis_indices("balanced", 16, default=4) == [0, 3, 7, 11, 15]  # next to 3
    sweep = Sweep.define("t", axes={"n_threads": {"values": "1-16", "default": 6}})
    assert [p.params.n_threads for p in sweep.points("balanced")] == [1, 4, 6, 8, 12, 16]


def test_named_variant_axes_are_sampled_by_position() -> None:
    variants = [{"name": f"v{i}", "args": f"-t {i + 1}"} for i in range(8)]
    sweep = Sweep.define("named", axes={"var": variants})
    assert [p.axes["var"] for p in sweep.points("stratified")] == ["v0", "v3", "v7"]
    assert [p.axes["var"] for p in sweep.points("boundary")] == ["v0", "v1", "v3", "v5", "v7"]


def test_custom_sparse_k() -> None:
    assert axis_indices("custom_sparse", 10, k=3) == [0, 3, 6, 9]
    assert axis_indices("custom_sparse", 11, k=3) == [0, 3, 6, 10]
    assert axis_indices("custom_sparse", 1) == [0]
    assert axis_indices("custom_sparse", 2) == [0, 1]
    assert axis_indices("custom_sparse", 5, k=1) == [0, 1, 2, 3, 4]


def test_boundary_widest_is_first_of_ties() -> None:
    combos = select_indices([8, 8], "boundary")
    assert len(combos) == 15
    assert sorted({c[0] for c in combos}) == [0, 1, 3, 5, 7]


def test_small_axes_do_not_duplicate() -> None:
    for strategy in ("stratified", "boundary", "balanced", "custom_sparse"):
        assert axis_indices(strategy, 1, widest=True) == [0]
        assert axis_indices(strategy, 2, widest=True) == [0, 1]


# -- the strategy registry ------------------------------------------------------------------

DOC = Path(__file__).parents[2] / "docs" / "SWEEPS.md"


def test_every_strategy_is_in_the_docs_table() -> None:
    rows = re.findall(r"^\| `([a-z_]+)`(?: \(alias(?:es)? ([^)]*)\))? \|", DOC.read_text(), re.M)
    documented = {name: re.findall(r"`([a-z_]+)`", aliases) for name, aliases in rows}
    assert documented == {s.name: list(s.aliases) for s in STRATEGY_TABLE}


def test_strategy_names_and_aliases() -> None:
    for s in STRATEGY_TABLE:
        for name in (s.name, *s.aliases, s.name.upper().replace("_", "-")):
            assert Selection(name).strategy == s.name
    with pytest.raises(UsageError) as err:
        Selection("random")
    assert all(s.name in str(err.value) for s in STRATEGY_TABLE)
    with pytest.raises(UsageError, match="lhs samples whole combinations"):
        axis_indices("lhs", 4)


def test_describe_shows_the_options_a_strategy_reads() -> None:
    assert Selection("custom_sparse", k=3).describe().endswith("(k=3)")
    assert Selection("lhs").describe().endswith("(size=auto, seed=42)")
    assert Selection("lhs", size=9, seed=1).describe().endswith("(size=9, seed=1)")
    assert Selection("full").describe() == "full: every combination"


# -- axes read by each load parameter's spec ---------------------------------------------------


TEXT_EXAMPLES = {
    "override_tensor": ["exps=CPU", "ffn_up=CPU"],
    "tensor_split": ["3/1", "1/1"],
    "device": ["CUDA0", "none"],
    "cpu_mask": ["0x3", "0x1"],
}


@pytest.mark.parametrize("name", list(KNOBS))
def test_every_load_parameter_is_an_axis(name: str) -> None:
    kind = KNOBS[name].kind
    if isinstance(kind, Choice):
        values: list[object] = list(kind.values)
    elif isinstance(kind, Switch):
        values = [False, True]
    elif isinstance(kind, Text):
        values = list(TEXT_EXAMPLES[name])
    else:
        values = [8, 16] if name == "n_ctx" else [2, 1]
    axis = Axis.parse(name, values)
    assert axis.field == name
    expected = sorted(values, key=kind.sort_key) if kind.ordered else values
    assert axis.names == [value_id(name, v) for v in expected]
    assert [dict(v.overrides)[name] for v in axis.variants] == expected


# -- Latin hypercube ----------------------------------------------------------------------


def test_lhs_covers_every_value(seed_sweep: Sweep) -> None:
    points = seed_sweep.points("lhs", size=60)
    assert len(points) == 60
    assert len({p.id for p in points}) == 60
    assert axis_values(points) == axis_values(seed_sweep.points("full"))


@pytest.mark.parametrize("seed", [0, 1, 7, 42, 1234])
@pytest.mark.parametrize("size", [8, 9, 13, 20, 33])
def test_lhs_covers_every_value_whenever_size_reaches_the_largest_axis(
    seed: int, size: int
) -> None:
    lengths = [6, 8, 5]
    combos = select_indices(lengths, Selection("lhs", size=size, seed=seed))
    assert len(combos) == size == len(set(combos))
    for j, n in enumerate(lengths):
        assert {c[j] for c in combos} == set(range(n))


def test_lhs_deterministic(seed_sweep: Sweep) -> None:
    a = seed_sweep.points("lhs", size=60, seed=42).ids()
    b = seed_sweep.points(Selection("lhs", size=60, seed=42)).ids()
    c = seed_sweep.points("lhs", size=60, seed=43).ids()
    assert a == b
    assert a != c


def test_lhs_default_size_and_caps(seed_sweep: Sweep) -> None:
    assert len(seed_sweep.points("lhs")) == 60  # a quarter of 240
    assert len(seed_sweep.points("lhs", size=1000)) == 240
    assert len(select_indices([3], Selection("lhs", size=2))) == 2


def test_lhs_dedupe_keeps_the_requested_count() -> None:
    # a grid of 2x2x2: LHS of 7 would have many duplicates
    combos = select_indices([2, 2, 2], Selection("lhs", size=7, seed=3))
    assert len(combos) == len(set(combos)) == 7


# -- ranges -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("1-16*2", [1, 2, 4, 8, 16]),
        ("0-99+10", [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]),
        ("8-16", [8, 9, 10, 11, 12, 13, 14, 15, 16]),
        ("1,2,4", [1, 2, 4]),
        ("1-4,8,16-64*2", [1, 2, 3, 4, 8, 16, 32, 64]),
        ("7", [7]),
        ("-1", [-1]),
    ],
)
def test_ranges(text: str, values: list[int]) -> None:
    assert parse_int_range(text) == values


@pytest.mark.parametrize("text", ["x", "1-", "4-2", "0-8*2", "1-8*1", "1,,2", "", "1.5"])
def test_bad_ranges(text: str) -> None:
    with pytest.raises(UsageError):
        parse_int_range(text)


def test_plain_axis_values_sorted_and_ngl_all_last() -> None:
    sweep = Sweep.define("t", axes={"n_gpu_layers": ["all", 0, 99], "n_threads": [4, 1, 2]})
    axes = {a.name: a.names for a in sweep.axes}
    assert axes == {"n_gpu_layers": ["ngl0", "ngl99", "nglall"], "n_threads": ["t1", "t2", "t4"]}


def test_plain_value_kinds() -> None:
    sweep = Sweep.define(
        "t",
        axes={
            "flash_attn": [True, False, "auto"],
            "type_k": ["f16", "Q8_0"],
            "cpu_moe": [False, True],
        },
    )
    names = {a.name: a.names for a in sweep.axes}
    assert names == {
        "flash_attn": ["faon", "faoff", "faauto"],
        "type_k": ["ctkf16", "ctkq8_0"],
        "cpu_moe": ["nocpumoe", "cpumoe"],
    }
    point = sweep.points()[-1]
    assert point.params.flash_attn == "auto"
    assert point.params.type_k == "q8_0"
    assert point.params.cpu_moe is True


# -- ids and points -----------------------------------------------------------------------


def test_ids_name_each_variant(tmp_path: Path) -> None:
    sweep = load_sweeps(write(tmp_path, KV_BATCH_YAML))["cpu"]
    points = sweep.points()
    assert len(points) == 2 * 2 * 2 * 3 == sweep.grid_size
    by_id = {p.id: p for p in points}
    point = by_id["tiny-moe-q8_f16-small-t2"]
    assert point.model == "tiny-moe"
    assert point.axes == {"kv_cache": "q8_f16", "batch": "small", "n_threads": "t2"}
    assert point.params == LoadParams(
        n_ctx=8192, flash_attn="on", type_k="q8_0", n_batch=256, n_ubatch=64, n_threads=2
    )
    assert point.workloads == tuple(
        Workload.parse(w) for w in ("pp512", "tg128", "pg512,128", "tg128@d4096")
    )
    assert point.repetitions == 2
    assert point.sweep == "cpu"


def test_ids_unique_stable_and_safe(tmp_path: Path) -> None:
    path = write(tmp_path, KV_BATCH_YAML)
    first = load_sweeps(path)["cpu"].points().ids()
    again = load_sweeps(path)["cpu"].points().ids()
    assert first == again
    assert len(set(first)) == len(first)
    for pid in first:
        assert re.fullmatch(r"[A-Za-z0-9_.+-]+", pid), pid
        assert "::" not in pid and " " not in pid and "[" not in pid


def test_colliding_ids_are_an_error() -> None:
    axes = {
        "a": [{"name": "x-y", "args": ""}, {"name": "x", "args": "-t 2"}],
        "b": [{"name": "z", "args": ""}, {"name": "y-z", "args": "-t 3"}],
    }
    with pytest.raises(UsageError, match="two points get the id 'x-y-z'"):
        Sweep.define("c", axes=axes).points()


def test_model_ids_slugged() -> None:
    sweep = Sweep.define("m", models=["models/My Model.gguf"], axes={"n_threads": [1]})
    assert sweep.points()[0].id == "models_My_Model.gguf-t1"
    assert sweep.points()[0].model == "models/My Model.gguf"


def test_no_models_no_axes() -> None:
    points = Sweep.define("bare").points()
    assert [p.id for p in points] == ["default"]
    assert points[0].model == ""
    assert points[0].workloads == (Workload.parse("pp512"), Workload.parse("tg128"))


def test_python_and_yaml_are_the_same(tmp_path: Path) -> None:
    from_yaml = load_sweeps(write(tmp_path, KV_BATCH_YAML))["cpu"]
    from_python = Sweep.define(
        "cpu",
        models=["tiny-moe", "tiny-dense"],
        workloads=["pp512", "tg128", "pg512,128", "tg128@d4096"],
        repetitions=2,
        base={"n_ctx": 8192, "flash_attn": "on"},
        axes={
            "kv_cache": [
                {"name": "f16_f16", "args": "-ctk f16 -ctv f16"},
                {"name": "q8_f16", "args": "-ctk q8_0 -ctv f16"},
            ],
            "batch": [
                {"name": "std", "args": "-b 2048 -ub 512"},
                {"name": "small", "args": "-b 256 -ub 64"},
            ],
            "n_threads": [1, 2, 4],
        },
    )
    assert [(p.id, p.params) for p in from_yaml.points()] == [
        (p.id, p.params) for p in from_python.points()
    ]


def test_axis_order_applies_later_axes_last() -> None:
    sweep = Sweep.define(
        "o", axes={"kv": [{"name": "q8", "args": "-ctk q8_0"}], "type_k": ["q4_0"]}
    )
    assert sweep.points()[0].params.type_k == "q4_0"


def test_invalid_points_named_or_skipped() -> None:
    axes = {"n_batch": [64, 2048], "n_ubatch": [128, 512]}
    with pytest.raises(UsageError) as err:
        Sweep.define("v", axes=axes).points()
    message = str(err.value)
    assert "b64-ub128" in message and "b64-ub512" in message
    assert "n_ubatch=128 is larger than n_batch=64" in message
    assert "skip_invalid" in message
    points = Sweep.define("v", axes=axes, skip_invalid=True).points()
    assert points.ids() == ["b2048-ub128", "b2048-ub512"]
    assert [pid for pid, _ in points.skipped] == ["b64-ub128", "b64-ub512"]
    assert any("2 invalid combination(s) skipped" in line for line in plan_summary(points))


def test_fingerprint_key_stable_and_sensitive(seed_sweep: Sweep) -> None:
    a, b = seed_sweep.points("stratified")[:2]
    assert a.fingerprint_key() == seed_sweep.points("stratified")[0].fingerprint_key()
    assert a.fingerprint_key() != b.fingerprint_key()
    assert a.fingerprint_key({"cpu": "x"}) != a.fingerprint_key({"cpu": "y"})
    assert json.loads(json.dumps(a.to_dict()))["id"] == a.id


# -- YAML and errors ----------------------------------------------------------------------


def test_single_sweep_at_top_level(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        models: [tiny-moe]
        workloads: tg128
        axes:
          n_threads: "1-4*2"
        select: {strategy: lhs, size: 2, seed: 1}
        """,
        name="threads.yaml",
    )
    sweeps = load_sweeps(path)
    assert list(sweeps) == ["threads"]
    sweep = load_sweep(path)
    assert sweep.selection == Selection("lhs", 2, 1)
    assert len(sweep.points()) == 2
    assert len(sweep.points("full")) == 3


@pytest.mark.parametrize(
    ("body", "where", "says"),
    [
        ("axes: {n_threads: [1, 2, x]}", "sweeps.cpu.axes.n_threads[2]", "'x' is not an integer"),
        ("axes: {n_threads: '1-'}", "sweeps.cpu.axes.n_threads", "is not an integer or a range"),
        ("axes: {n_thread: [1, 2]}", "sweeps.cpu.axes.n_thread", "did you mean"),
        ("axes: {kv: [f16]}", "sweeps.cpu.axes.kv", "not a load parameter"),
        ("axes: {kv: [{name: a}, f16]}", "sweeps.cpu.axes.kv[1]", "is a plain value"),
        (
            "axes: {n_threads: [{name: a, args: '-t 1'}]}",
            "sweeps.cpu.axes.n_threads[0]",
            "load parameter",
        ),
        (
            "axes: {kv: [{name: a, args: '-ctk q9'}]}",
            "sweeps.cpu.axes.kv[0].args",
            "unknown KV cache type",
        ),
        ("axes: {kv: [{name: a, arg: '-t 1'}]}", "sweeps.cpu.axes.kv[0].arg", "unknown key"),
        ("axes: {kv: [{name: 'a b', args: ''}]}", "sweeps.cpu.axes.kv[0].name", "no spaces"),
        ("axes: {kv: [{name: a}, {name: a}]}", "sweeps.cpu.axes.kv[1].name", "twice"),
        ("axes: {n_threads: [1, 1]}", "sweeps.cpu.axes.n_threads[1]", "twice"),
        ("axes: {n_threads: []}", "sweeps.cpu.axes.n_threads", "at least one value"),
        (
            "axes: {n_threads: {values: [1, 2], default: 9, x: 1}}",
            "sweeps.cpu.axes.n_threads.x",
            "unknown key",
        ),
        (
            "axes: {type_k: {values: [f16], default: q8_0}}",
            "sweeps.cpu.axes.type_k.default",
            "not one of the values",
        ),
        ("repetitons: 3", "sweeps.cpu.repetitons", "did you mean 'repetitions'"),
        ("repetitions: 0", "sweeps.cpu.repetitions", "must be >= 1"),
        ("workloads: [tg128, qq1]", "sweeps.cpu.workloads[1]", "not understood"),
        ("models: [a, 3]", "sweeps.cpu.models[1]", "model id"),
        ("base: '-t 0'", "sweeps.cpu.base", "must be >= 1"),
        ("base: {n_thread: 2}", "sweeps.cpu.base", "unknown load parameter"),
        ("sampling: {strategy: random}", "sweeps.cpu.sampling.strategy", "unknown selection"),
        ("select: {strategy: random}", "sweeps.cpu.select.strategy", "unknown selection"),
        ("skip_invalid: maybe", "sweeps.cpu.skip_invalid", "true or false"),
        ("deep: {metric: nope}", "sweeps.cpu.deep.metric", "unknown metric"),
        ("deep: {top_k: 0}", "sweeps.cpu.deep.top_k", "must be >= 1"),
    ],
)
def test_yaml_errors_name_file_and_key(tmp_path: Path, body: str, where: str, says: str) -> None:
    path = write(tmp_path, "sweeps:\n  cpu:\n    " + body + "\n")
    with pytest.raises(UsageError) as err:
        load_sweeps(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {where}: "), message
    assert says in message


def test_yaml_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read"):
        load_sweeps(tmp_path / "missing.yaml")
    with pytest.raises(UsageError, match=r"not valid YAML at line 2"):
        load_sweeps(write(tmp_path, "a: [1\nb: 2\n"))
    with pytest.raises(UsageError, match="unknown key"):
        load_sweeps(write(tmp_path, "sweeps: {a: {}}\nother: 1\n"))
    with pytest.raises(UsageError, match="must hold a sweep"):
        load_sweeps(write(tmp_path, "- 1\n"))
    two = write(tmp_path, "sweeps: {a: {}, b: {}}\n")
    with pytest.raises(UsageError, match="several sweeps"):
        load_sweep(two)
    with pytest.raises(UsageError, match="no sweep 'c'"):
        load_sweep(two, "c")
    assert load_sweep(two, "b").name == "b"


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    path = write(tmp_path, "sweeps: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_sweeps(path)


def test_yaml_on_off_flash_attn(tmp_path: Path) -> None:
    path = write(tmp_path, "axes: {flash_attn: [on, off]}\n")
    assert [p.params.flash_attn for p in load_sweep(path).points()] == ["on", "off"]


def test_python_errors_name_python() -> None:
    with pytest.raises(UsageError, match=r"^<python>: axes.n_threads\[0\]: 'a' is not"):
        Sweep.define("p", axes={"n_threads": ["a"]})
    with pytest.raises(UsageError, match="unknown selection strategy"):
        Sweep.define("p").points("nope")
    axis = Axis.parse("n_threads", "1-4*2")
    assert axis.names == ["t1", "t2", "t4"]


# -- two phases ---------------------------------------------------------------------------


def results_for(points: list[SweepPoint]) -> list[dict[str, object]]:
    # tg_tps grows with threads and is better with the q8 KV cache
    out: list[dict[str, object]] = []
    for p in points:
        tps = 100.0 * (p.params.n_threads or 1) + (5.0 if p.params.type_k == "q8_0" else 0.0)
        out.append({"id": p.id, "metrics": {"tg_tps": tps, "ttft_ms": {"median": 1000 / tps}}})
    return out


def test_rank_both_directions(tmp_path: Path) -> None:
    sweep = load_sweeps(write(tmp_path, KV_BATCH_YAML))["cpu"]
    results = results_for(sweep.points())
    best = rank(results, "tg_tps", top_k=2)
    assert [r.id for r in best] == ["tiny-dense-q8_f16-small-t4", "tiny-dense-q8_f16-std-t4"]
    assert best[0].better == "higher" and best[0].value == 405.0
    fastest = rank(results, "ttft_ms", top_k=1)
    assert fastest[0].id == best[0].id
    worst = rank(results, "tg_tps", top_k=1, better="lower")
    assert worst[0].value == 100.0


def test_rank_ignores_errors_and_missing_and_filters_workload() -> None:
    rows = [
        {"id": "a", "workload": "tg128", "metrics": {"tg_tps": 10}},
        {"id": "b", "workload": "pp512", "metrics": {"pp_tps": 99}},
        {"id": "c", "workload": "tg128", "metrics": {"tg_tps": 50}, "error": "crash"},
        {
            "id": "d",
            "workload": {"name": "tg128"},
            "metrics": {"tg_tps": {"summary": {"median": 20}}},
        },
        {"id": "e", "workload": "tg64", "metrics": {"tg_tps": 30}},
    ]
    assert [r.id for r in rank(rows, "tg_tps")] == ["e", "d", "a"]
    assert [r.id for r in rank(rows, "tg_tps", workload="tg128")] == ["d", "a"]
    with pytest.raises(UsageError, match="unknown metric"):
        rank(rows, "speed")
    assert [r.id for r in rank(rows, "speed", better="higher")] == []


@pytest.mark.parametrize("name", ["ranking.json", "ranking.yaml"])
def test_ranking_file_round_trip_and_edit(tmp_path: Path, name: str) -> None:
    ranked = [Ranked("a-t4", 400.0, "tg_tps", "higher"), Ranked("b-t2", 200.0, "tg_tps", "higher")]
    path = tmp_path / name
    write_ranking(path, ranked)
    assert read_ranking(path) == ["a-t4", "b-t2"]
    if name.endswith(".yaml"):
        text = path.read_text()
        assert "tg_tps (higher is better)" in text and "# 400" in text
        path.write_text("- b-t2\n- a-t4\n")  # the user reorders
        assert read_ranking(path) == ["b-t2", "a-t4"]
    path.write_text('{"ranking": ["x"]}')
    assert read_ranking(path) == ["x"]
    path.write_text("[]")
    with pytest.raises(UsageError, match=f"{name}: write a list of point ids"):
        read_ranking(path)
    with pytest.raises(UsageError, match=r"ends in \.json"):
        write_ranking(tmp_path / "r.txt", ["a"])


def test_deepen_from_ranking(tmp_path: Path) -> None:
    sweep = load_sweeps(write(tmp_path, KV_BATCH_YAML))["cpu"]
    explore = sweep.points("stratified")
    ranked = rank(results_for(explore), "tg_tps")
    ranking = tmp_path / "ranking.yaml"
    write_ranking(ranking, ranked)
    deep = deepen(sweep, read_ranking(ranking))  # top_k 2, n_ubatch [64, 128], 5 reps
    parents = [r.id for r in ranked[:2]]
    assert [p.id for p in deep] == [f"{pid}-{ub}" for pid in parents for ub in ("ub64", "ub128")]
    for p in deep:
        assert p.parent in parents and p.id.startswith(f"{p.parent}-")
        assert p.phase == "deep" and p.repetitions == 5
        assert p.params.n_ubatch in (64, 128)
        assert p.axes["kv_cache"] == "q8_f16"
    assert deep.grid_size == 4


def test_deepen_arguments_override(tmp_path: Path) -> None:
    sweep = load_sweeps(write(tmp_path, KV_BATCH_YAML))["cpu"]
    ids = ["tiny-moe-f16_f16-std-t1", "tiny-moe-q8_f16-small-t2", "tiny-moe-f16_f16-std-t4"]
    deep = deepen(
        sweep,
        ids,
        top_k=3,
        deep_axes={"n_threads_batch": "1-4*2"},
        repetitions=7,
        selection="stratified",
    )
    assert len(deep) == 9
    assert {p.repetitions for p in deep} == {7}
    assert deep[0].id == "tiny-moe-f16_f16-std-t1-tb1"
    # no deep axes: the winners again, with more repetitions
    plain = deepen(Sweep.define("x", axes={"n_threads": [1, 2]}), ["t2"], deep_axes={})
    assert [(p.id, p.repetitions, p.params.n_threads) for p in plain] == [("t2-deep", 6, 2)]
    with pytest.raises(UsageError, match="nope are not points"):
        deepen(sweep, ["nope"])


def test_deepen_invalid_points_skipped_or_reported() -> None:
    base = {"n_batch": [128, 2048]}
    deep_axes = {"n_ubatch": [64, 512]}
    with pytest.raises(UsageError, match="b128-ub512"):
        deepen(Sweep.define("d", base="-ub 64", axes=base), ["b128", "b2048"], deep_axes=deep_axes)
    sweep = Sweep.define("d", base="-ub 64", axes=base, skip_invalid=True)
    ok = deepen(sweep, ["b128"], deep_axes=deep_axes)
    assert ok.ids() == ["b128-ub64"] and len(ok.skipped) == 1


# -- progress and plan ---------------------------------------------------------------------


def test_progress_line() -> None:
    line = ProgressLine(3, 27, "tiny-moe-q8_f16-small-t2", "tg_tps 812.4 t/s", [3.0, 3.0, 3.0])
    assert str(line) == "[3/27] tiny-moe-q8_f16-small-t2  tg_tps 812.4 t/s  ETA 1m12s"
    assert ProgressLine(3, 27, "x", elapsed=9.0).eta_seconds() == 72.0
    assert ProgressLine(1, 2, "x").render() == "[1/2] x  ETA -"
    assert ProgressLine(2, 2, "x", elapsed=[1, 1]).render().endswith("ETA 0s")
    odd = ProgressLine(1, 2, "a\rb", "c\nd", [1.0]).render()
    assert "\r" not in odd and "\n" not in odd


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (59.4, "59s"), (72, "1m12s"), (3600, "1h00m"), (7500, "2h05m")]
)
def test_fmt_duration(seconds: float, text: str) -> None:
    assert fmt_duration(seconds) == text


def test_plan_summary(seed_sweep: Sweep) -> None:
    points = seed_sweep.points("balanced")
    lines = plan_summary(points, "balanced", probe_seconds_per_run=2.0)
    assert lines[0].startswith("sweep exp5: strategy balanced:")
    assert lines[1] == "36 of 240 grid points (15%)"
    assert lines[2].startswith("216 timed runs (36 points x 2 workloads x 3 repetitions")
    assert lines[3].startswith("estimated time: 7m12s")
    bare = plan_summary(list(points), Selection("lhs", 60))
    assert bare[1] == "36 points" and len(bare) == 3
    assert plan_summary(list(points), "full", grid_size=72)[1] == "36 of 72 grid points (50%)"


# -- JSONL streams, resume, shards, merge --------------------------------------------------


def test_append_and_read(tmp_path: Path) -> None:
    path = tmp_path / "out" / "results.jsonl"
    assert read_results(path) == []
    append_result(path, {"id": "a", "metrics": {"tg_tps": 1.0}})
    append_result(path, {"id": "b", "metrics": {"tg_tps": 2.0}, "finished_at": "t"})
    rows = read_results(path)
    assert [r["id"] for r in rows] == ["a", "b"]
    assert rows[0]["finished_at"] and rows[1]["finished_at"] == "t"
    assert path.read_text().count("\n") == 2
    with pytest.raises(UsageError, match="needs an 'id'"):
        append_result(path, {"metrics": {}})


def test_truncated_last_line_is_ignored_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    append_result(path, {"id": "a"})
    with path.open("ab") as f:
        f.write(b'{"id": "b", "metr')  # crash mid-write
    with pytest.warns(SweepWarning, match=r"results.jsonl:2: .*cut short"):
        assert [r["id"] for r in read_results(path)] == ["a"]
    # the next append closes the cut line: nothing is glued to it
    append_result(path, {"id": "c"})
    with pytest.warns(SweepWarning, match=r":2: unreadable"):
        assert [r["id"] for r in read_results(path)] == ["a", "c"]


def test_non_record_lines_warn(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'[1, 2]\n\n{"id": "a"}\n\xff\xfe\n')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [r["id"] for r in read_results(path)] == ["a"]
    assert len(caught) == 2 and all(issubclass(w.category, SweepWarning) for w in caught)


def test_resume(tmp_path: Path, seed_sweep: Sweep) -> None:
    points = seed_sweep.points("stratified")
    keys = {p.id: p.fingerprint_key({"machine": "m1"}) for p in points}
    path = tmp_path / "results.jsonl"
    p0, p1, p2 = points[:3]
    append_result(path, {"id": p0.id, "fingerprint_key": keys[p0.id]})
    append_result(path, {"id": p1.id, "fingerprint_key": "other-machine"})
    append_result(path, {"id": p2.id, "fingerprint_key": keys[p2.id], "error": "SIGILL"})
    assert completed_ids(path, keys) == {p0.id}
    assert completed_ids(read_results(path), keys) == {p0.id}
    todo = [p for p in points if p.id not in completed_ids(path, keys)]
    assert len(todo) == 26


def test_parse_shard() -> None:
    assert parse_shard("2/4") == (2, 4)
    assert parse_shard(" 1 / 1 ") == (1, 1)
    for bad in ("0/4", "5/4", "2", "a/b", "1/0", "-1/2"):
        with pytest.raises(UsageError, match=r"i/N|between 1 and N"):
            parse_shard(bad)
    with pytest.raises(UsageError):
        shard(["a"], 3, 2)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 27, 40])
def test_shards_partition(seed_sweep: Sweep, n: int) -> None:
    points = seed_sweep.points("stratified")
    parts = [shard(points, i, n) for i in range(1, n + 1)]
    ids = [p.id for part in parts for p in part]
    assert sorted(ids) == sorted(points.ids())  # union is all, and disjoint
    sizes = [len(part) for part in parts]
    assert max(sizes) - min(sizes) <= 1
    # independent of the order of definition
    shuffled = list(reversed(points))
    assert [{p.id for p in shard(shuffled, i, n)} for i in range(1, n + 1)] == [
        {p.id for p in part} for part in parts
    ]


def test_shard_ids() -> None:
    assert shard(["c", "a", "b", "d"], 1, 2) == ["c", "a"]
    assert shard(["c", "a", "b", "d"], 2, 2) == ["b", "d"]


def test_merge(tmp_path: Path) -> None:
    s1, s2 = tmp_path / "s1.jsonl", tmp_path / "s2.jsonl"
    append_result(s1, {"id": "a", "fingerprint_key": "k", "v": 1, "finished_at": "2025-01-02"})
    append_result(s1, {"id": "b", "fingerprint_key": "k", "v": 1, "finished_at": "2025-01-01"})
    append_result(s2, {"id": "b", "fingerprint_key": "k", "v": 2, "finished_at": "2025-01-03"})
    append_result(s2, {"id": "a", "fingerprint_key": "k", "v": 0, "finished_at": "2025-01-01"})
    append_result(s2, {"id": "c", "fingerprint_key": "k1", "v": 1})
    append_result(s2, {"id": "c", "fingerprint_key": "k2", "v": 2})
    with s2.open("ab") as f:
        f.write(b'{"id": "d"')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = merge([s1, s2])
    assert [(r["id"], r["fingerprint_key"], r["v"]) for r in rows] == [
        ("a", "k", 1), ("b", "k", 2), ("c", "k1", 1), ("c", "k2", 2),
    ]  # fmt: skip
    messages = [str(w.message) for w in caught]
    assert any("c: measured under 2 fingerprint keys" in m for m in messages)
    assert any("unreadable" in m for m in messages)
    with pytest.warns(SweepWarning):
        report = merge_report([s1, s2])
    assert report.duplicates == 2 and len(report.conflicts) == 1


def test_merge_without_times_keeps_the_later_file(tmp_path: Path) -> None:
    s1, s2 = tmp_path / "s1.jsonl", tmp_path / "s2.jsonl"
    for path, v in ((s1, 1), (s2, 2)):
        path.write_text(json.dumps({"id": "a", "fingerprint_key": "k", "v": v}) + "\n")
    assert [r["v"] for r in merge([s1, s2])] == [2]
    assert [r["v"] for r in merge([s2, s1])] == [1]


def test_merge_keeps_records_of_different_sweeps_apart(tmp_path: Path) -> None:
    s1, s2 = tmp_path / "s1.jsonl", tmp_path / "s2.jsonl"
    append_result(s1, {"id": "p1", "sweep": "a", "fingerprint_key": "k", "v": 1})
    append_result(s2, {"id": "p1", "sweep": "b", "fingerprint_key": "k", "v": 2})
    append_result(
        s2, {"id": "p1", "sweep": "a", "fingerprint_key": "k", "v": 3, "finished_at": "9"}
    )
    report = merge_report([s1, s2])
    assert [(r["sweep"], r["v"]) for r in report.records] == [("a", 3), ("b", 2)]
    assert report.duplicates == 1 and report.conflicts == ()
    assert report.shared == ("p1: a point of sweeps a and b (their records are kept apart)",)
    # a conflict is within one sweep, and says which
    s3 = tmp_path / "s3.jsonl"
    append_result(s3, {"id": "p1", "sweep": "a", "fingerprint_key": "k2", "v": 4})
    report = merge_report([s1, s2, s3])
    assert len(report.records) == 3
    assert report.conflicts == (
        f"p1 (sweep a): measured under 2 fingerprint keys ({s2}, {s3}); all kept, "
        "compare with care",
    )


def test_resume_counts_only_the_sweeps_own_records() -> None:
    rows = [{"id": "p", "sweep": "a", "fingerprint_key": "k"}, {"id": "q", "fingerprint_key": "k"}]
    keys = {"p": "k", "q": "k"}
    assert completed_ids(rows, keys, sweep="b") == {"q"}  # q: a record without a sweep
    assert completed_ids(rows, keys, sweep="a") == {"p", "q"}
    assert completed_ids(rows, keys) == {"p", "q"}


def test_unreadable_results_are_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=rf"^{re.escape(str(tmp_path))}: is a directory"):
        read_results(tmp_path)


def test_ranking_output_errors_name_the_path_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(UsageError, match=r"/f is a file, not a directory; choose a path"):
        write_ranking(tmp_path / "f" / "r.yaml", ["a"])
    (tmp_path / "d.yaml").mkdir()
    with pytest.raises(UsageError, match=r"d.yaml is a directory; name a file, e\.g\. "):
        write_ranking(tmp_path / "d.yaml", ["a"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.yaml", "f"]
    assert not any((tmp_path / "d.yaml").iterdir())


def test_point_list_is_a_list(seed_sweep: Sweep) -> None:
    points = seed_sweep.points("stratified")
    assert isinstance(points, PointList) and isinstance(points, list)
    assert points.selection.strategy == "stratified" and points.sweep == "exp5"


def test_the_documented_example_loads(tmp_path: Path) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "SWEEPS.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(.*?)```", doc, re.S)
    assert block is not None
    sweep = load_sweeps(write(tmp_path, block.group(1)))["cpu"]
    points = sweep.points()
    assert points.selection.strategy == "balanced"
    assert "tiny-moe-q8_f16-small-t4-nglall" in points.ids()
    ranked = rank(results_for(points), "tg_tps")
    deep = deepen(sweep, [r.id for r in ranked])
    assert len(deep) == 3 * 3 and {p.repetitions for p in deep} == {6}


def test_select_and_its_older_spelling_sampling(tmp_path: Path) -> None:
    body = "models: [tiny-moe-mxfp4]\naxes: {n_threads: [1, 2]}\n"
    old = tmp_path / "old.yaml"
    old.write_text(body + "sampling: boundary\n")
    new = tmp_path / "new.yaml"
    new.write_text(body + "select: boundary\n")
    assert load_sweep(old).selection == load_sweep(new).selection == Selection("boundary")
    both = tmp_path / "both.yaml"
    both.write_text(body + "select: boundary\nsampling: full\n")
    with pytest.raises(UsageError, match="both 'select' and 'sampling'"):
        load_sweep(both)
