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
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from pytest_llmperf.baseline import BaselineStore, Pending, SessionRecord
from pytest_llmperf.cli.main import main
from pytest_llmperf.machine import tiny

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


@pytest.fixture(scope="module")
def model() -> Path:
    """The tiny model, built before any pytester run (pytester moves HOME)."""
    return tiny.ensure_variant("moe-q8_0")


def project(pytester: pytest.Pytester, model: Path, tests: str = ONE_TEST, extra: str = "") -> None:
    pytester.makefile(".yaml", llmperf=f"models:\n  m: {{path: {json.dumps(str(model))}}}\n{extra}")
    pytester.makepyfile(test_perf=tests)


def usage_error(result: pytest.RunResult) -> str:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    return result.stderr.str()


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``llmperf ARGS`` in this process: exit status, stdout, stderr."""
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def stored(tmp_path: Path, name: str = "a", rate: float = 100.0) -> Path:
    """A machine's baseline store of two tests (t.py::a, t.py::b); its manifest file."""
    store = BaselineStore(tmp_path / name, "box")
    store.load()
    values = {"tg_tps": [rate * s for s in (0.97, 1.0, 1.03, 0.99, 1.01)]}
    for nodeid in ("t.py::a", "t.py::b"):
        session = SessionRecord(
            accepted_at="2026-11-01T00:00:00+00:00",
            git_commit="abc",
            repetitions=5,
            warmup=1,
            values={"tg32": dict(values)},
        )
        store.queue(
            nodeid, "k1", Pending("m", {"params": {"n_threads": 2}, "workloads": ["tg32"]}, session)
        )
    store.flush()
    return store.path


def twice(path: Path, key: str) -> bytes:
    """Give ``key`` twice in the first object of ``path`` that has it (a copy before it,
    with another value); the new content."""
    text = path.read_text()
    at = text.index(f'"{key}":')
    text = text[:at] + f'"{key}": [16.0],\n' + text[at:]
    path.write_text(text)
    return text.encode()


# -- 7. a key given twice in a file we read --------------------------------------------------


def test_a_baseline_file_giving_a_metric_twice_is_named_with_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    base = stored(tmp_path, "a")
    current = stored(tmp_path, "b")
    [per_test] = [p for p in (base.parent / "box").rglob("*.json") if p.stem == "a"]
    before = twice(per_test, "tg_tps")
    for args in (
        ["compare", str(base), str(current)],
        ["baseline", "show", "t.py::a", "--file", str(base)],
        ["history", "--file", str(base)],
    ):
        rc, out, err = cli(capsys, *args)
        assert rc == 2, (args, out, err)
        assert f"baseline file {per_test}" in err and "key 'tg_tps' is given twice" in err, err
        assert "pass" not in out
    assert per_test.read_bytes() == before


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


def test_results_json_and_sweep_records_giving_a_key_twice_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results.json"
    results.write_text('{"schema_version": 1,\n "tests": [],\n "tests": []}\n')
    rc, _out, err = cli(capsys, "report", str(results), "-o", str(tmp_path / "r"))
    assert rc == 2 and f"{results}: key 'tests' is given twice in one object (lines 2, 3)" in err
    assert not (tmp_path / "r").exists()
    shard = tmp_path / "shard.jsonl"
    shard.write_text('{"id": "a", "sweep": "s"}\n{"id": "b", "sweep": "s", "id": "c"}\n')
    merged = tmp_path / "all.jsonl"
    rc, _out, err = cli(capsys, "merge", str(shard), "-o", str(merged))
    assert rc == 2 and f"{shard}:2: key 'id' is given twice" in err, err
    assert not merged.exists()


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


def test_a_ranking_or_prompt_file_giving_a_key_twice_is_refused(tmp_path: Path) -> None:
    from pytest_llmperf import load_prompts
    from pytest_llmperf.errors import UsageError
    from pytest_llmperf.sweep.ranking import read_ranking

    ranking = tmp_path / "rank.json"
    ranking.write_text('{"ranking": ["a"], "ranking": ["b"]}')
    with pytest.raises(UsageError, match=r"rank.json: key 'ranking' is given twice"):
        read_ranking(ranking)
    for suffix, text in ((".yaml", "hi: Hello\nhi: Bye\n"), (".json", '{"hi": "a", "hi": "b"}')):
        prompts = tmp_path / f"prompts{suffix}"
        prompts.write_text(text)
        with pytest.raises(UsageError, match=rf"prompts\{suffix}: key 'hi' is given twice"):
            load_prompts(prompts)


def test_yaml_merge_keys_may_still_override() -> None:
    from pytest_llmperf.fileio import loads_yaml

    assert loads_yaml("a: &a {x: 1, y: 2}\nb: {<<: *a, y: 3}\n", "f") == {
        "a": {"x": 1, "y": 2},
        "b": {"x": 1, "y": 3},
    }


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


