"""Builds and launchers: the registry, ids, a second copy of the library as a real build,
bad builds failing only their tests, launchers reaching the worker.

Split by tier: pure parts in tests/unit/test_builds.py and pytest sessions and child
processes in tests/e2e/test_builds.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_llmperf import baseline as bl
from pytest_llmperf.machine import builds
from pytest_llmperf.machine.registry import parse_registry

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

RUN = ["-p", "no:cacheprovider", "--perf-repetitions=1", "--perf-warmup=0", "--perf-machine=m"]


def installed_lib() -> Path:
    import llama_cpp

    return Path(llama_cpp.__file__).parent / "lib"


@pytest.fixture(scope="module")
def lib_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second copy of the installed llama.cpp library: a real build of its own."""
    dst = tmp_path_factory.mktemp("build") / "lib"
    shutil.copytree(installed_lib(), dst, symlinks=True)
    return dst


# -- real sessions ------------------------------------------------------------------------


def _project(pytester: pytest.Pytester, builds_yaml: str, tests: str, launchers: str = "") -> None:
    pytester.makefile(
        ".yaml",
        llmperf=f"builds:\n{builds_yaml}\n" + (f"launchers:\n{launchers}\n" if launchers else ""),
    )
    pytester.makepyfile(test_perf=tests)


def test_a_copy_of_the_library_runs_as_its_own_build(
    pytester: pytest.Pytester, lib_copy: Path
) -> None:
    _project(
        pytester,
        f"  copy: {{lib: {json.dumps(str(lib_copy))}}}",
        """
import pytest
from pytest_llmperf import configs

@pytest.mark.parametrize("llmperf_config", configs("tiny-moe-q8_0", n_threads=2, n_ctx=256,
                                                   build=["default", "copy"]))
def test_decode(llm_perf):
    m = llm_perf.measure("tg8")
    assert len(m.samples[0].token_ns) == 8
""",
    )
    res = pytester.runpytest(*RUN, "--collect-only", "-q")
    res.stdout.fnmatch_lines(
        ["*test_decode[[]tiny-moe-q8_0-c256-t2[]]", "*test_decode[[]tiny-moe-q8_0-c256-t2-bcopy[]]"]
    )
    res = pytester.runpytest(*RUN, "--perf-accept", "--perf-in-process")  # a build always isolates
    res.assert_outcomes(passed=2)
    store = bl.BaselineStore(pytester.path / "baselines", "m").load()
    entries = {e.nodeid: store.entries_for(e.nodeid) for e in store.list_entries()}
    [copy] = entries["test_perf.py::test_decode[tiny-moe-q8_0-c256-t2-bcopy]"].values()
    [plain] = entries["test_perf.py::test_decode[tiny-moe-q8_0-c256-t2]"].values()
    assert copy.fingerprint["build"] == "copy" and "build" not in plain.fingerprint
    # the same bytes: the same library identity, recorded by the worker that loaded it
    assert copy.fingerprint["software"]["lib_sha256"] == plain.fingerprint["software"]["lib_sha256"]


def test_bad_builds_fail_only_their_tests_with_the_fix(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "libllama.so").write_bytes(b"not a library")
    (tmp_path / "empty").mkdir()
    _project(
        pytester,
        f"  gone: {{lib: {json.dumps(str(tmp_path / 'gone'))}}}\n"
        f"  empty: {{lib: {json.dumps(str(tmp_path / 'empty'))}}}\n"
        f"  fake: {{lib: {json.dumps(str(fake))}}}\n"
        "  unset: {env: LLMPERF_TEST_UNSET_BUILD}",
        """
import pytest
from pytest_llmperf import configs

@pytest.mark.parametrize("llmperf_config", configs("tiny-moe-q8_0", n_threads=2, n_ctx=256,
                         build=["gone", "empty", "fake", "unset", "default"]))
def test_x(llm_perf):
    llm_perf.measure("tg8")
""",
    )
    res = pytester.runpytest(*RUN, "-rs")
    res.assert_outcomes(passed=1, failed=3, skipped=1)
    out = res.stdout.str()
    assert "build 'gone'" in out and "does not exist; build it or fix the path" in out
    assert "holds no libllama" in out
    assert "build 'fake': the worker could not load llama.cpp" in out and "llmperf build" in out
    assert "set the environment variable LLMPERF_TEST_UNSET_BUILD" in out


