"""Reliability (issue 8), end to end through real pytest sessions on the built-in tiny models.

A backend crash or hang fails exactly one test; bad input (model files, baselines, the
registry, thresholds, marker params) gives a clear error naming the input and the fix; a
baseline file that cannot be read is never modified; Ctrl-C and concurrent sessions never
leave a half-written baseline nor lose finished entries.

Split by tier: pure parts in tests/unit/test_reliability.py and pytest sessions and child
processes in tests/e2e/test_reliability.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf import baseline as bl
from pytest_llmperf.machine import tiny

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

MACHINE = "rel"
FAST = [
    "-p",
    "no:cacheprovider",
    "--perf-repetitions=1",
    "--perf-warmup=0",
    f"--perf-machine={MACHINE}",
]
MARK = '@pytest.mark.llmperf(model="m", n_threads=2, n_ctx=256)'
ONE_TEST = f"""
import pytest

{MARK}
def test_decode(llm_perf):
    llm_perf.measure("tg8")
"""
#: a frame of the plugin's own code in pytest's output: an error shown as an internal
#: traceback rather than as a message
INTERNAL_FRAME = re.compile(r"pytest_llmperf/[\w/]+\.py:\d+")


def registry(models: dict[str, Path | str], extra: str = "") -> str:
    lines = ["models:"] + [f"  {mid}: {{path: {json.dumps(str(p))}}}" for mid, p in models.items()]
    return "\n".join(lines) + "\n" + extra


def project(
    pytester: pytest.Pytester, model: Path | str, tests: str = ONE_TEST, extra: str = ""
) -> Path:
    """A project using ``model`` as "m"; returns its baseline file."""
    pytester.makefile(".yaml", llmperf=registry({"m": model}, extra))
    pytester.makepyfile(test_perf=tests)
    return pytester.path / "baselines" / f"{MACHINE}.json"


def entries(path: Path) -> dict[str, dict[str, bl.Entry]]:
    """Every stored entry of the machine whose file is ``path``, read (and validated)
    through the store."""
    store = bl.BaselineStore(path.parent, path.name.removesuffix(".json")).load()
    assert not store.broken_files and not store.notices, (store.broken_files, store.notices)
    return {e.nodeid: store.entries_for(e.nodeid) for e in store.list_entries()}


def snapshot(path: Path) -> dict[str, bytes]:
    """The bytes of every baseline file of the machine whose file is ``path``."""
    files = [path, *sorted((path.parent / path.name.removesuffix(".json")).rglob("*"))]
    return {str(f): f.read_bytes() for f in files if f.is_file()}


def usage_error(result: pytest.RunResult) -> str:
    """The message of a pytest usage error (exit code 4)."""
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    return result.stderr.str()


# -- model inputs ----------------------------------------------------------------------------


def test_missing_model_file_is_a_skip_naming_the_path_and_the_fix(
    pytester: pytest.Pytester,
) -> None:
    absent = pytester.path / "models" / "absent.gguf"
    project(pytester, absent)
    res = pytester.runpytest(*FAST, "-rs")
    res.assert_outcomes(skipped=1)
    assert res.ret == pytest.ExitCode.OK
    res.stdout.fnmatch_lines(
        [f"SKIPPED*model 'm'*file {absent} is absent; download it there, or change its path*"]
    )


def _write_directory(path: Path, good: Path) -> None:
    path.mkdir()


def _write_empty(path: Path, good: Path) -> None:
    path.write_bytes(b"")


def _write_random(path: Path, good: Path) -> None:
    path.write_bytes(os.urandom(4096))


def _write_truncated(path: Path, good: Path) -> None:
    with open(good, "rb") as fh:
        path.write_bytes(fh.read(1 << 20))


def _write_truncated_header(path: Path, good: Path) -> None:
    with open(good, "rb") as fh:
        path.write_bytes(fh.read(10))


def _write_future_version(path: Path, good: Path) -> None:
    with open(good, "rb") as fh:
        head = fh.read(1 << 16)
    path.write_bytes(head[:4] + (99).to_bytes(4, "little") + head[8:])


def _write_missing_tensor(path: Path, good: Path) -> None:
    spec = tiny.TinySpec(n_layer=2, n_embd=256, n_ff=256, n_head=4, n_head_kv=2, n_vocab=512)
    tiny.write_f16(spec, path, omit=frozenset({"blk.1.attn_q.weight"}))


BAD_MODELS: dict[str, tuple[Callable[[Path, Path], None], list[str]]] = {
    "directory": (
        _write_directory,
        ["is a directory, not a .gguf file", "check the path in your model registry"],
    ),
    "empty": (_write_empty, ["is empty (0 bytes): re-download or rebuild it"]),
    "random-bytes": (
        _write_random,
        ["is not a GGUF file (starts with", "convert it with llama.cpp's convert_hf_to_gguf.py"],
    ),
    "truncated": (
        _write_truncated,
        ["is truncated: its tensors need", "the file has 1048576; re-download or rebuild it"],
    ),
    "truncated-header": (
        _write_truncated_header,
        ["is truncated inside its header; re-download or rebuild it"],
    ),
    "future-gguf-version": (
        _write_future_version,
        ["is not a readable GGUF (GGUF version 99 (this reader knows 2 and 3))"],
    ),
    "missing-tensor": (
        _write_missing_tensor,
        [
            "llama_model_load_from_file failed for",
            "tensor 'blk.1.attn_q.weight' not found",
            "hint: llama.cpp cannot use this file",
        ],
    ),
}

TWO_MODELS = f"""
import pytest

