"""What a backend answers is checked against what it was asked (issue 26, round three):
every row and number from a backend (the engine, a worker, llama-bench) before it is
gated, stored or shown (pytest_llmperf.backends.answers).

llama-bench is a fork's binary here, which cannot be assumed on this machine: the tests
of its answers run a **fake llama-bench**, a small script that answers the flags it is
given the way llama-bench's ``-o jsonl`` does, wrong in one way per case (a row of
another test, no samples, a 0 or a word among them, too few samples, a test twice). The
real llama-bench of the vendored llama.cpp runs in tests/e2e/test_llamabench.py.

Split by tier: pure parts in tests/unit/test_backend_answers.py, real model runs in
tests/integration/test_backend_answers.py and pytest sessions and child processes in
tests/e2e/test_backend_answers.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

MACHINE = "answers"

#: a fake llama-bench: answers -p/-n/-pg/-d/-r as llama-bench's -o jsonl does, wrong in
#: the way its ``mode`` file (beside it) says
FAKE_LLAMA_BENCH = '''#!{python}
"""A fake llama-bench for tests (not llama.cpp's): prints the rows of the tests it is
asked for, as llama-bench -o jsonl, wrong in the way the file 'mode' beside it says."""
import json, pathlib, sys

args = sys.argv[1:]
if "--version" in args:
    print("version: 0 (fake llama-bench)")
    sys.exit(0)
mode = (pathlib.Path(__file__).parent / "mode").read_text().strip()
def value(flag, default):
    return args[args.index(flag) + 1] if flag in args else default
reps, depth = int(value("-r", "5")), int(value("-d", "0"))
tests = [tuple(map(int, args[i + 1].split(","))) for i, a in enumerate(args) if a == "-pg"]
p, n = int(value("-p", "0")), int(value("-n", "0"))
if p:
    tests.append((p, 0))
if n:
    tests.append((0, n))
for n_prompt, n_gen in tests:
    samples = [1_000_000 * (n_prompt + n_gen)] * reps
    row = {{"n_prompt": n_prompt, "n_gen": n_gen, "n_depth": depth, "samples_ns": samples}}
    if mode == "other-count":
        row["n_gen"] = 128 if n_gen else 0
        row["n_prompt"] = 0 if n_gen else 128
    elif mode == "empty":
        row["samples_ns"] = []
    elif mode == "zero":
        row["samples_ns"] = [0] * reps
    elif mode == "word":
        row["samples_ns"] = ["abc"] * reps
    elif mode == "short":
        row["samples_ns"] = samples[:-1]
    elif mode == "depth":
        row["n_depth"] = depth + 512
    print(json.dumps(row))
    if mode == "twice":
        print(json.dumps(row))
'''

#: mode -> what the failing test's message says
WRONG = {
    "other-count": "printed the row for n_prompt=0, n_gen=128, a test it was not asked for",
    "empty": "0 sample(s) in samples_ns where 2 repetition(s) were asked for",
    "zero": "samples_ns holds 0, not a positive whole number of nanoseconds",
    "word": "samples_ns holds 'abc', not a positive whole number of nanoseconds",
    "short": "1 sample(s) in samples_ns where 2 repetition(s) were asked for",
    "depth": "n_depth is 512 where 0 was asked for",
    "twice": "printed the row for n_prompt=0, n_gen=16 twice (a comma list or a repeated flag",
}

TEST = """
import pytest

@pytest.mark.llmperf(model="tiny-moe-q8_0", n_threads=2, build="lb")
def test_bench(llm_perf):
    llm_perf.measure("tg16", repetitions=2)
"""


def fake_llama_bench(folder: Path, mode: str) -> Path:
    binary = folder / "fake-llama-bench"
    binary.write_text(FAKE_LLAMA_BENCH.format(python=sys.executable))
    binary.chmod(0o755)
    (folder / "mode").write_text(mode)
    return binary


def _session(pytester: pytest.Pytester, mode: str) -> pytest.RunResult:
    binary = fake_llama_bench(pytester.mkdir("bin"), mode)
    pytester.makefile(
        ".yaml", llmperf=f"builds:\n  lb: {{llama_bench: {json.dumps(str(binary))}}}\n"
    )
    pytester.makepyfile(test_perf=TEST)
    return pytester.runpytest(
        "-p", "no:cacheprovider", f"--perf-machine={MACHINE}", "--perf-accept"
    )


def test_a_fake_llama_bench_that_answers_right_passes(
    pytester: pytest.Pytester, model: Path
) -> None:
    """The fake answers the way llama-bench does: the failures below are its wrong
    answers, not the fake."""
    res = _session(pytester, "right")
    res.assert_outcomes(passed=1)
    assert list((pytester.path / "baselines" / MACHINE).rglob("*.json"))


@pytest.mark.parametrize("mode", list(WRONG))
def test_a_llama_bench_answer_not_for_what_was_asked_fails_and_records_nothing(
    pytester: pytest.Pytester, model: Path, mode: str
) -> None:
    res = _session(pytester, mode)
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert "asked for tg16" in out and WRONG[mode] in out, out
    assert "its numbers were not used" in out
    assert not list((pytester.path / "baselines").rglob("*.json"))  # nothing recorded
    assert "Traceback" not in out


# -- a worker that cannot start or load: one clear line --------------------------------------

WORKER_FAILURES = """
import pytest

@pytest.mark.llmperf(model="m", n_threads=2, n_ctx=256, build="bare")
def test_bare(llm_perf):
    llm_perf.measure("tg8")

@pytest.mark.llmperf(model="m", n_threads=2, n_ctx=256, build="otherapi")
def test_otherapi(llm_perf):
    llm_perf.measure("tg8")

@pytest.mark.llmperf(model="m", n_threads=2, n_ctx=256, launcher="refuses")
def test_launcher(llm_perf):
    llm_perf.measure("tg8")
"""


def _section(out: str, test: str) -> str:
    """The failure section of ``test`` in pytest's output."""
    start = out.index(f"_ {test} _")
    ends = [out.find(m, start + 1) for m in ("\n___", "short test summary")]
    return out[start : min(e for e in ends if e > 0)]


def test_a_worker_that_cannot_start_or_load_says_why_in_a_line_and_who_started_it(
    pytester: pytest.Pytester, model: Path
) -> None:
    import _ctypes
    import subprocess
    import venv

    bare = pytester.path / "bare-env"  # an interpreter without numpy or llama-cpp-python
    venv.EnvBuilder(with_pip=False).create(bare)
    python = bare / "bin" / "python"
    probe = subprocess.run([python, "-c", "import numpy"], capture_output=True, check=False)
    assert probe.returncode != 0
    lib = pytester.mkdir("otherapi")  # a shared library of another C API named libllama
    (lib / "libllama.so").write_bytes(Path(_ctypes.__file__).read_bytes())
    pytester.makefile(
        ".yaml",
        llmperf=f"models:\n  m: {{path: {json.dumps(str(model))}}}\n"
        f"builds:\n  bare: {{python: {json.dumps(str(python))}}}\n"
        f"  otherapi: {{lib: {json.dumps(str(lib))}}}\n"
        "launchers:\n  refuses: \"sh -c 'echo taskset: invalid CPU list >&2; exit 1' sh\"\n",
    )
    pytester.makepyfile(test_perf=WORKER_FAILURES)
    res = pytester.runpytest("-p", "no:cacheprovider", "--perf-machine=w", "--perf-repetitions=1")
    res.assert_outcomes(failed=3)
    out = res.stdout.str()
    assert "Traceback" not in out and 'File "' not in out, out
    bare_text = _section(out, "test_bare")
    assert f"the worker's interpreter {python} (Python 3." in bare_text
    assert "cannot import 'numpy': install it there" in bare_text
    other = _section(out, "test_otherapi")
    assert f"{lib / 'libllama.so'}: undefined symbol: llama_" in other
    assert "must match llama-cpp-python's C API" in other
    launcher = _section(out, "test_launcher")
    assert "died during load: exit code 1" in launcher
    assert "started by: launcher sh -c 'echo taskset: invalid CPU list >&2; exit 1' sh" in launcher
    assert "| taskset: invalid CPU list" in launcher
    assert "see the backend's output above" not in out
