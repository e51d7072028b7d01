"""Builds and launchers: the registry, ids, a second copy of the library as a real build,
bad builds failing only their tests, launchers reaching the worker.

Split by tier: pure parts in tests/unit/test_builds.py and pytest sessions and child
processes in tests/e2e/test_builds.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pytest_llmperf import baseline as bl
from pytest_llmperf.api import Config, config
from pytest_llmperf.errors import UsageError
from pytest_llmperf.machine import builds
from pytest_llmperf.machine.registry import parse_registry
from pytest_llmperf.model.params import LoadParams

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


# -- registry ------------------------------------------------------------------------


def test_builds_and_launchers_in_the_registry(tmp_path: Path) -> None:
    reg = parse_registry(
        {
            "builds": {
                "main": {"lib": "libs/main"},
                "py": {"python": sys.executable},
                "ci": {"env": "X_LIB"},
            },
            "launchers": {"pin": "taskset -c 0", "low": ["nice", "-n", "5"]},
        },
        "llmperf.yaml",
        tmp_path,
    )
    assert reg.build("main").lib == str(tmp_path / "libs/main")
    assert reg.build("py").python == sys.executable
    assert reg.build("ci").env == "X_LIB"
    assert reg.build("default").is_default
    assert reg.launcher("pin") is not None and reg.launcher("pin").argv == ("taskset", "-c", "0")  # type: ignore[union-attr]
    assert reg.launcher("") is None
    with pytest.raises(UsageError, match=r"unknown build 'nope'.*llmperf build nope"):
        reg.build("nope")
    with pytest.raises(UsageError, match="unknown launcher 'nope'"):
        reg.launcher("nope")


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        ({"builds": {"default": {"lib": "x"}}}, "'default' is the installed"),
        (
            {"builds": {"a": {"lib": "x", "python": "y"}}},
            "exactly one of lib, python, env or llama_bench",
        ),
        ({"builds": {"a": {"path": "x"}}}, "unknown: path"),
        ({"builds": {"a": 3}}, "expected {lib: DIR}"),
        (
            {"launchers": {"a": "no-such-program-xyz -c 0"}},
            "program 'no-such-program-xyz' not found",
        ),
        ({"launchers": {"a": ""}}, "empty command"),
    ],
)
def test_bad_registry_entries_name_the_key(
    tmp_path: Path, section: dict[str, object], fragment: str
) -> None:
    with pytest.raises(UsageError, match=r"llmperf\.yaml") as exc:
        parse_registry(section, "llmperf.yaml", tmp_path)
    assert fragment in str(exc.value)


def test_runtime_of_bad_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = builds.BuildSource("gone", lib=str(tmp_path / "gone"))
    assert missing.runtime()[0] is None and "does not exist" in missing.runtime()[1]
    (tmp_path / "empty").mkdir()
    empty = builds.BuildSource("empty", lib=str(tmp_path / "empty"))
    assert "holds no libllama" in empty.runtime()[1]
    monkeypatch.delenv("X_LIB_UNSET", raising=False)
    env = builds.BuildSource("ci", env="X_LIB_UNSET")
    assert "set the environment variable X_LIB_UNSET" in env.runtime()[1]
    nopy = builds.BuildSource("py", python=str(tmp_path / "python9"))
    assert "does not exist" in nopy.runtime()[1]


def test_ids_and_keys_name_non_default_builds_and_launchers() -> None:
    plain = config("tiny-moe-mxfp4", n_threads=2)
    main = config("tiny-moe-mxfp4", n_threads=2, build="main")
    pinned = config("tiny-moe-mxfp4", n_threads=2, launcher="pin")
    assert plain.id == "tiny-moe-mxfp4-t2"
    assert main.id == "tiny-moe-mxfp4-t2-bmain"
    assert pinned.id == "tiny-moe-mxfp4-t2-lpin"
    assert len({plain.key(), main.key(), pinned.key()}) == 3
    # the baseline key changes only for a non-default build
    fp = {"machine": {"cpu": "x"}, "model": {"id": "m"}}
    assert bl.baseline_key(fp, LoadParams(), ["tg8"]) == bl.baseline_key(
        dict(fp), LoadParams(), ["tg8"]
    )
    assert bl.baseline_key(dict(fp, build="main"), LoadParams(), ["tg8"]) != bl.baseline_key(
        fp, LoadParams(), ["tg8"]
    )
    with pytest.raises(UsageError, match="build=''"):
        Config("m", build="")