@pytest.mark.llmperf(model="bad", n_threads=2, n_ctx=256)
def test_bad(llm_perf):
    llm_perf.measure("tg8")

{MARK}
def test_good(llm_perf):
    llm_perf.measure("tg8")
"""


@pytest.mark.parametrize("case", list(BAD_MODELS))
def test_bad_model_file_fails_only_its_test_naming_file_and_fix(
    pytester: pytest.Pytester, model: Path, case: str
) -> None:
    write, expected = BAD_MODELS[case]
    bad = pytester.path / "bad.gguf"
    write(bad, model)
    pytester.makefile(".yaml", llmperf=registry({"bad": bad, "m": model}))
    pytester.makepyfile(test_perf=TWO_MODELS)
    res = pytester.runpytest(*FAST, "--perf-accept")  # isolated: the default
    res.assert_outcomes(failed=1, passed=1)
    text = res.stdout.str()
    assert str(bad) in text
    for fragment in expected:
        assert fragment in text, (fragment, text)
    res.stdout.fnmatch_lines(["FAILED test_perf.py::test_bad*"])
    # the bad model cost nothing else: the good test ran and was accepted
    assert set(entries(pytester.path / "baselines" / f"{MACHINE}.json")) == {
        "test_perf.py::test_good"
    }


def test_bad_model_file_message_is_not_an_internal_traceback(
    pytester: pytest.Pytester, model: Path
) -> None:
    bad = pytester.path / "bad.gguf"
    bad.mkdir()
    project(pytester, bad)
    res = pytester.runpytest(*FAST)
    res.assert_outcomes(failed=1)
    text = res.stdout.str()
    assert "is a directory, not a .gguf file" in text
    assert not INTERNAL_FRAME.findall(text), text


def test_failed_load_leaves_no_worker_process(pytester: pytest.Pytester) -> None:
    (pytester.path / "empty.gguf").write_bytes(b"")
    project(
        pytester,
        pytester.path / "empty.gguf",
        tests=f"""
import psutil
import pytest
from pytest_llmperf.errors import ModelFileError

def workers():
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "pytest_llmperf.backends.worker" in " ".join(p.cmdline()):
                out.append(p)
        except psutil.Error:
            pass
    return out

{MARK}
def test_decode(llm_perf):
    with pytest.raises(ModelFileError, match="is empty") as info:
        llm_perf.measure("tg8")
    # the exception (and its traceback) is still alive here: nothing may rely on garbage
    # collection to stop the worker that failed to load the model
    assert info.value is not None
    assert workers() == []
""",
    )
    pytester.runpytest(*FAST).assert_outcomes(passed=1)


def test_model_larger_than_memory_is_refused_up_front(
    pytester: pytest.Pytester, model: Path
) -> None:
    project(pytester, model)
    pytester.makeconftest(
        """
import psutil
import pytest

