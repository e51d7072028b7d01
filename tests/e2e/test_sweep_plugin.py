"""The pytest side of sweeps (pytest_llmperf.plugin.sweep), through pytester with the real
plugin loaded and the built-in tiny models (tiny workloads, llama.cpp in process)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.sweep import load_sweep, read_ranking, read_results, shard

SWEEPS = """
sweeps:
  kv:
    models: [tiny-moe-q8_0]
    workloads: [tg8, pp32]
    repetitions: 1
    base: {n_ctx: 256, n_threads: 1}
    axes:
      kv_cache:
        - {name: f16_f16, args: "-ctk f16 -ctv f16"}
        - {name: q8_f16, args: "-ctk q8_0 -ctv f16"}
      batch:
        - {name: small, args: "-b 32 -ub 32"}
        - {name: std, args: "-b 64 -ub 64"}
    deep:
      top_k: 2
      repetitions: 2
      axes:
        n_ubatch: [16, 32]
  grid:
    models: [tiny-moe-q8_0]
    workloads: [tg8]
    repetitions: 1
    base: "-c 256 -ub 16"
    axes:
      n_threads: "1-6"
      n_batch: [32, 64, 128, 256]
"""

TEST_KV = """
import pytest

@pytest.mark.llmperf_sweep(file="sweeps.yaml", name="kv")
def test_sweep(llm_perf):
    llm_perf.measure_all()
"""

TEST_GRID = """
import pytest

@pytest.mark.llmperf_sweep(file="sweeps.yaml", name="grid")
def test_grid(llm_perf):
    llm_perf.measure_all()
"""

KV_IDS = [
    "tiny-moe-q8_0-f16_f16-small",
    "tiny-moe-q8_0-f16_f16-std",
    "tiny-moe-q8_0-q8_f16-small",
    "tiny-moe-q8_0-q8_f16-std",
]


@pytest.fixture(scope="module", autouse=True)
def _llama_loaded_outside_pytester() -> None:
    """pytester's in-process runs drop the modules first imported inside them; llama.cpp's
    log callback lives in llama_lib, and calling it after its module is gone crashes the
    process (SIGSEGV/SIGILL). Import what the inner runs use here, once, so it stays."""
    import scipy.stats.qmc  # noqa: F401  (lhs selection)

    from pytest_llmperf.backends import engine, runner  # noqa: F401
    from pytest_llmperf.machine import fingerprint
    from pytest_llmperf.native import llama_lib

    llama_lib.load()
    fingerprint.software()


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".yaml", sweeps=SWEEPS)
    pytester.makepyfile(test_kv=TEST_KV, test_grid=TEST_GRID)
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        "-p",
        "no:cacheprovider",
        "--perf-in-process",
        "--perf-warmup=0",
        "--perf-missing=record",
        f"--perf-baseline-dir={pytester.path / 'bl'}",
        *args,
    )


def collected_ids(result: pytest.RunResult, test: str) -> list[str]:
    pattern = re.compile(rf"::{test}\[(.+)\]$")
    return [m.group(1) for line in result.outlines if (m := pattern.search(line.strip()))]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_llmperf.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- parametrization ------------------------------------------------------------------------


def test_ids_and_k_selection(project: pytest.Pytester) -> None:
    result = run(project, "test_kv.py", "--collect-only", "-q")
    assert collected_ids(result, "test_sweep") == KV_IDS
    result = run(project, "test_kv.py", "--collect-only", "-q", "-k", "q8_f16 and small")
    assert collected_ids(result, "test_sweep") == ["tiny-moe-q8_0-q8_f16-small"]
    result.stdout.fnmatch_lines(["*3 deselected*"])


@pytest.mark.parametrize(
    ("args", "marker", "expected"),
    [
        ((), "", 24),
        (("--perf-strategy=stratified",), "", 9),
        ((), 'strategy="stratified"', 9),
        (("--perf-strategy=custom_sparse", "--perf-k=3"), 'strategy="stratified"', None),
        (("--perf-strategy=lhs", "--perf-sample-size=7", "--perf-seed=3"), "", 7),
    ],
)
def test_strategy_counts(
    pytester: pytest.Pytester, args: tuple[str, ...], marker: str, expected: int | None
) -> None:
    pytester.makefile(".yaml", sweeps=SWEEPS)
    extra = f", {marker}" if marker else ""
    pytester.makepyfile(
        test_grid=TEST_GRID.replace('name="grid"', f'name="grid"{extra}'),
    )
    # the options override the marker, which overrides the file; the core decides the points
    sweep = load_sweep(pytester.path / "sweeps.yaml", "grid")
    opts = dict(a.removeprefix("--perf-").split("=") for a in args)
    strategy = opts.get("strategy") or (marker.split('"')[1] if marker else None)
    points = sweep.points(
        strategy,
        size=int(opts["sample-size"]) if "sample-size" in opts else None,
        seed=int(opts["seed"]) if "seed" in opts else None,
        k=int(opts["k"]) if "k" in opts else None,
    )
    result = run(pytester, "--collect-only", "-q", *args)
    ids = collected_ids(result, "test_grid")
    assert ids == points.ids()
    if expected is not None:
        assert len(ids) == expected
    result.stdout.fnmatch_lines(
        [
            f"llmperf sweep grid (explore): strategy {points.selection.strategy}*",
            f"  {len(ids)} of 24 grid points*",
        ]
    )


def test_registry_sweep_object_and_model(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".yaml",
        llmperf="""
