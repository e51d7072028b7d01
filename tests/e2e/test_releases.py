"""Any two llama-cpp-python releases side by side: a release build is the release in an
environment of its own (its own bindings and library), and the engine runs on every
release from the declared floor up (native/: the fields an older release calls otherwise,
knobs a release lacks refused only when set).

The fast tests run on the installed release; the slow one builds the floor release once
into the cache (minutes) and runs ``llmperf ab`` of it against the installed one.

Split by tier: pure parts in tests/unit/test_releases.py, real model runs in
tests/integration/test_releases.py and pytest sessions and child processes in
tests/e2e/test_releases.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_llmperf import paths, tg
from pytest_llmperf.backends.runner import IsolatedRunner
from pytest_llmperf.errors import UsageError
from pytest_llmperf.machine import builds
from pytest_llmperf.machine.registry import parse_registry
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.native import llama_lib

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

ROOT = Path(__file__).resolve().parents[2]
#: the tiny_model fixture: a variant name -> its GGUF file
TinyModel = Callable[[str], Path]


def floor_version() -> str:
    """The lowest llama-cpp-python pyproject.toml declares."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    m = re.search(r'"llama-cpp-python>=([\d.]+)"', text)
    assert m, "pyproject.toml declares no llama-cpp-python floor"
    return m.group(1)


# -- what a release build's environment holds -------------------------------------------------


def _requirement_names() -> set[str]:
    from importlib.metadata import PackageNotFoundError, requires

    def name(req: str) -> str:
        return re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0].lower().replace("_", "-")

    todo = ["llama-cpp-python", *(name(r) for r in builds.WORKER_REQUIREMENTS)]
    seen: set[str] = set()
    while todo:
        dist = todo.pop()
        if dist in seen:
            continue
        seen.add(dist)
        try:
            reqs = requires(dist) or []
        except PackageNotFoundError:
            continue
        todo += [name(r) for r in reqs if "extra ==" not in r]
    return seen


WORKER_RUN = """
import json, sys
from importlib.metadata import packages_distributions
from pytest_llmperf.backends import worker  # noqa: F401
from pytest_llmperf.backends.inprocess import InProcessRunner
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.workloads import Workload, stream_workload
r = InProcessRunner(sys.argv[1], LoadParams(n_threads=1, n_ctx=256), dedicated=True)
r.measure(Workload(n_prompt=8, n_gen=4), 1, 0)
r.measure_stream(stream_workload(prompt="Hi", max_tokens=4), 1, 0)
r.close()
dists = packages_distributions()
mods = {m.split(".")[0] for m in list(sys.modules)} - set(sys.stdlib_module_names)
print(json.dumps(sorted({d.lower().replace("_", "-") for m in mods for d in dists.get(m, [])})))
"""