@pytest.fixture(autouse=True)
def _little_memory(monkeypatch):
    real = psutil.virtual_memory()

    class Little:
        available = 1 << 20
        total = real.total

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Little())
"""
    )
    # in process, so the patched psutil is the one the memory check reads
    res = pytester.runpytest_inprocess(*FAST, "--perf-in-process")
    res.assert_outcomes(failed=1)
    text = res.stdout.str()
    size = f"{model.stat().st_size / 2**20:.1f} MiB"
    assert f"model file {model} ({size}) is larger than the memory available (1.0 MiB)" in text
    assert "Use a smaller quantization" in text
    assert "LLMPERF_SKIP_MEMORY_CHECK=1" in text
    assert "llama_model_load_from_file" not in text  # refused before llama.cpp saw it


# -- baseline files that cannot be read ------------------------------------------------------

BAD_BASELINES: dict[str, tuple[bytes, list[str]]] = {
    "empty": (
        b"",
        ["is empty (an interrupted write or a bad merge?)", "git checkout -- FILE"],
    ),
    "truncated": (
        b'{"schema_version": 1, "machine": {}, "entr',
        [
            "is not valid JSON: Unterminated string starting at (line 1, column 38)",
            "restore it from version control, or move it away",
        ],
    ),
    "not-an-object": (
        b"[1, 2, 3]\n",
        ["the top level is a list, expected an object", "restore it from version control"],
    ),
    "future-schema": (
        b'{"schema_version": 7, "machine": {}, "entries": {}}\n',
        ["was written by a newer pytest-llmperf (schema 7 > 2)", "upgrade, or move the file"],
    ),
    "merge-conflict": (
        b'{\n<<<<<<< HEAD\n  "schema_version": 1,\n=======\n  "schema_version": 1,\n'
        b'>>>>>>> other\n  "machine": {},\n  "entries": {}\n}\n',
        ["is not valid JSON (it contains merge conflict markers)"],
    ),
    "malformed-entry": (
        b'{"schema_version": 1, "machine": {}, "entries": {"t.py::t": {"k": {'
        b'"accepted_at": "2025-01-01", "fingerprint": {}, "measurements": {"tg8": []}}}}}\n',
        ["entries['t.py::t']['k'].measurements['tg8'] is a list, expected an object"],
    ),
}


@pytest.mark.parametrize("accept", [False, True], ids=["gate", "accept"])
@pytest.mark.parametrize("case", list(BAD_BASELINES))
def test_unreadable_baseline_is_named_and_left_byte_identical(
    pytester: pytest.Pytester, model: Path, case: str, accept: bool
) -> None:
    content, expected = BAD_BASELINES[case]
    project(pytester, model)
    directory = pytester.path / "bl"
    directory.mkdir()
    path = directory / f"{MACHINE}.json"
    path.write_bytes(content)
    args = [*FAST, "--perf-in-process", f"--perf-baseline-dir={directory}"]
    res = pytester.runpytest(*args, *(["--perf-accept"] if accept else []))
    res.assert_outcomes(failed=1)
    text = res.stdout.str()
    assert f"baseline file {path}" in text
    for fragment in [*expected, "(the file was not modified)"]:
        assert fragment in text, (fragment, text)
    assert path.read_bytes() == content
    assert sorted(os.listdir(directory)) == [path.name]  # no temp file, no lock left behind


def test_unreadable_baseline_message_is_not_an_internal_traceback(
    pytester: pytest.Pytester, model: Path
) -> None:
    project(pytester, model)
    path = pytester.path / "baselines" / f"{MACHINE}.json"
    path.parent.mkdir()
    path.write_bytes(b"")
    res = pytester.runpytest(*FAST, "--perf-in-process")
    res.assert_outcomes(failed=1)
    assert "is empty" in res.stdout.str()
    assert not INTERNAL_FRAME.findall(res.stdout.str()), res.stdout.str()


def test_unreadable_baseline_is_not_summarised_as_pass(
    pytester: pytest.Pytester, model: Path
) -> None:
    project(pytester, model)
    path = pytester.path / "baselines" / f"{MACHINE}.json"
    path.parent.mkdir()
    path.write_bytes(b"[]")
    res = pytester.runpytest(*FAST, "--perf-in-process")
    res.assert_outcomes(failed=1)
    summary = res.stdout.str().split("llmperf ===", 1)[-1]
    assert not re.search(r"^test_decode .* pass$", summary, re.MULTILINE), summary
    assert "1 test: 1 pass" not in summary


def test_baseline_file_that_is_a_directory_is_named(pytester: pytest.Pytester, model: Path) -> None:
    path = project(pytester, model)
    path.mkdir(parents=True)
    res = pytester.runpytest(*FAST, "--perf-in-process", "--perf-accept")
    res.assert_outcomes(failed=1)
    assert f"{path}: is a directory, not a baseline file; move it away" in res.stdout.str()
    assert path.is_dir() and list(path.iterdir()) == []


def test_baseline_directory_that_is_a_file_is_named_and_untouched(
    pytester: pytest.Pytester, model: Path
) -> None:
    project(pytester, model)
    blocker = pytester.path / "not-a-dir"
    blocker.write_text("a file where the baseline directory should be\n")
    before = blocker.read_bytes()
    res = pytester.runpytest(
        *FAST, "--perf-in-process", f"--perf-baseline-dir={blocker}", "--perf-accept"
    )
    res.assert_outcomes(failed=1)
    assert f"the baseline directory {blocker} is a file" in res.stdout.str()
    assert "point --perf-baseline-dir (or llmperf_baseline_dir) at a directory" in res.stdout.str()
    assert blocker.read_bytes() == before


def test_stale_lock_file_does_not_block_accepting(pytester: pytest.Pytester, model: Path) -> None:
    path = project(pytester, model)
    path.parent.mkdir()
    lock = bl.BaselineStore(path.parent, MACHINE)._lock_path()
    lock.write_text("")  # left behind by a killed process: the OS lock died with it
    start = time.monotonic()
    pytester.runpytest(*FAST, "--perf-in-process", "--perf-accept").assert_outcomes(passed=1)
    assert time.monotonic() - start < 60
    assert set(entries(path)) == {"test_perf.py::test_decode"}
    # the lock lives outside the user's repository: nothing to commit by mistake
    assert not [p for p in path.parent.rglob("*") if p.name.endswith(".lock")]


# -- the registry (llmperf.yaml / pyproject.toml) --------------------------------------------

BAD_REGISTRIES: dict[str, tuple[bytes, list[str]]] = {
    "syntax-error": (b"models: {m: [}\n", ["YAML syntax error at line 1, column 14"]),
    "unknown-top-level-key": (
        b"modles: {}\n",
        ["unknown key(s) modles", "accepted: models, profiles, thresholds"],
    ),
    "unknown-model-key": (
        b"models:\n  m: {path: m.gguf, sha: abc}\n",
        ["models.m: unknown key(s) sha", "accepted: path, env, tiny, description"],
    ),
    "models-not-a-mapping": (
        b"models: [m.gguf]\n",
        ["models: must be a mapping of model id -> source"],
    ),
    "path-not-a-string": (b"models:\n  m: {path: 5}\n", ["models.m.path: must be a non-empty"]),
    "empty-path": (b"models:\n  m: {path: ''}\n", ["models.m.path: must be a non-empty"]),
    "path-and-env": (
        b"models:\n  m: {path: m.gguf, env: M}\n",
        ["models.m: give exactly one of path, env or tiny"],
    ),
    "tiny-bad-field": (
        b"models:\n  m: {tiny: {n_layers: 2}}\n",
        ["models.m.tiny: unknown field(s) n_layers"],
    ),
    "profile-bad-param": (
        b"profiles:\n  p: {n_threads: 0}\n",
        ["profiles.p: n_threads=0: must be an integer >= 1"],
    ),
    "top-level-list": (b"- models\n", ["the top level must be a mapping"]),
    "not-utf8": (b"models:\n  m: {path: \xff\xfe.gguf}\n", ["not UTF-8 text", "save it as UTF-8"]),
    "python-tag": (
        b'models: !!python/object/apply:os.system ["touch pwned"]\n',
        ["could not determine a constructor", "python/object/apply:os.system"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_REGISTRIES))
def test_bad_registry_is_a_usage_error_naming_file_and_key(
    pytester: pytest.Pytester, case: str
) -> None:
    content, expected = BAD_REGISTRIES[case]
    path = pytester.path / "llmperf.yaml"
    path.write_bytes(content)
    pytester.makepyfile(test_perf=ONE_TEST)
    message = usage_error(pytester.runpytest(*FAST))
    assert f"ERROR: {path}" in message
    for fragment in expected:
        assert fragment in message, (fragment, message)
    assert not (pytester.path / "pwned").exists()  # safe_load: no object was constructed
    assert path.read_bytes() == content


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[tool.llmperf]\nmodels = 5\n", "[tool.llmperf]: models: must be a mapping"),
        ("[tool.llmperf\nmodels = 5\n", "(at line 1, column 14)"),
    ],
    ids=["wrong-type", "syntax-error"],
)
def test_bad_pyproject_section_is_a_usage_error(
    pytester: pytest.Pytester, toml: str, expected: str
) -> None:
    pytester.makefile(".toml", pyproject=toml)
    pytester.makepyfile(test_perf=ONE_TEST)
    message = usage_error(pytester.runpytest(*FAST))
    assert str(pytester.path / "pyproject.toml") in message and expected in message


# -- thresholds that do not parse ------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml", "expected"),
    [
        ("thresholds: {tg_tps: fast}\n", "[thresholds] tg_tps: 'fast' not understood; write"),
        ("thresholds: {tg_tps: '+10%'}\n", "tg_tps: '+10%' points the wrong way"),
        ("thresholds: {tg_tsp: '-10%'}\n", "unknown metric 'tg_tsp'"),
        ("limits: ['load_ms <<< 5']\n", "[limits]: 'load_ms <<< 5' not understood"),
        ("sla: ['itl_p95_ms[tg512] <= 1.3']\n", "[sla]: 'itl_p95_ms[tg512] <= 1.3' not under"),
    ],
    ids=["word", "wrong-direction", "unknown-metric", "limit", "sla"],
)
def test_bad_threshold_in_the_registry_is_a_usage_error(
    pytester: pytest.Pytester, yaml: str, expected: str
) -> None:
    pytester.makefile(".yaml", llmperf=yaml)
    pytester.makepyfile(test_perf=ONE_TEST)
    message = usage_error(pytester.runpytest(*FAST))
    assert f"ERROR: {pytester.path / 'llmperf.yaml'}" in message
    assert expected in message, message


def test_bad_threshold_in_the_ini_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nllmperf_thresholds =\n    tg_tps -10%\n")
    pytester.makepyfile(test_perf=ONE_TEST)
    message = usage_error(pytester.runpytest(*FAST))
    assert "ini llmperf_thresholds: 'tg_tps -10%': write 'metric: threshold'" in message


MARKER_GATES = [
    ('thresholds={"tg_tps": "fast"}', "[thresholds] tg_tps: 'fast' not understood; write"),
    ('limits=["tg_tps >>> 3"]', "[limits]: 'tg_tps >>> 3' not understood"),
    ('sla=["x"]', "[sla]: 'x' not understood; write e.g."),
]


@pytest.mark.parametrize(("kwarg", "expected"), MARKER_GATES, ids=["threshold", "limit", "sla"])
def test_bad_threshold_in_a_marker_errors_naming_the_test(
    pytester: pytest.Pytester, model: Path, kwarg: str, expected: str
) -> None:
    project(pytester, model, tests=ONE_TEST.replace("n_ctx=256)", f"n_ctx=256, {kwarg})"))
    res = pytester.runpytest(*FAST, "--perf-in-process")
    assert res.ret != pytest.ExitCode.OK
    text = res.stdout.str() + res.stderr.str()
    assert f"marker on test_perf.py::test_decode {expected}" in text, text


def test_bad_threshold_in_a_marker_is_reported_like_bad_params(
    pytester: pytest.Pytester, model: Path
) -> None:
    kwarg, expected = MARKER_GATES[0]
    project(pytester, model, tests=ONE_TEST.replace("n_ctx=256)", f"n_ctx=256, {kwarg})"))
    message = usage_error(pytester.runpytest(*FAST, "--perf-in-process"))
    assert f"marker on test_perf.py::test_decode {expected}" in message


# -- absurd params in a marker ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ("n_threads=0, n_ctx=256", "n_threads=0: must be an integer >= 1"),
        ("n_ctx=10**9", "n_ctx=1000000000: larger than any model supports"),
        ("n_ctx=256, n_batch=64, n_ubatch=128", "n_ubatch=128 is larger than n_batch=64"),
        ('args="-t 0 -c 256"', "argument -t: 0 must be >= 1"),
        ('n_ctx=256, flash_attn="maybe"', "flash_attn='maybe': unknown flash attention mode"),
        ('n_ctx=256, type_k="q9_0"', "type_k='q9_0': unknown KV cache type"),
        ("n_ctx=256, n_thread=2", "unknown load parameter(s) n_thread"),
    ],
    ids=["threads-0", "ctx-1e9", "ubatch-gt-batch", "args", "flash-attn", "kv-type", "typo"],
)
def test_absurd_marker_params_are_a_usage_error_naming_the_test(
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
    assert "ERROR: llmperf marker on test_perf.py::test_decode: " in message
    assert expected in message, message


@pytest.mark.parametrize(
    "kwarg",
    ["repetitions=0", 'repetitions="x"', "warmup=-1", "timeout=0", "remeasure=-1", 'isolate="no"'],
)
def test_absurd_marker_run_extras_are_a_usage_error(
    pytester: pytest.Pytester, model: Path, kwarg: str
) -> None:
    project(pytester, model, tests=ONE_TEST.replace("n_ctx=256)", f"n_ctx=256, {kwarg})"))
    message = usage_error(pytester.runpytest(*FAST, "--perf-in-process"))
    assert "llmperf marker on test_perf.py::test_decode" in message
    assert kwarg.split("=")[0] in message


# -- crashes and hangs fail one test ---------------------------------------------------------


def test_killed_backend_fails_exactly_one_test_and_the_session_completes(
    pytester: pytest.Pytester, model: Path
) -> None:
    path = project(
        pytester,
        model,
        tests="""
