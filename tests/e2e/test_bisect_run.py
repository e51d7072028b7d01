"""llmperf bisect, run for real: ``llmperf bisect`` in child processes over real tiny
models whose positions 3.. are three times deeper (24 layers against 8), with a threshold
of 25% so that a busy 2-core machine cannot blur a 3x step. Nothing is timed: the
assertions are on verdicts, positions and files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_llmperf.model import ownership
from pytest_llmperf.verdict.bisect_state import question_key
from tests.gitrepo import git

SHALLOW = "{tiny: {n_layer: 8, n_embd: 256, n_ff: 512, n_head: 4, n_head_kv: 2, n_vocab: 2048}}"
DEEP = "{tiny: {n_layer: 24, n_embd: 256, n_ff: 512, n_head: 4, n_head_kv: 2, n_vocab: 2048}}"
MIDDLE = SHALLOW.replace("n_layer: 8", "n_layer: 12")
REGISTRY = (
    "models:\n"
    + "".join(f"  m{i}: {SHALLOW if i < 3 else DEEP}\n" for i in range(8))
    + "".join(f"  h{i}: {MIDDLE}\n" for i in (3, 4))
)
MODELS = ",".join(f"m{i}" for i in range(8))
#: the workload and how hard each step tries: a 3x step is decided in a few rounds
RUN = ["-n", "16", "--args", "-t 1 -c 128", "--threshold", "25", "--max-loads", "2"]
TRIES = ["--rounds", "20", "--seconds", "8", "--max-rounds", "40", "--max-seconds", "16"]
#: nothing can be told of two identical models: two rounds per attempt, at alpha 1e-6 an
#: interval from two rounds is ~67000 times wider than their spread (Student's t with one
#: degree of freedom over the normal quantile); at 0.001 (x100) two rounds that agreed
#: within 0.2% once gave [0.79, 1.31] and a pass
NOTHING = ["--rounds", "2", "--max-rounds", "2", "--seconds", "0.001", "--alpha", "0.000001"]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder of tiny models for every run of this module (made on first use)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture
def project(tmp_path: Path, models_dir: Path) -> Path:
    (tmp_path / "llmperf.yaml").write_text(REGISTRY)
    return tmp_path


def _env(project: Path, models_dir: Path) -> dict[str, str]:
    return dict(
        os.environ,
        LLMPERF_CACHE_DIR=str(models_dir),
        XDG_CACHE_HOME=str(project / "cache"),
        LLMPERF_BUILD_DIR=str(project / "builds"),
    )


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest_llmperf.cli", "bisect", *args]


def bisect(
    project: Path, models_dir: Path, *args: str, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _cmd(*args),
        cwd=project,
        env=_env(project, models_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _steps(state: Path) -> list[dict[str, object]]:
    try:
        return list(json.loads(state.read_text())["steps"])
    except (OSError, ValueError, KeyError):
        return []


def test_bisect_names_the_first_deeper_model_and_resumes_after_sigterm(
    project: Path, models_dir: Path
) -> None:
    state = project / "state.json"
    # a real child stopped by SIGTERM once two steps are written
    child = subprocess.Popen(
        _cmd("--models", MODELS, *RUN, *TRIES, "--state", str(state)),
        cwd=project,
        env=_env(project, models_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 900
        while len(_steps(state)) < 2 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        shutil.copy(state, project / "copy.json")  # for the undecided resume below
        child.send_signal(signal.SIGTERM)
        _out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 128 + signal.SIGTERM, err
    assert "the same command resumes" in err
    before = _steps(state)
    assert len(before) >= 2
    assert [s["position"] for s in before[:2]] == [7, 3]  # the bad end, then the middle
    assert [s["verdict"] for s in before[:2]] == ["regressed", "regressed"]

    # resumed: the steps already measured are kept, nothing is measured twice
    done = bisect(project, models_dir, "--models", MODELS, *RUN, *TRIES, "--state", str(state))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resuming from {state}: {len(before)} step(s)" in done.stderr
    after = _steps(state)
    positions = [s["position"] for s in after]
    assert len(positions) == len(set(positions))
    assert after[: len(before)] == before
    assert sorted(positions) == [1, 2, 3, 7]  # log2(8) + 1 positions
    assert "first_bad: [3] m3" in done.stdout and "last_good: [2] m2" in done.stdout
    assert "| 7 | m7 |" in done.stdout and "| regressed |" in done.stdout
    assert "| 1 | m1 |" in done.stdout and "| pass |" in done.stdout

    # finished: run again, nothing is measured; JSON and the plot
    plot = project / "bisect.png"
    again = bisect(
        project,
        models_dir,
        "--models",
        MODELS,
        *RUN,
        "--state",
        str(state),
        "-o",
        "json",
        "--plot",
        str(plot),
    )
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert (doc["status"], doc["first_bad"], doc["last_good"]) == ("found", "m3", "m2")
    assert [s["position"] for s in doc["steps"]] == [1, 2, 3, 7]
    assert "measuring" not in again.stderr
    assert ownership.png_software(plot) == ownership.PNG_SOFTWARE

    # the copy made after two steps, resumed where nothing can be decided: the answer is
    # the range those two steps narrowed the search to, never a guess
    narrowed = bisect(
        project,
        models_dir,
        "--models",
        MODELS,
        *RUN,
        *NOTHING,
        "--state",
        str(project / "copy.json"),
        "-o",
        "json",
    )
    assert narrowed.returncode == 3, narrowed.stderr
    doc = json.loads(narrowed.stdout)
    assert doc["status"] == "undecided" and doc["first_bad"] is None
    assert doc["candidates"][-1] == "m3" and 2 <= len(doc["candidates"]) <= 3
    assert all(s["verdict"] == "inconclusive" for s in doc["steps"] if s["position"] < 3)


def test_a_slowdown_in_two_pieces_shows_in_the_ratios_of_the_measured_steps(
    project: Path, models_dir: Path
) -> None:
    # 8 layers, then 12 (h3, h4: about 2/3 of the speed), then 24 (about 1/3): with a
    # threshold of 55% the first piece passes, the second is the first slow one, and
    # the table shows the first piece in the ratios of the steps that passed (at 45% the
    # first piece's ~0.67 sat too close to 0.55 for a noisy minute's rounds to tell)
    models = "m0,m1,m2,h3,h4,m5,m6,m7"
    run = [a if a != "25" else "55" for a in RUN]
    res = bisect(project, models_dir, "--models", models, *run, *TRIES, "-o", "json")
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert (doc["first_bad"], doc["last_good"]) == ("m5", "h4")
    steps = {s["position"]: s for s in doc["steps"]}
    assert sorted(steps) == [3, 4, 5, 7]
    for position in (3, 4):  # passed, yet visibly slower than the good end
        assert steps[position]["verdict"] == "pass"
        assert steps[position]["ratio"] < 0.85
    assert steps[5]["ratio"] < steps[4]["ratio"]


def test_the_ends_are_checked_first(project: Path, models_dir: Path) -> None:
    # the bad end is as fast as the good end: said, exit 1, one step
    same = bisect(project, models_dir, "--models", "m0,m1,m2", *RUN, *TRIES)
    assert same.returncode == 1, same.stdout + same.stderr
    assert "the bad end [2] m2 is not slower than the good end [0] m0" in same.stdout
    # a good end that is the slower one: the bad end is faster, exit 1
    slower = bisect(project, models_dir, "--models", "m3,m1", *RUN, *TRIES)
    assert slower.returncode == 1, slower.stdout + slower.stderr
    assert "the bad end [1] m1 is faster than the good end [0] m3" in slower.stdout
    # nothing decides (identical ends): not even the bad end can be told, exit 3
    undecided = bisect(project, models_dir, "--models", "m0,m1,m2", *RUN, *NOTHING, "--fresh")
    assert undecided.returncode == 3, undecided.stdout + undecided.stderr
    assert "undecided: the bad end [2] m2 could not be told slower or not" in undecided.stdout


def test_a_test_of_the_suite_gives_its_params_and_workloads(
    project: Path, models_dir: Path
) -> None:
    (project / "test_perf.py").write_text(
        """