sweeps:
  reg:
    workloads: [tg8]
    repetitions: 1
    base: "-c 256 -t 1 -ub 16"
    axes:
      n_batch: [32, 64]
""",
    )
    pytester.makepyfile(
        """
import pytest
from pytest_llmperf.sweep import Sweep

@pytest.mark.llmperf_sweep(name="reg", model="tiny-dense-q8_0")
def test_reg(llm_perf):
    assert llm_perf.config.model == "tiny-dense-q8_0"

OBJ = Sweep.define("obj", models=["tiny-dense-f16"], workloads=["tg8"], repetitions=1,
                   base="-c 256 -t 1", axes={"n_ubatch": [16, 32]})

@pytest.mark.llmperf_sweep(sweep=OBJ)
def test_obj(llmperf_config):
    assert llmperf_config.sweep == "obj"
    assert dict(llmperf_config.axes) == {"n_ubatch": llmperf_config.name.split("-")[-1]}
"""
    )
    result = run(pytester, "-q")
    result.assert_outcomes(passed=4)
    result = run(pytester, "--collect-only", "-q")
    assert collected_ids(result, "test_reg") == ["b32", "b64"]
    assert collected_ids(result, "test_obj") == ["tiny-dense-f16-ub16", "tiny-dense-f16-ub32"]


@pytest.mark.parametrize(
    ("files", "marker", "message"),
    [
        ({}, 'file="nope.yaml"', "*sweep file 'nope.yaml' not found*"),
        ({"s.yaml": "axes: {n_treads: [1, 2]}\n"}, 'file="s.yaml"', "*s.yaml*n_treads*"),
        ({}, 'name="absent"', "*no sweep 'absent'*"),
        ({}, 'file="sweeps.yaml", name="kv", bogus=1', "*unknown argument(s) bogus*"),
        ({"s.yaml": "axes: {n_threads: [1]}\n"}, 'file="s.yaml"', "*names no models*"),
    ],
)
def test_marker_errors(
    pytester: pytest.Pytester, files: dict[str, str], marker: str, message: str
) -> None:
    pytester.makefile(".yaml", sweeps=SWEEPS)
    for name, text in files.items():
        (pytester.path / name).write_text(text)
    pytester.makepyfile(
        f"""
import pytest

@pytest.mark.llmperf_sweep({marker})
def test_x(llm_perf):
    pass