def test_an_interpreter_without_llama_cpp_is_named(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    _project(
        pytester,
        f"  bare: {{python: {json.dumps(str(venv / 'bin' / 'python'))}}}",
        """
import pytest

@pytest.mark.llmperf(model="tiny-moe-q8_0", n_threads=2, n_ctx=256, build="bare")
def test_x(llm_perf):
    llm_perf.measure("tg8")
""",
    )
    res = pytester.runpytest(*RUN)
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert "build 'bare'" in out and "cannot import 'numpy': install it there" in out
    assert "Traceback" not in out  # one clear line, not the worker's traceback


@pytest.mark.skipif(
    shutil.which("taskset") is None or len(os.sched_getaffinity(0)) < 2,
    reason="needs taskset and two CPUs",
)
def test_a_launcher_pins_the_worker(pytester: pytest.Pytester) -> None:
    _project(
        pytester,
        "  {}",
        """
import pytest

@pytest.mark.llmperf(model="tiny-moe-q8_0", n_threads=1, n_ctx=256, launcher="pin")
def test_pinned(llm_perf):
    m = llm_perf.measure("tg8")
    assert m.resolved["cpu_affinity"] == [1]
    assert m.fingerprint["launcher"] == "pin"
""",
        launchers="  pin: taskset -c 1",
    )
    res = pytester.runpytest(*RUN, "--collect-only", "-q")
    res.stdout.fnmatch_lines(["*test_pinned*"])
    pytester.runpytest(*RUN).assert_outcomes(passed=1)


def test_a_sweep_over_builds(pytester: pytest.Pytester, lib_copy: Path) -> None:
    """Seed 000's exploratory phase: builds x params as a sweep YAML."""
    pytester.makefile(
        ".yaml",
        llmperf=f"builds:\n  copy: {{lib: {json.dumps(str(lib_copy))}}}\n",
        sweeps="""
sweeps:
  builds:
    models: [tiny-moe-q8_0]
    workloads: [tg8]
    repetitions: 1
    base: "-c 256"
    axes:
      build: [default, copy]
      n_threads: [1, 2]
""",
    )
    pytester.makepyfile(
        test_sweep="""
import pytest

@pytest.mark.llmperf_sweep(file="sweeps.yaml", name="builds")
def test_sweep(llm_perf):
    llm_perf.measure_all()
    assert llm_perf.config.build in ("default", "copy")
"""
    )
    res = pytester.runpytest(*RUN, "--perf-missing=record", "-v")
    res.assert_outcomes(passed=4)
    res.stdout.fnmatch_lines(["*test_sweep[[]tiny-moe-q8_0-bcopy-t2[]] PASSED*"])


# -- llmperf build: names are aliases ------------------------------------------------------

#: a llama.cpp "source tree" CMake builds in seconds: one shared libllama
FAKE_TREE = {
    "CMakeLists.txt": "cmake_minimum_required(VERSION 3.10)\nproject(fake C)\n"
    "add_library(llama SHARED llama.c)\n",
    "llama.c": "int llama_fake(void) { return 1; }\n",
}


def _tree(path: Path, tag: str = "") -> Path:
    path.mkdir(parents=True)
    for name, text in FAKE_TREE.items():
        (path / name).write_text(text + (f"/* {tag} */\n" if tag and name == "llama.c" else ""))
    return path


def _llmperf(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_llmperf.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake and a C compiler")
def test_build_names_are_aliases_and_a_name_given_again_moves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`llmperf build fa --source S` then `llmperf build fb --source S`: one build, two
    names; fa is still there. fa given again for another tree moves to the new build, and
    fb stays with the old one."""
    cache = tmp_path / "builds"
    env = {**os.environ, "LLMPERF_BUILD_DIR": str(cache)}
    monkeypatch.setenv("LLMPERF_BUILD_DIR", str(cache))
    src = _tree(tmp_path / "src")
    first = _llmperf("build", "fa", "--source", str(src), env=env)
    assert first.returncode == 0, first.stderr
    assert "built build fa:" in first.stderr
    second = _llmperf("build", "fb", "--source", str(src), env=env)
    assert second.returncode == 0, second.stderr
    assert "reused build fb (also named fa):" in second.stderr
    lib = Path(second.stdout.strip())
    listing = _llmperf("build", "--list", env=env)
    assert listing.returncode == 0, listing.stderr
    assert [ln.split(":", 1)[0] for ln in listing.stdout.splitlines()] == ["fa, fb"]
    reg = parse_registry({}, "llmperf.yaml", tmp_path)
    assert reg.build("fa").lib == reg.build("fb").lib == str(lib)  # `ab --build-b fa` finds it

    other = _tree(tmp_path / "other", tag="another tree")
    moved = _llmperf("build", "fa", "--source", str(other), env=env)
    assert moved.returncode == 0, moved.stderr
    assert f"the name fa now names this build; it was taken from build {lib.parent.name}" in (
        moved.stderr
    )
    assert f"(source {src}), which keeps fb" in moved.stderr
    new_lib = Path(moved.stdout.strip())
    assert new_lib != lib
    reg = parse_registry({}, "llmperf.yaml", tmp_path)
    assert reg.build("fa").lib == str(new_lib)
    assert reg.build("fb").lib == str(lib)
    listing = _llmperf("build", "--list", env=env)
    assert sorted(ln.split(":", 1)[0] for ln in listing.stdout.splitlines()) == ["fa", "fb"]


def test_a_build_json_of_an_older_version_keeps_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lib_copy: Path
) -> None:
    """build.json files written before aliases hold one "name": still read."""
    monkeypatch.setenv("LLMPERF_BUILD_DIR", str(tmp_path))
    root = tmp_path / "0123456789abcdef"
    shutil.copytree(lib_copy, root / "lib", symlinks=True)
    (root / "build.json").write_text(
        json.dumps(
            {
                "name": "old",
                "key": "0123456789abcdef",
                "version": "0.3.36",
                "cmake_args": "",
                "source": "",
                "kind": "lib",
            }
        )
    )
    assert builds.cached_builds()["old"].lib == root / "lib"
    assert [b.names for b in builds.cached_build_list()] == [("old",)]