def test_the_worker_imports_only_what_a_release_build_holds(tiny_model: TinyModel) -> None:
    """A real worker's load, measurement and stream import only distributions a release
    build's environment has: llama-cpp-python's and WORKER_REQUIREMENTS' (with what they
    require), and this package."""
    ran = subprocess.run(
        [sys.executable, "-c", WORKER_RUN, str(tiny_model("moe-q8_0"))],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    used = set(json.loads(ran.stdout.strip().splitlines()[-1]))
    allowed = _requirement_names() | {"pytest-llmperf", "setuptools", "pip"}
    assert used <= allowed, f"the worker imports {used - allowed}: add to WORKER_REQUIREMENTS"


def test_a_cached_release_build_is_an_interpreter_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A release build in the cache resolves to its environment's interpreter, which finds
    this package after its own packages (the variable, not PYTHONPATH); --list says the
    kind."""
    monkeypatch.setenv("LLMPERF_BUILD_DIR", str(tmp_path))
    root = tmp_path / "00000000000000aa"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    (root / "build.json").write_text(
        json.dumps(
            {
                "names": ["floor"],
                "key": root.name,
                "version": "0.3.16",
                "cmake_args": "",
                "source": "",
                "kind": "release",
            }
        )
    )
    source = parse_registry({}, "llmperf.yaml", tmp_path).build("floor")
    assert source.python == str(root / "venv" / "bin" / "python") and source.release == "0.3.16"
    runtime, why = source.runtime()
    assert runtime is not None, why
    assert runtime.env == {builds.PACKAGE_PATH_ENV: str(ROOT)} and not runtime.lib
    listing = subprocess.run(
        [sys.executable, "-m", "pytest_llmperf.cli", "build", "--list"],
        env={**os.environ, "LLMPERF_BUILD_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert listing.startswith(f"floor: release {root / 'venv' / 'bin' / 'python'}")
    assert "(llama-cpp-python 0.3.16 (its own environment);" in listing


# -- the floor release, built and run for real ------------------------------------------------


def _floor_cached(version: str) -> bool:
    return any(
        b.kind == "release" and b.version == version and b.lib.exists()
        for b in builds.cached_build_list()
    )


@pytest.fixture(scope="module")
def floor_build() -> builds.BuiltInfo:
    """The floor release built into the cache as a release build (minutes the first time;
    then reused); skipped where it is not cached and cannot be built here."""
    version = floor_version()
    if not _floor_cached(version):
        if not (shutil.which("cmake") and (shutil.which("cc") or shutil.which("gcc"))):
            pytest.skip(f"llama-cpp-python {version} is not built and there is no compiler")
        index = subprocess.run(
            [sys.executable, "-m", "pip", "index", "versions", "llama-cpp-python"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if version not in index.stdout:
            pytest.skip(f"llama-cpp-python {version} is not built and the index is not reachable")
    log = paths.cache_root() / "floor-build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as fh:
        return builds.build("llmperf-floor", version=version, kind="release", log=fh)


@pytest.mark.slow
def test_the_floor_release_runs_its_own_bindings_and_refuses_what_it_lacks(
    floor_build: builds.BuiltInfo, tiny_model: TinyModel
) -> None:
    """The floor release's worker runs its own llama-cpp-python; --no-mmap reaches it
    through its older fields (its log says so), flash attention on through its on/off
    field; a knob it has no field for is refused, naming the knob and the release."""
    runtime, why = floor_build.source_entry().runtime()
    assert runtime is not None, why
    path = str(tiny_model("moe-mxfp4"))
    params = LoadParams(n_threads=2, n_ctx=256, use_mmap=False, flash_attn="on")
    runner = IsolatedRunner(path, params, runtime=runtime, build=floor_build.name)
    try:
        assert runner.software["llama_cpp"] == floor_build.version
        assert runner.resolved["load_mode"] == "none"
        assert runner.resolved["flash_attn"] == "on"
        m = runner.measure(tg(8), 1, 0)
        assert len(m.samples[0].token_ns) == 8
    finally:
        runner.close()
    with pytest.raises(UsageError) as exc:
        IsolatedRunner(path, LoadParams(n_threads=2, no_host=True), runtime=runtime,
                       build=floor_build.name)  # fmt: skip
    assert str(exc.value).startswith(
        f"no_host=1: llama-cpp-python {floor_build.version}'s llama_model_params has no field"
    )


@pytest.mark.slow
def test_llmperf_ab_of_the_floor_release_against_the_installed_one(
    floor_build: builds.BuiltInfo, tiny_model: TinyModel, tmp_path: Path
) -> None:
    """`llmperf ab --build-b FLOOR`: each side's worker runs its own release, both are
    measured round by round (a verdict, or exit 3 where every round was contaminated by
    another process on a busy machine)."""
    tiny_model("moe-mxfp4")
    ran = subprocess.run(
        [
            *(sys.executable, "-m", "pytest_llmperf.cli", "ab", "--model", "tiny-moe-mxfp4"),
            *("--args", "-t 2 -fa off", "--build-b", floor_build.name, "-n", "16"),
            *("--rounds", "4", "--max-loads", "2", "--seconds", "20", "-o", "json"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert ran.returncode in (0, 1, 3), ran.stderr[-3000:]
    out = json.loads(ran.stdout)
    [row] = out["results"]
    assert row["test"] == "tg16" and out["b"].endswith(f"-b{floor_build.name}")
    [load, *_] = row["loads_records"]
    assert load["a"]["software.llama_cpp"] == llama_lib.version()
    assert load["b"]["software.llama_cpp"] == floor_build.version
    assert load["b"]["resolved.flash_attn"] == load["a"]["resolved.flash_attn"] == "off"
    assert row["rounds_data"] and all(
        r["a"]["tg_tps"] > 0 and r["b"]["tg_tps"] > 0 for r in row["rounds_data"]
    )