import pytest

@pytest.mark.llmperf(model="m0", n_threads=1, n_ctx=128)
@pytest.mark.parametrize("workload", ["tg16", "tg8"])
def test_decode(llm_perf, workload):
    llm_perf.measure(workload)
    llm_perf.measure("pp16")
"""
    )
    res = bisect(
        project,
        models_dir,
        "--models",
        "m0,m1",
        "--test",
        "test_perf.py::test_decode[tg16]",
        "--threshold",
        "25",
        *TRIES,
        "-o",
        "json",
    )
    assert res.returncode == 1, res.stdout + res.stderr
    assert "workloads tg16, pp16" in res.stderr and "-t 1" in res.stderr
    doc = json.loads(res.stdout)
    assert doc["question"]["workloads"] == ["tg16", "pp16"]
    assert doc["question"]["base"]["args"] == "-c 128 -t 1"
    res = bisect(project, models_dir, "--models", "m0,m1", "--test", "test_perf.py::test_decode")
    assert res.returncode == 2 and "collects 2 tests" in res.stderr
    res = bisect(project, models_dir, "--models", "m0,m1", "--test", "test_perf.py::nope")
    assert res.returncode == 2 and "pytest collects no test by that id" in res.stderr


def test_bad_input_is_refused_before_anything_is_measured(project: Path, models_dir: Path) -> None:
    n = ["-n", "8"]
    cases: list[tuple[list[str], str]] = [
        (["--models", "m0,nope", *n], "unknown model 'nope'"),
        (["--models", "m0", *n], "1 configuration(s)"),
        (["--models", "m0,m1,m0", *n], "m0 given more than once"),
        (["--models", "m0,m1"], "no workload"),
        (["--models", "m0,m1", "-p", "16", "--metric", "tg_tps"], "no workload generates"),
        (["--models", "m0,m1", *n, "--model", "m2"], "leave out --model"),
        (["--builds", "default,nope", "--model", "m0", *n], "unknown build 'nope'"),
        (["--builds", "default,x", *n], "name the model"),
        (["--versions", "0.3.30", "--model", "m0", *n], "1 configuration(s)"),
        (["--models", "m0,m1", "--good", "HEAD", *n], "--good and --bad go with --source"),
        (
            ["--source", str(project), "--good", "a", "--bad", "b", "--model", "m0", *n],
            "not a git checkout",
        ),
        (
            ["--source", str(project / "nope"), "--good", "a", "--bad", "b", "--model", "m0", *n],
            "no such folder",
        ),
    ]
    for args, message in cases:
        res = bisect(project, models_dir, *args)
        assert res.returncode == 2 and message in res.stderr, (args, res.stderr)
    # state files that are not a bisect's, or another bisect's
    (project / "README.md").write_text("# my notes\n")
    (project / "results.json").write_text('{"schema_version": 1, "tests": []}\n')
    (project / "broken.json").write_text('{"llmperf_bisect": 1, "steps": [')
    (project / "folder").mkdir()
    for name, message in [
        ("README.md", "appears to be a Markdown or text file, not an llmperf bisect state"),
        ("results.json", "appears to be a pytest-llmperf results.json"),
        ("broken.json", "not an llmperf bisect state (JSON); nothing was written"),
        ("folder", "a folder; name a file"),
    ]:
        res = bisect(project, models_dir, "--models", "m0,m1", *n, "--state", name)
        assert res.returncode == 2 and message in res.stderr, (name, res.stderr)
        assert name == "folder" or (project / name).read_text() != ""  # left as it was
    other = {
        "llmperf_bisect": 1,
        "question": {
            "kind": "models",
            "configs": ["m0", "m2"],
            "workloads": ["tg8"],
            "metric": "tg_tps",
        },
        "steps": [],
    }
    other["key"] = question_key(other["question"])  # type: ignore[arg-type]
    (project / "other.json").write_text(json.dumps(other))
    res = bisect(project, models_dir, "--models", "m0,m1", *n, "--state", "other.json")
    assert res.returncode == 2 and "the state of another bisect" in res.stderr
    assert 'configs ["m0", "m2"] there, ["m0", "m1"] here' in res.stderr
    # a foreign plot is refused before anything is measured
    (project / "pics").mkdir()
    (project / "pics" / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    res = bisect(project, models_dir, "--models", "m0,m1", *n, "--plot", "pics/photo.png")
    assert res.returncode == 2 and "--plot" in res.stderr and "measuring" not in res.stderr


def test_commits_that_do_not_build_stop_at_the_good_end_and_leave_the_checkout_alone(
    project: Path, models_dir: Path
) -> None:
    repo = project / "src"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for i in range(3):
        (repo / "README").write_text(f"{i}\n")
        git(repo, "add", "README")
        git(repo, "commit", "-q", "-m", f"c{i}")
    head = git(repo, "rev-parse", "HEAD")
    res = bisect(
        project,
        models_dir,
        "--source",
        str(repo),
        "--good",
        "HEAD~2",
        "--bad",
        "HEAD",
        "--model",
        "m0",
        "-n",
        "8",
    )
    assert res.returncode == 2, res.stderr
    assert "not a llama.cpp source tree (no CMakeLists.txt)" in res.stderr
    assert git(repo, "rev-parse", "HEAD") == head and git(repo, "status", "--porcelain") == ""
    [tree] = (project / "cache" / "pytest-llmperf" / "bisect" / "worktrees").iterdir()
    assert (tree / "README").read_text() == "0\n"  # the good end, checked out there
    res = bisect(
        project,
        models_dir,
        "--source",
        str(repo),
        "--good",
        "v1",
        "--bad",
        "HEAD",
        "--model",
        "m0",
        "-n",
        "8",
    )
    assert res.returncode == 2 and "--good v1: no such commit" in res.stderr


def test_the_command_is_registered() -> None:
    done = subprocess.run(_cmd("--help"), capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "Exit status: 0 the first slow one was found" in done.stdout