import os
import signal
import pytest

@pytest.mark.llmperf(model="m", n_threads=2, n_ctx=256)
def test_a(llm_perf):
    llm_perf.measure("tg8")

@pytest.mark.llmperf(model="m", n_threads=1, n_ctx=256)
def test_killed(llm_perf, llm_model):
    os.kill(llm_model.runner.pid, signal.SIGKILL)  # what the OOM killer does
    llm_perf.measure("tg8")

@pytest.mark.llmperf(model="m", n_threads=1, n_ctx=256)
def test_same_config_after(llm_perf):
    llm_perf.measure("tg8")

@pytest.mark.llmperf(model="m", n_threads=2, n_ctx=256)
def test_b(llm_perf):
    llm_perf.measure("pp32")
""",
    )
    res = pytester.runpytest(*FAST, "--perf-no-reorder", "--perf-accept")
    res.assert_outcomes(passed=3, failed=1)
    res.stdout.fnmatch_lines(
        [
            "*backend process for m (*, -c 256 -t 1) died during measure tg8: SIGKILL",
            "hint: the process was killed, probably by the out-of-memory killer*",
        ]
    )
    text = res.stdout.str()
    assert text.count("hint: the process was killed") == 1  # once, not chained twice
    assert re.findall(r"^FAILED (\S+)", text, re.MULTILINE) == ["test_perf.py::test_killed"]
    assert not INTERNAL_FRAME.findall(text), text
    assert set(entries(path)) == {
        "test_perf.py::test_a",
        "test_perf.py::test_same_config_after",
        "test_perf.py::test_b",
    }


def test_measurement_timeout_fails_just_that_test(pytester: pytest.Pytester, model: Path) -> None:
    project(
        pytester,
        model,
        tests="""
