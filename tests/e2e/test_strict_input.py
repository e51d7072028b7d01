"""Input the plugin used to take silently or crash on (issue 26, round three), each closed
as a class, through real files, real pytest sessions (pytester) and the real ``llmperf``
command on the tiny models:

- a key given twice in any JSON or YAML file we read (baselines, results.json, sweep
  records, rankings, the registry, sweep definitions, prompt files) is an error naming the
  file, the key and its lines (pytest_llmperf.fileio);
- a key given twice in our own key:value and comma syntaxes (references, thresholds,
  limits, ini line lists, tensor overrides) is an error naming it;
- every shell-like split of user text (launchers, args=, bench_args=, ab --args, build
  --cmake-args) is one function that names where the text came from
  (pytest_llmperf.options.split_words);
- every user value is checked for type and range before the model sees it (sampling,
  marker keywords, configs(), sweep YAML);
- a model path that is a URL, a hub id or not a regular file says what it is and what to
  do.

Split by tier: pure parts in tests/unit/test_strict_input.py and pytest sessions and child
processes in tests/e2e/test_strict_input.py.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.unit.test_strict_input import UNBALANCED, twice

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

MACHINE = "strict"
FAST = [
    "-p",
    "no:cacheprovider",
    "--perf-repetitions=1",
    "--perf-warmup=0",
    f"--perf-machine={MACHINE}",
    "--perf-in-process",
]
ONE_TEST = """
import pytest

@pytest.mark.llmperf(model="m", n_threads=2, n_ctx=256)
def test_decode(llm_perf):
    llm_perf.measure("tg8")
"""
#: a frame of the plugin's own code: an error shown as a traceback rather than a message
INTERNAL_FRAME = re.compile(r"pytest_llmperf/[\w/]+\.py:\d+")


def project(pytester: pytest.Pytester, model: Path, tests: str = ONE_TEST, extra: str = "") -> None:
    pytester.makefile(".yaml", llmperf=f"models:\n  m: {{path: {json.dumps(str(model))}}}\n{extra}")
    pytester.makepyfile(test_perf=tests)


def usage_error(result: pytest.RunResult) -> str:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    return result.stderr.str()


def test_a_baseline_giving_a_key_twice_fails_its_test_and_is_not_overwritten(
    pytester: pytest.Pytester, model: Path
) -> None:
    project(pytester, model)
    pytester.runpytest(*FAST, "--perf-accept").assert_outcomes(passed=1)
    [per_test] = (pytester.path / "baselines" / MACHINE).rglob("*.json")
    before = twice(per_test, "tg_tps")
    res = pytester.runpytest(*FAST, "--perf-accept")
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert f"baseline file {per_test}" in out and "key 'tg_tps' is given twice" in out, out
    assert per_test.read_bytes() == before


@pytest.mark.parametrize(
    ("name", "content", "key", "lines"),
    [
        ("llmperf.yaml", "models:\n  m: {path: a.gguf}\n  m: {path: b.gguf}\n", "m", "2, 3"),
        (
            "llmperf.yaml",
            "thresholds:\n  tg_tps: '-5%'\n  itl_p95_ms: off\n  tg_tps: '-50%'\n",
            "tg_tps",
            "2, 4",
        ),
        (
            "sweeps.yaml",
            "sweeps:\n  s:\n    models: [m]\n    workloads: [tg8]\n    workloads: [tg16]\n",
            "workloads",
            "4, 5",
        ),
    ],
    ids=["registry-models", "registry-thresholds", "sweep-definition"],
)
def test_a_yaml_file_giving_a_key_twice_is_a_usage_error(
    pytester: pytest.Pytester, name: str, content: str, key: str, lines: str
) -> None:
    path = pytester.path / name
    path.write_text(content)
    pytester.makepyfile(
        test_perf='import pytest\n\n@pytest.mark.llmperf_sweep(file="sweeps.yaml")\n'
        "def test_s(llm_perf):\n    llm_perf.measure_all()\n"
        if name == "sweeps.yaml"
        else ONE_TEST
    )
    res = pytester.runpytest("-p", "no:cacheprovider", "--perf-machine=m")
    # the registry: a usage error; a sweep file: an error collecting the test that names it
    assert res.ret in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERRUPTED)
    message = res.stdout.str() + res.stderr.str()
    assert f"{path}: key {key!r} is given twice in one object (lines {lines})" in message, message
    assert not INTERNAL_FRAME.search(message), message


# -- 10. a key given twice in our own syntaxes -----------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--perf-reference=build:main,build:pr"], "--perf-reference: build is given twice"),
        (["--perf-reference=cpu_moe:true,cpu_moe:false"], "cpu_moe is given twice"),
    ],
    ids=["build", "knob"],
)
def test_a_reference_giving_a_key_twice_is_a_usage_error(
    pytester: pytest.Pytester, args: list[str], expected: str
) -> None:
    pytester.makepyfile(test_perf=ONE_TEST)
    message = usage_error(pytester.runpytest(*FAST, *args))
    assert expected in message, message


def test_an_ini_threshold_given_twice_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nllmperf_thresholds =\n    tg_tps: -10%\n    tg_tps: -50%\n")
    pytester.makepyfile(test_perf=ONE_TEST)
    message = usage_error(pytester.runpytest(*FAST))
    assert "ini llmperf_thresholds: tg_tps is given twice ('-10%' and '-50%')" in message


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ('args="-t 2 -c 256 -t 1"', "argument -t: n_threads is given twice"),
        ('args="-t 2 -c 256 --threads=1"', "n_threads is given twice (as -t and --threads)"),
        ('args="-c 256 -mmp 0 --no-mmap"', "use_mmap is given twice (as -mmp and --no-mmap)"),
        ('args="-t 2 -c 256", n_threads=1', "n_threads is given twice: in args='-t 2 -c 256'"),
        ('args="-t 2 -c 256 -r 2", repetitions=3', "repetitions is given twice: in args="),
        ('args="-t 2 -c 256 -r 2 -r 3"', "argument -r: repetitions is given twice"),
        (
            'n_threads=2, n_ctx=256, override_tensor="exps=CPU;exps=CUDA0"',
            "pattern 'exps' is given twice ('exps=CPU' and 'exps=CUDA0')",
        ),
        ('n_threads=2, n_ctx=256, device="CUDA0/CUDA0"', "device 'CUDA0' is given twice"),
        (
            'n_threads=2, n_ctx=256, limits=["load_ms < 11000", "load_ms < 50"]',
            "'load_ms < 50' and 'load_ms < 11000' bound the same thing twice",
        ),
        (
            'n_threads=2, n_ctx=256, sla=["itl_p95_ms[tg64] / itl_p95_ms[tg8] <= 1.3", '
            '"itl_p95_ms[tg64]/itl_p95_ms[tg8] <= 2"]',
            "bound the same thing twice",
        ),
    ],
    ids=[
        "flag",
        "alias",
        "switch",
        "args-and-keyword",
        "run-flag-and-keyword",
        "run-flag",
        "override-pattern",
        "device",
        "limit",
        "sla",
    ],
)
def test_a_marker_giving_a_key_twice_is_a_usage_error_naming_the_test(
    pytester: pytest.Pytester, model: Path, kwargs: str, expected: str
) -> None:
    project(
        pytester,
        model,
        tests=f"""