def test_a_rule_source_giving_a_threshold_twice_is_refused() -> None:
    from pytest_llmperf.errors import UsageError
    from pytest_llmperf.verdict.thresholds import merge_threshold_sources

    source = {"thresholds": {"tg_tps": "-5%"}, "tg_tps": "-50%"}
    with pytest.raises(UsageError, match="the threshold of tg_tps is given twice"):
        merge_threshold_sources([("rules.yaml", source)])
    with pytest.raises(UsageError, match="both sla and slas are given"):
        merge_threshold_sources([("rules.yaml", {"sla": [], "slas": []})])


# -- 11. shell-like splits of user text -----------------------------------------------------

UNBALANCED = " cannot be split into words (no closing quotation): close the quote"


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


def test_ab_args_and_build_cmake_args_with_an_unbalanced_quote_name_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LLMPERF_BUILD_DIR", str(tmp_path / "builds"))
    rc, out, err = cli(capsys, "ab", "--model=tiny-moe-q8_0", "--args=-t '2", "-n", "8")
    assert rc == 2 and err.startswith('llmperf: error: ab --args: "-t \'2" cannot'), out + err
    assert UNBALANCED in err and len(err.strip().splitlines()) == 1
    rc, out, err = cli(capsys, "ab", "--model=tiny-moe-q8_0", "--args-b=-t 2 -c '9", "-n", "8")
    assert rc == 2 and 'ab --args-b: "-t 2 -c \'9" cannot' in err, out + err
    rc, out, err = cli(capsys, "build", "x", "--cmake-args=-DGGML_NATIVE='OFF")
    assert rc == 2 and 'build x: --cmake-args: "-DGGML_NATIVE=\'OFF" cannot' in err, out + err
    assert UNBALANCED in err and "Traceback" not in err
    assert not (tmp_path / "builds").exists() or not list((tmp_path / "builds").iterdir())


def test_user_text_is_split_in_one_place() -> None:
    """Every shell-like split of user text goes through options.split_words, which names
    where the text came from: no other module calls shlex.split."""
    import ast

    import pytest_llmperf

    package = Path(pytest_llmperf.__file__).parent
    callers = []
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "split"
                and isinstance(node.value, ast.Name)
                and node.value.id == "shlex"
            ):
                callers.append(str(source.relative_to(package)))
    assert callers == ["options.py"], callers


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
    ("sampling", "expected"),
    [
        ({"top_p": 1.5}, "sampling top_p=1.5: write a number from 0 to 1"),
        ({"min_p": -0.1}, "sampling min_p=-0.1: write a number from 0 to 1"),
        ({"top_k": 2.5}, "sampling top_k=2.5: write an integer"),
        ({"temperature": float("nan")}, "sampling temperature=nan: write a number >= 0"),
        ({"temperature": True}, "sampling temperature=True: write a number >= 0"),
        ({"repeat_penalty": 0}, "sampling repeat_penalty=0: write a number > 0"),
        ({"seed": -5}, "sampling seed=-5: write an integer 0..4294967295"),
        ({"seed": "1"}, "sampling seed='1': write an integer"),
        ({"mirostat_mode": 3}, "sampling mirostat_mode=3: write 0, 1 or 2"),
        ({"stop": 5}, "sampling stop=5: write a string or a list of strings"),
        ({"logit_bias": {13: "x"}}, "sampling logit_bias={13: 'x'}: write token id -> bias"),
        ({"logit_bias": {"a": 1.0}}, "write token id -> bias"),
    ],
)
def test_sampling_values_are_checked_for_type_and_range(
    sampling: dict[str, object], expected: str
) -> None:
    from pytest_llmperf.errors import UsageError
    from pytest_llmperf.model.workloads import stream_workload

    with pytest.raises(UsageError) as info:
        stream_workload("Hi", sampling=sampling)
    assert expected in str(info.value)
    ok = {"temperature": 0, "top_p": 1, "top_k": -1, "seed": 0, "logit_bias": {13: float("-inf")}}
    assert stream_workload("Hi", sampling=ok).sampling


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


def test_configs_values_are_checked() -> None:
    from pytest_llmperf import configs
    from pytest_llmperf.errors import UsageError

    with pytest.raises(UsageError, match=r"configs\(5, \.\.\.\): name the models"):
        configs(5)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"configs\(\[\], \.\.\.\): name the models"):
        configs([])
    with pytest.raises(UsageError, match=r"n_threads=\[\] gives no configuration at all"):
        configs("tiny-moe-q8_0", n_threads=[])
    with pytest.raises(UsageError, match="args=5: write the arguments as one string"):
        configs("tiny-moe-q8_0", 5)  # type: ignore[arg-type]