import pytest

@pytest.mark.llmperf(model="m", n_threads=2, n_ctx=4096)
def test_hangs(llm_perf):
    llm_perf.measure("tg4000", repetitions=50)

@pytest.mark.llmperf(model="m", n_threads=2, n_ctx=4096)
def test_quick(llm_perf):
    llm_perf.measure("tg8")
""",
    )
    start = time.monotonic()
    res = pytester.runpytest(*FAST, "--perf-no-reorder", "--perf-timeout=1")
    assert time.monotonic() - start < 60
    res.assert_outcomes(passed=1, failed=1)
    res.stdout.fnmatch_lines(
        [
            "*the llama.cpp backend for m did not finish measure tg4000 within 1 s and was "
            "killed; raise --perf-timeout*",
            "FAILED test_perf.py::test_hangs*",
        ]
    )


# -- interruptions and concurrent sessions ---------------------------------------------------

SLOW_SUITE = """
import pathlib
import pytest

MARK = pytest.mark.llmperf(model="m", n_threads=1, n_ctx=4096)

def done(name):
    pathlib.Path("done-" + name).touch()

@MARK
def test_0_first(llm_perf):
    llm_perf.measure("tg8")
    done("test_0_first")

@MARK
def test_1_long(llm_perf):
    pathlib.Path("started-test_1_long").touch()
    llm_perf.measure("tg4000", repetitions=50)  # minutes: Ctrl-C lands in here
    done("test_1_long")