import pytest

@pytest.mark.llmperf(model="m", {kwargs})
def test_decode(llm_perf):
    llm_perf.measure("tg8")
""",
    )
    message = usage_error(pytester.runpytest(*FAST))
    assert "marker on test_perf.py::test_decode" in message
    assert expected in message, message


# -- 11. shell-like splits of user text -----------------------------------------------------


def test_a_launcher_with_an_unbalanced_quote_is_a_usage_error_naming_it(
    pytester: pytest.Pytester, model: Path
) -> None:
    project(pytester, model, extra='launchers:\n  pin: "taskset -c \'0"\n')
    message = usage_error(pytester.runpytest(*FAST))
    where = f"{pytester.path / 'llmperf.yaml'}: launchers.pin: "
    assert where + '"taskset -c \'0"' + UNBALANCED in message
    assert "INTERNALERROR" not in message


def test_bench_args_with_an_unbalanced_quote_is_a_usage_error_naming_the_test(
    pytester: pytest.Pytester, model: Path
) -> None:
    tests = ONE_TEST.replace("n_ctx=256)", 'n_ctx=256, bench_args="-mla \'3")')
    project(pytester, model, tests=tests)
    message = usage_error(pytester.runpytest(*FAST))
    assert 'llmperf marker on test_perf.py::test_decode: bench_args: "-mla \'3"' in message
    assert UNBALANCED in message


# -- 17, 18. model paths that name no local regular file --------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "https://huggingface.co/unsloth/gpt-oss-20b-GGUF/resolve/main/gpt-oss-20b-Q4_K_M.gguf",
            "is a URL, not a local file: download the .gguf file",
        ),
        ("hf.co/unsloth/gpt-oss-20b-GGUF", "is a URL, not a local file"),
        ("unsloth/gpt-oss-20b-GGUF:Q4_K_M", "looks like a model hub id (ORG/REPO:FILE)"),
    ],
    ids=["url", "hf-url", "hub-id"],
)
def test_a_model_path_that_is_no_local_path_is_refused_with_what_to_do(
    pytester: pytest.Pytester, path: str, expected: str
) -> None:
    pytester.makefile(".yaml", llmperf=f"models:\n  m: {{path: {json.dumps(path)}}}\n")
    pytester.makepyfile(test_perf=ONE_TEST)
    message = usage_error(pytester.runpytest(*FAST))
    assert "llmperf.yaml: models.m.path: " in message and expected in message, message
    assert "give the registry its local path" in message and "is absent" not in message


def test_a_model_variable_holding_a_url_fails_its_test_saying_so(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_MODEL", "https://example.com/models/m.gguf")
    pytester.makefile(".yaml", llmperf="models:\n  m: {env: MY_MODEL}\n")
    pytester.makepyfile(test_perf=ONE_TEST)
    res = pytester.runpytest(*FAST)
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert "MY_MODEL='https://example.com/models/m.gguf' is a URL, not a local file" in out


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "socket", "directory"])
def test_a_model_path_that_is_not_a_regular_file_says_what_it_is(
    pytester: pytest.Pytester, model: Path, kind: str
) -> None:
    import socket

    target = pytester.path / "bad.gguf"
    held = None
    if kind == "fifo":
        os.mkfifo(target)
        expected = "is a named pipe (FIFO), not a .gguf file"
    elif kind == "dev-zero":
        target = Path("/dev/zero")
        expected = "is a character device, not a .gguf file"
    elif kind == "socket":
        held = socket.socket(socket.AF_UNIX)
        held.bind(str(target))
        expected = "is a socket, not a .gguf file"
    else:
        target.mkdir()
        expected = "is a directory, not a .gguf file"
    try:
        pytester.makefile(
            ".yaml",
            llmperf=f"models:\n  bad: {{path: {json.dumps(str(target))}}}\n"
            f"  m: {{path: {json.dumps(str(model))}}}\n",
        )
        pytester.makepyfile(
            test_perf=ONE_TEST.replace('model="m"', 'model="bad"')
            + ONE_TEST.split("import pytest", 1)[1].replace("test_decode", "test_good")
        )
        res = pytester.runpytest(*FAST)
    finally:
        if held is not None:
            held.close()
    res.assert_outcomes(failed=1, passed=1)
    out = res.stdout.str()
    assert f"{target} {expected}" in out, out
    assert "empty (0 bytes)" not in out and not INTERNAL_FRAME.search(out)


# -- 13. every user value checked for type and range before the model -------------------------


def test_a_sampling_value_of_the_wrong_type_fails_its_test_before_the_model(
    pytester: pytest.Pytester, model: Path
) -> None:
    project(
        pytester,
        model,
        tests="""