"""
    )
    result = run(pytester, "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*ERROR collecting*", message])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--perf-shard=3/2",), "*--perf-shard*i must be between 1 and N*"),
        (("--perf-shard=x",), "*--perf-shard*write i/N*"),
        (("--perf-resume",), "*--perf-resume needs --perf-sweep-results*"),
        (("--perf-sweep-metric=nope",), "*--perf-sweep-metric=nope: unknown metric*"),
        (("--perf-ranking=r.txt",), "*ends in .yaml, .yml or .json*"),
    ],
)
def test_option_errors(project: pytest.Pytester, args: tuple[str, ...], message: str) -> None:
    result = run(project, "--collect-only", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


# -- running: plan, progress, results, resume ------------------------------------------------


def test_plan_progress_results_and_resume(project: pytest.Pytester) -> None:
    results = project.path / "r.jsonl"
    result = run(project, "test_kv.py", "-q", f"--perf-sweep-results={results}")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [
            "llmperf sweep kv (explore): strategy full*",
            "  4 of 4 grid points (100%)",
            "  8 timed runs (4 points x 2 workloads x 1 repetitions*",
            "  this run: 4 test(s), 8 timed runs",
            "  estimated time: unknown*--perf-probe*",
        ]
    )
    progress = [line for line in result.outlines if line.startswith("[")]
    assert [line.split()[0] for line in progress] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"]
    assert all(re.search(r" tg_tps \d+(\.\d+)? t/s  ETA \d+s$", line) for line in progress)
    assert {line.split()[1] for line in progress} == set(KV_IDS)

    rows = read_results(results)
    assert sorted(r["id"] for r in rows) == KV_IDS
    row = rows[0]
    for key in ("sweep", "phase", "model", "fingerprint_key", "axes", "params", "metrics"):
        assert row[key], key
    assert row["sweep"] == "kv" and row["phase"] == "explore" and row["error"] is None
    assert row["verdict"] == "new" and row["duration_s"] > 0
    assert row["model"] == "tiny-moe-q8_0" and set(row["axes"]) == {"kv_cache", "batch"}
    assert set(row["metrics"]) == {"tg8", "pp32"}
    assert row["metrics"]["tg8"]["tg_tps"] > 0 and row["metrics"]["pp32"]["pp_tps"] > 0
    # the key the baseline store uses for the test
    test_files = (project.path / "bl").glob("*/**/*.json")  # one file per test
    keys = {k for f in test_files for k in json.loads(f.read_text())["entries"]}
    assert {r["fingerprint_key"] for r in rows} <= keys

    # resume: every point is done
    result = run(project, "test_kv.py", "-q", f"--perf-sweep-results={results}", "--perf-resume")
    result.stdout.fnmatch_lines(["*resume: 4 already done in r.jsonl*", "*4 deselected*"])
    assert len(read_results(results)) == 4

    # drop one record: only that point runs, with an estimate from the earlier results
    lines = results.read_text().splitlines(keepends=True)
    results.write_text("".join(lines[:1] + lines[2:]))
    missing = json.loads(lines[1])["id"]
    result = run(project, "test_kv.py", "-v", f"--perf-sweep-results={results}", "--perf-resume")
    result.assert_outcomes(passed=1, deselected=3)
    result.stdout.fnmatch_lines(
        [
            "*resume: 3 already done*",
            "*estimated time: *from 3 earlier result(s) in r.jsonl*",
            f"*test_sweep[[]{missing}[]] PASSED*",
            f"[[]1/1[]] {missing}  tg_tps *",
        ]
    )
    assert sorted(r["id"] for r in read_results(results)) == KV_IDS


def test_failed_point_is_recorded_and_rerun(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", sweeps=SWEEPS)
    pytester.makepyfile(
        """
import pytest

@pytest.mark.llmperf_sweep(file="sweeps.yaml", name="kv")
def test_sweep(llm_perf):
    llm_perf.measure_all()
    if "q8_f16-std" in llm_perf.config.name:
        raise RuntimeError("boom")