@MARK
def test_2_never(llm_perf):
    llm_perf.measure("tg8")
    done("test_2_never")
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "LLMPERF_"))}
    env.pop("CI", None)
    return env


#: the child starts as a terminal's foreground job would: SIGINT and SIGQUIT at their
#: defaults, whatever this process inherited (a job started with ``&`` from a script, or
#: under nohup, ignores SIGINT, and an ignored disposition survives exec: the child would
#: then rightly ignore the test's Ctrl-C)
_AS_FROM_A_TERMINAL = (
    "import os, signal, sys; "
    "[signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGQUIT)]; "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


#: the children a test started, killed at its end if still running (a failed test must
#: not leave a session and its spinning worker beside the next tests)
_SPAWNED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_child_left() -> Iterator[None]:
    yield
    while _SPAWNED:
        proc = _SPAWNED.pop()
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


_PYTEST = (sys.executable, "-c", _AS_FROM_A_TERMINAL, "-m", "pytest", "-p", "no:cacheprovider")


def _spawn(cwd: Path, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [*_PYTEST, "-v", *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    _SPAWNED.append(proc)
    return proc


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"pytest ended before {path.name} appeared:\n{out}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"{path.name} did not appear within {timeout} s")
        time.sleep(0.05)


def _group_gone(pgid: int, timeout: float = 15) -> bool:
    """No process of the group is left (the llama.cpp worker included)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    os.killpg(pgid, signal.SIGKILL)
    return False


def _gone(find: Callable[[], list[Any]], timeout: float = 15) -> None:
    """Wait until ``find()`` lists nothing; fail naming what is left."""
    deadline = time.monotonic() + timeout
    while find():
        if time.monotonic() > deadline:
            left = find()
            for p in left:
                p.kill()
            pytest.fail(f"left behind: {left}")
        time.sleep(0.1)


def _passed(output: str) -> set[str]:
    return set(re.findall(r"^(test_\S+::\S+) PASSED", output, re.MULTILINE))


RUN_ARGS = ["--perf-repetitions=1", "--perf-warmup=0", f"--perf-machine={MACHINE}"]


def _start_accepting_run(
    pytester: pytest.Pytester, model: Path, settle: bool = True
) -> tuple[Path, subprocess.Popen[str]]:
    """A baseline holding another file's entry, then ``pytest --perf-accept`` on SLOW_SUITE,
    returned once its long test has started (``settle``: and is well under way)."""
    path = project(pytester, model, tests=SLOW_SUITE)
    pytester.makepyfile(test_other=ONE_TEST)
    pre = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_other.py", *RUN_ARGS],
        cwd=pytester.path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert pre.returncode == 0, pre.stdout + pre.stderr
    assert set(entries(path)) == {"test_other.py::test_decode"}
    proc = _spawn(pytester.path, "test_perf.py", "--perf-accept", "--perf-no-reorder", *RUN_ARGS)
    _wait_for(pytester.path / "started-test_1_long", proc)
    if settle:
        time.sleep(1.0)  # well inside the long measurement
    return path, proc


@pytest.mark.parametrize("target", ["group", "main"], ids=["ctrl-c", "sigint-to-pytest-only"])
def test_ctrl_c_during_accept_keeps_the_baseline_whole(
    pytester: pytest.Pytester, model: Path, target: str
) -> None:
    path, proc = _start_accepting_run(pytester, model)
    before = entries(path)
    interrupted = time.monotonic()
    if target == "group":
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    else:
        os.kill(proc.pid, signal.SIGINT)  # the worker is not signalled: pytest must stop it
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # never left running beside the next tests
        out, _ = proc.communicate()
        pytest.fail(f"pytest did not stop within 120 s of SIGINT:\n{out}")
    took = time.monotonic() - interrupted
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert "KeyboardInterrupt" in out
    assert _group_gone(proc.pid), "a llama.cpp worker outlived the interrupted session"
    # stopped, not finished: the long measurement lasts minutes (the bound leaves room
    # for a busy machine's teardown and the accepted test's write)
    assert took < 30, f"pytest took {took:.1f} s to stop after SIGINT:\n{out}"

    # the finished test was accepted, the interrupted one was not; nothing else changed
    assert _passed(out) == {"test_perf.py::test_0_first"}
    after = entries(path)  # parses: complete, never half-written
    assert set(after) == {"test_other.py::test_decode", "test_perf.py::test_0_first"}
    assert after["test_other.py::test_decode"] == before["test_other.py::test_decode"]
    [entry] = after["test_perf.py::test_0_first"].values()
    assert set(entry.sessions[-1].values) == {"tg8"}
    leftovers = [p.name for p in path.parent.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_killed_pytest_leaves_the_baseline_as_it_was_and_no_worker(
    pytester: pytest.Pytester, model: Path
) -> None:
    """The OOM killer (SIGKILL) runs no cleanup in pytest: the baseline stays as it was,
    and the worker dies with its parent instead of measuring on."""
    path, proc = _start_accepting_run(pytester, model, settle=False)
    before = snapshot(path)
    os.kill(proc.pid, signal.SIGKILL)  # pytest only, as the kernel would
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, out
    assert _group_gone(proc.pid), "the llama.cpp worker outlived pytest"
    assert snapshot(path) == before
    assert [p.name for p in path.parent.rglob("*") if p.name.endswith(".tmp")] == []


#: what a CI runner (SIGTERM), a closed terminal (SIGHUP, to the whole group) and Slurm's
#: --signal (SIGUSR1, SIGUSR2) send; SIGTERM also to the group, as a job's cancel may
STOP_SIGNALS = [
    pytest.param(signal.SIGTERM, "main", id="sigterm"),
    pytest.param(signal.SIGTERM, "group", id="sigterm-to-the-group"),
    pytest.param(signal.SIGHUP, "group", id="sighup"),
    pytest.param(signal.SIGUSR1, "main", id="sigusr1"),
    pytest.param(signal.SIGUSR2, "main", id="sigusr2"),
]


@pytest.mark.parametrize(("sig", "target"), STOP_SIGNALS)
def test_a_stop_signal_keeps_the_finished_tests_and_leaves_no_worker(
    pytester: pytest.Pytester, model: Path, sig: signal.Signals, target: str
) -> None:
    """A CI cancel, a closed terminal or a scheduler's signal while a test measures: the
    running measurement stops, the session's end still writes the test that finished
    (whole), no worker is left, and the exit status is 128 + the signal."""
    path, proc = _start_accepting_run(pytester, model, settle=False)
    before = entries(path)
    if target == "group":
        os.killpg(proc.pid, sig)
    else:
        os.kill(proc.pid, sig)  # pytest only: it must stop the worker itself
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, out
    assert _group_gone(proc.pid), "a llama.cpp worker outlived the stopped session"
    assert f"session stopped by {sig.name}: the tests that finished were kept" in out
    assert f"exit status {128 + sig}" in out
    assert "Traceback" not in out
    assert _passed(out) == {"test_perf.py::test_0_first"}
    after = entries(path)  # parses: complete, never half-written
    assert set(after) == {"test_other.py::test_decode", "test_perf.py::test_0_first"}
    assert after["test_other.py::test_decode"] == before["test_other.py::test_decode"]
    [entry] = after["test_perf.py::test_0_first"].values()
    assert set(entry.sessions[-1].values) == {"tg8"}
    leftovers = [p.name for p in path.parent.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


OWN_HANDLERS = """
import atexit
import os
import pathlib
import signal


def mine(signum, frame):
    pathlib.Path("own-handler-ran").touch()
    os._exit(7)


signal.signal(signal.SIGTERM, mine)  # a handler of the project's own
atexit.register(
    lambda: pathlib.Path("usr1-at-exit").write_text(
        str(signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL)
    )
)
"""

WAITS = """
import pathlib
import signal
import time


def test_waits():
    pathlib.Path("usr1-in-session").write_text(
        str(signal.getsignal(signal.SIGUSR1) is not signal.SIG_DFL)
    )
    pathlib.Path("started").touch()
    if pathlib.Path("wait").exists():
        time.sleep(3600)  # until signalled
"""


def test_signal_handlers_of_others_are_kept_and_ours_are_restored(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(OWN_HANDLERS)
    pytester.makepyfile(test_wait=WAITS)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"],
        cwd=pytester.path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (pytester.path / "usr1-in-session").read_text() == "True"  # ours, in the session
    assert (pytester.path / "usr1-at-exit").read_text() == "True"  # restored at the end
    (pytester.path / "wait").touch()
    (pytester.path / "started").unlink()
    proc = _spawn(pytester.path)
    _wait_for(pytester.path / "started", proc)
    os.kill(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 7, out  # the project's own SIGTERM handler ran, not ours
    assert (pytester.path / "own-handler-ran").exists()


def _llmperf(cwd: Path, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _AS_FROM_A_TERMINAL, "-m", "pytest_llmperf.cli.main", *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _SPAWNED.append(proc)
    return proc


def _read_until(proc: subprocess.Popen[str], marker: str) -> list[str]:
    """stderr lines of ``proc`` up to the first containing ``marker``."""
    assert proc.stderr is not None
    lines: list[str] = []
    for line in proc.stderr:
        lines.append(line)
        if marker in line:
            return lines
    out = proc.stdout.read() if proc.stdout else ""
    pytest.fail(f"{marker!r} never appeared:\n{''.join(lines)}\n{out}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_llmperf_ab_stopped_by_a_signal_keeps_the_finished_rows_and_no_worker(
    tmp_path: Path, model: Path, sig: signal.Signals
) -> None:
    (tmp_path / "llmperf.yaml").write_text(registry({"m": model}))
    proc = _llmperf(
        tmp_path,
        "ab",
        "--model=m",
        "--args=-t 1 -c 4096",
        "--args-b=-t 2 -c 4096",
        "-n",
        "8,4000",
        "--rounds=2",
    )
    _read_until(proc, "tg8: ")  # the first workload finished; tg4000 runs
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, out + err
    [line] = err.strip().splitlines()
    assert line.startswith(f"llmperf ab: stopped by {sig.name}; what had finished is kept")
    assert "| tg8 | tg_tps |" in out and "tg4000" not in out  # the finished row, printed
    assert _group_gone(proc.pid), "a llama.cpp worker outlived llmperf ab"


@pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake")
def test_llmperf_build_stopped_by_sigterm_leaves_no_compiler_and_no_build(
    tmp_path: Path,
) -> None:
    import psutil

    marker = tmp_path / "building"
    src = tmp_path / "src"
    src.mkdir()
    (src / "llama.c").write_text("int llama_fake(void) { return 1; }\n")
    (src / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.10)\nproject(fake C)\n"
        "add_library(llama SHARED llama.c)\n"
        f'add_custom_target(slow ALL COMMAND sh -c "touch {marker} && exec sleep 3600")\n'
    )
    cache = tmp_path / "builds"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest_llmperf.cli.main", "build", "slow", "--source", str(src)],
        env={**_env(), "LLMPERF_BUILD_DIR": str(cache)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(marker, proc)
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, out + err
    assert err.strip().splitlines()[-1].startswith("llmperf build: stopped by SIGTERM")
    assert "Traceback" not in err

    def builders() -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter(["cmdline"]):
            if str(marker) in " ".join(p.info["cmdline"] or []):
                found.append(p)
        return found

    _gone(builders)
    assert list(cache.iterdir()) == []  # no build.json, no half-built folder


def test_two_sessions_accepting_at_once_lose_nothing(
    pytester: pytest.Pytester, model: Path
) -> None:
    path = project(pytester, model)
    for name in ("a", "b"):
        pytester.makepyfile(
            **{
                f"test_{name}": "import pytest\n"
                + "".join(
                    f"""
{MARK}
def test_{name}{i}(llm_perf):
    llm_perf.measure("tg8")
"""
                    for i in range(2)
                )
            }
        )
    args = ["--perf-accept", "--perf-repetitions=1", "--perf-warmup=0", f"--perf-machine={MACHINE}"]
    procs = [_spawn(pytester.path, f"test_{name}.py", *args) for name in ("a", "b")]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out
    assert set(entries(path)) == {
        "test_a.py::test_a0",
        "test_a.py::test_a1",
        "test_b.py::test_b0",
        "test_b.py::test_b1",
    }


def test_relative_model_paths_resolve_against_the_config_file(
    pytester: pytest.Pytester, model: Path
) -> None:
    sub = pytester.path / "conf"
    (sub / "models").mkdir(parents=True)
    (sub / "models" / "m.gguf").symlink_to(model)
    (sub / "models" / "empty.gguf").write_bytes(b"")
    (sub / "llmperf.yaml").write_text(
        "models:\n  m: {path: models/m.gguf}\n  gone: {path: models/gone.gguf}\n"
        "  empty: {path: models/empty.gguf}\n"
    )
    pytester.makepyfile(
        test_perf=f"""
import pytest

{MARK}
def test_present(llm_perf):
    llm_perf.measure("tg8")

@pytest.mark.llmperf(model="gone", n_threads=2, n_ctx=256)
def test_gone(llm_perf):
    llm_perf.measure("tg8")

@pytest.mark.llmperf(model="empty", n_threads=2, n_ctx=256)
def test_empty(llm_perf):
    llm_perf.measure("tg8")
"""
    )
    res = pytester.runpytest(*FAST, "--perf-config=conf/llmperf.yaml", "-rs")
    res.assert_outcomes(passed=1, skipped=1, failed=1)
    res.stdout.fnmatch_lines([f"SKIPPED*file {sub / 'models' / 'gone.gguf'} is absent*"])
    assert f"model file {sub / 'models' / 'empty.gguf'} is empty (0 bytes)" in res.stdout.str()


def test_relative_model_paths_do_not_depend_on_the_working_directory(
    pytester: pytest.Pytester, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini("[pytest]\n")  # the rootdir, where llmperf.yaml lives
    (pytester.path / "models").mkdir()
    (pytester.path / "models" / "m.gguf").symlink_to(model)
    pytester.makefile(".yaml", llmperf="models:\n  m: {path: models/m.gguf}\n")
    suite = pytester.mkpydir("suite")
    (suite / "test_perf.py").write_text(ONE_TEST)
    monkeypatch.chdir(suite)  # run from a subdirectory
    res = pytester.runpytest(*FAST, "test_perf.py")
    res.assert_outcomes(passed=1)


def test_a_held_signal_waits_for_the_block_and_a_finishing_run_never_raises() -> None:
    """SignalGuard in this process, with a real signal: raised once outside a held block,
    deferred to the end of one, only recorded once the run is finishing; the handlers
    found are put back."""
    from pytest_llmperf.signals import SignalGuard, Stopped

    sig = signal.SIGUSR2
    outer = signal.getsignal(sig)  # this test session's own guard, maybe
    signal.signal(sig, signal.SIG_DFL)
    guard = SignalGuard()
    try:
        guard.install()
        assert "SIGUSR2" in guard.installed
        with pytest.raises(Stopped) as stopped, guard.hold():
            os.kill(os.getpid(), sig)
            written = "the block ran to its end"
        assert written and stopped.value.exit_status == 128 + sig
        os.kill(os.getpid(), sig)  # once raised, later signals are recorded only
        guard2 = SignalGuard().install()  # over a handler of someone else: nothing
        assert guard2.installed == []
        guard.finish()
        os.kill(os.getpid(), sig)
        assert guard.received == [sig, sig, sig]
    finally:
        guard.restore()
        assert signal.getsignal(sig) is signal.SIG_DFL
        signal.signal(sig, outer)