import pytest

@pytest.mark.llmperf(model="m", n_threads=2, n_ctx=512)
def test_hot(llm_perf):
    llm_perf.measure_stream("Hi", max_tokens=4, sampling={"temperature": "hot"})
""",
    )
    res = pytester.runpytest(*FAST)
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert "sampling temperature='hot': write a number >= 0 (0: greedy)" in out, out
    assert "TypeError" not in out and not INTERNAL_FRAME.search(out)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ("model=5, n_ctx=256", "model=5: write a model id"),
        ('model="", n_ctx=256', "model='': write a model id"),
        ('model="m", args=5', "args=5: write the arguments as one string"),
        ('model="m", n_threads=10**9', "n_threads=1000000000: must be <= 512"),
        ('model="m", n_threads_batch=4096', "n_threads_batch=4096: must be <= 512"),
        ('model="m", poll=101', "poll=101: must be <= 100"),
    ],
    ids=["model-int", "model-empty", "args-int", "threads", "threads-batch", "poll"],
)
def test_marker_values_are_checked_for_type_and_range(
    pytester: pytest.Pytester, model: Path, kwargs: str, expected: str
) -> None:
    project(
        pytester,
        model,
        tests=f"""
import pytest

@pytest.mark.llmperf({kwargs})
def test_decode(llm_perf):
    llm_perf.measure("tg8")
""",
    )
    message = usage_error(pytester.runpytest(*FAST))
    assert "llmperf marker on test_perf.py::test_decode: " in message
    assert expected in message, message
    assert "context size" not in message  # poll's bound is not a context size