"""
    )
    results = pytester.path / "r.jsonl"
    result = run(pytester, "-q", "-k", "std", f"--perf-sweep-results={results}")
    result.assert_outcomes(passed=1, failed=1, deselected=2)
    result.stdout.fnmatch_lines(["[[]*/2[]] tiny-moe-q8_0-q8_f16-std  FAILED: RuntimeError: boom*"])
    rows = read_results(results)
    assert [(r["id"], r["verdict"], r["error"]) for r in rows if r["error"]] == [
        ("tiny-moe-q8_0-q8_f16-std", "error", "RuntimeError: boom")
    ]
    assert len(rows) == 2
    # resume runs the failed point again, and only it
    result = run(pytester, "-q", "-k", "std", f"--perf-sweep-results={results}", "--perf-resume")
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines(["*resume: 1 already done in r.jsonl*"])


def test_probe_estimate(project: pytest.Pytester) -> None:
    result = run(project, "test_kv.py", "--collect-only", "-q", "--perf-probe")
    result.stdout.fnmatch_lines(
        [
            "  estimated time: *(probe: one run of tg8+pp32 on tiny-moe-q8_0-f16_f16-small "
            "took * s; x 4 points x (repetitions + 0 warm-up)*"
        ]
    )


# -- shards and merge -----------------------------------------------------------------------


def test_shards_partition_the_sweep(project: pytest.Pytester) -> None:
    everything = collected_ids(run(project, "test_grid.py", "--collect-only", "-q"), "test_grid")
    assert len(everything) == 24
    shards = []
    for i in (1, 2, 3):
        result = run(project, "test_grid.py", "--collect-only", "-q", f"--perf-shard={i}/3")
        result.stdout.fnmatch_lines([f"*shard {i}/3 leaves out 16*"])
        ids = collected_ids(result, "test_grid")
        assert ids == shard(everything, i, 3)
        shards.append(set(ids))
    assert set().union(*shards) == set(everything)
    assert sum(len(s) for s in shards) == len(everything)
    # only sweep items are sharded
    project.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = run(project, "test_plain.py", "test_kv.py", "--collect-only", "-q", "--perf-shard=2/2")
    assert "test_plain.py::test_plain" in result.outlines


def test_perf_sweep_runs_one_sweep_only(project: pytest.Pytester) -> None:
    project.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = run(project, "--collect-only", "-q", "--perf-sweep=kv")
    assert collected_ids(result, "test_sweep") == KV_IDS
    assert not collected_ids(result, "test_grid")
    assert "test_plain.py::test_plain" not in result.outlines
    result.stdout.fnmatch_lines(["llmperf sweep kv (explore): *", "*25 deselected*"])
    assert not any(line.startswith("llmperf sweep grid") for line in result.outlines)
    result = run(project, "--collect-only", "-q", "--perf-sweep=kvv")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--perf-sweep=kvv: no collected test runs sweep 'kvv'; collected sweeps: grid, kv*"]
    )


def test_shard_from_the_environment(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMPERF_SHARD", "2/3")
    result = run(project, "test_grid.py", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*shard 2/3 leaves out 16, from LLMPERF_SHARD=2/3*"])
    everything = load_sweep(project.path / "sweeps.yaml", "grid").points().ids()
    assert collected_ids(result, "test_grid") == shard(everything, 2, 3)
    result = run(project, "test_grid.py", "--collect-only", "-q", "--perf-shard=1/3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*the shard sources disagree: --perf-shard=1/3 *LLMPERF_SHARD*"])


def test_shard_results_merge(project: pytest.Pytester) -> None:
    for i in (1, 2):
        result = run(project, "test_kv.py", "-q", "--perf-shard", f"{i}/2",
                     f"--perf-sweep-results=s{i}.jsonl")  # fmt: skip
        result.assert_outcomes(passed=2, deselected=2)
    proc = cli("merge", "s1.jsonl", "s2.jsonl", "-o", "all.jsonl", cwd=project.path)
    assert proc.returncode == 0, proc.stderr
    assert "merged: 4 record(s), 0 duplicate(s) dropped, 0 conflict(s)" in proc.stdout
    assert [r["id"] for r in read_results(project.path / "all.jsonl")] == KV_IDS


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_merge_cli_duplicates_and_conflicts(tmp_path: Path) -> None:
    a = {"id": "p1", "fingerprint_key": "k1", "finished_at": "2026-01-01T00:00:00+00:00"}
    b = {"id": "p2", "fingerprint_key": "k1", "finished_at": "2026-01-01T00:00:00+00:00"}
    newer = dict(a, finished_at="2026-01-02T00:00:00+00:00", metrics={"tg8": {"tg_tps": 2}})
    _write_rows(tmp_path / "a.jsonl", [a, b])
    _write_rows(tmp_path / "b.jsonl", [newer])
    proc = cli("merge", "a.jsonl", "b.jsonl", "-o", "out.jsonl", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "a.jsonl: 2 record(s)" in proc.stdout
    assert "merged: 2 record(s), 1 duplicate(s) dropped, 0 conflict(s)" in proc.stdout
    merged = read_results(tmp_path / "out.jsonl")
    assert [r["id"] for r in merged] == ["p1", "p2"] and merged[0]["metrics"]

    _write_rows(tmp_path / "c.jsonl", [dict(a, fingerprint_key="k2")])
    proc = cli("merge", "a.jsonl", "c.jsonl", "-o", "conf.jsonl", cwd=tmp_path)
    assert proc.returncode == 1
    assert "conflict: p1: measured under 2 fingerprint keys" in proc.stdout
    assert "--allow-conflicts" in proc.stderr and not (tmp_path / "conf.jsonl").exists()
    proc = cli("merge", "a.jsonl", "c.jsonl", "-o", "conf.jsonl", "--allow-conflicts",
               cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0
    assert len(read_results(tmp_path / "conf.jsonl")) == 3

    proc = cli("merge", "a.jsonl", "missing.jsonl", "-o", "x.jsonl", cwd=tmp_path)
    assert proc.returncode == 2 and "no such file: missing.jsonl" in proc.stderr


def test_merge_cli_keeps_sweeps_apart(tmp_path: Path) -> None:
    a = {"id": "p1", "sweep": "kv", "fingerprint_key": "k1"}
    _write_rows(tmp_path / "a.jsonl", [a])
    _write_rows(tmp_path / "b.jsonl", [dict(a, sweep="kv2")])
    proc = cli("merge", "a.jsonl", "b.jsonl", "-o", "out.jsonl", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "merged: 2 record(s), 0 duplicate(s) dropped, 0 conflict(s)" in proc.stdout
    assert "note: p1: a point of sweeps kv and kv2 (their records are kept apart)" in proc.stdout
    assert [r["sweep"] for r in read_results(tmp_path / "out.jsonl")] == ["kv", "kv2"]


def test_merge_cli_path_errors(tmp_path: Path) -> None:
    _write_rows(tmp_path / "a.jsonl", [{"id": "p1", "fingerprint_key": "k1"}])
    (tmp_path / "outdir").mkdir()
    cases = [
        (("a.jsonl", "-o", "outdir"), "merge -o: outdir is a directory; name a file, e.g. "),
        (("a.jsonl", "-o", "a.jsonl/x.jsonl"), "merge -o: a.jsonl is a file, not a directory"),
        (("outdir", "-o", "m.jsonl"), "outdir: is a directory, not a results file"),
    ]
    for args, says in cases:
        proc = cli("merge", *args, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("llmperf: error: "), proc.stderr
        assert says in proc.stderr, proc.stderr
    # nothing left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "outdir"]
    assert not any((tmp_path / "outdir").iterdir())


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--perf-sweep-results=.", "*--perf-sweep-results: * is a directory; name a file*"),
        (
            "--perf-sweep-results=sweeps.yaml/r.jsonl",
            "*--perf-sweep-results: *sweeps.yaml is a file, not a directory*",
        ),
        ("--perf-ranking=sub", None),
        ("--perf-ranking=sweeps.yaml/r.yaml", "*--perf-ranking: *sweeps.yaml is a file, not a*"),
    ],
)
def test_output_path_errors_before_anything_runs(
    project: pytest.Pytester, option: str, message: str | None
) -> None:
    if message is None:  # a directory named like a ranking file
        (project.path / "sub.yaml").mkdir()
        option, message = "--perf-ranking=sub.yaml", "*--perf-ranking: *sub.yaml is a directory*"
    result = run(project, "test_kv.py", "--collect-only", option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_resume_skips_only_the_sweeps_own_points(project: pytest.Pytester) -> None:
    sweeps = project.path / "sweeps.yaml"
    kv = SWEEPS.split("  grid:")[0].split("sweeps:\n")[1]
    sweeps.write_text(SWEEPS + kv.replace("  kv:", "  kv2:"))  # the same points, another sweep
    project.makepyfile(test_kv2=TEST_KV.replace('name="kv"', 'name="kv2"'))
    results = project.path / "r.jsonl"
    result = run(
        project, "test_kv.py", "-q", "-k", "f16_f16 and small", f"--perf-sweep-results={results}"
    )
    result.assert_outcomes(passed=1, deselected=3)
    result = run(project, "test_kv.py", "test_kv2.py", "--collect-only", "-q",
                 f"--perf-sweep-results={results}", "--perf-resume")  # fmt: skip
    result.stdout.fnmatch_lines(
        [
            "llmperf sweep kv *",
            "*resume: 1 already done*",
            "llmperf sweep kv2 *",
            "*resume: 0 already done*",
        ]
    )
    assert len(collected_ids(result, "test_sweep")) == 7


# -- two phases ---------------------------------------------------------------------------------


def test_explore_ranking_then_deep(project: pytest.Pytester) -> None:
    ranking = project.path / "ranking.yaml"
    result = run(project, "test_kv.py", "-q", "--perf-sweep-results=r.jsonl",
                 f"--perf-ranking={ranking}")  # fmt: skip
    result.assert_outcomes(passed=4)
    ranked = read_ranking(ranking)
    assert len(ranked) == 2 and set(ranked) <= set(KV_IDS)  # deep.top_k: 2
    rows = {r["id"]: r["metrics"]["tg8"]["tg_tps"] for r in read_results(project.path / "r.jsonl")}
    assert ranked == sorted(rows, key=lambda pid: -rows[pid])[:2]
    result.stdout.fnmatch_lines(
        [f"ranking of sweep kv by tg_tps (top 2): {ranking}", f"  1. {ranked[0]}  *"]
    )

    # the user edits the ranking: keeps only the second
    ranking.write_text(f"- {ranked[1]}\n")
    result = run(project, "test_kv.py", "-q", "--perf-phase=deep", f"--perf-ranking={ranking}",
                 "--perf-sweep-results=r.jsonl")  # fmt: skip
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["llmperf sweep kv (deep, top 1 of ranking.yaml): *"])
    deep = [r for r in read_results(project.path / "r.jsonl") if r["phase"] == "deep"]
    assert sorted(r["id"] for r in deep) == [f"{ranked[1]}-ub16", f"{ranked[1]}-ub32"]
    assert all(r["parent"] == ranked[1] and r["repetitions"] == 2 for r in deep)
    assert ranking.read_text() == f"- {ranked[1]}\n"  # deep reads, never writes the ranking

    # without a ranking file: the explore results rank the points
    result = run(project, "test_kv.py", "--collect-only", "-q", "--perf-phase=deep",
                 "--perf-sweep-results=r.jsonl", "--perf-top-k=1")  # fmt: skip
    assert collected_ids(result, "test_sweep") == [f"{ranked[0]}-ub16", f"{ranked[0]}-ub32"]

    result = run(project, "test_kv.py", "--collect-only", "-q", "--perf-phase=deep")
    result.stdout.fnmatch_lines(["*--perf-phase=deep needs the explore phase's ranking*"])
