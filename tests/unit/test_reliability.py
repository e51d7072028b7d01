"""Reliability (issue 8), end to end through real pytest sessions on the built-in tiny models.

A backend crash or hang fails exactly one test; bad input (model files, baselines, the
registry, thresholds, marker params) gives a clear error naming the input and the fix; a
baseline file that cannot be read is never modified; Ctrl-C and concurrent sessions never
leave a half-written baseline nor lose finished entries.

Split by tier: pure parts in tests/unit/test_reliability.py and pytest sessions and child
processes in tests/e2e/test_reliability.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pytest_llmperf

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
PACKAGE = Path(pytest_llmperf.__file__).parent


# -- safety ----------------------------------------------------------------------------------


def _calls_and_imports(source: Path) -> tuple[set[str], set[str]]:
    tree = ast.parse(source.read_text(encoding="utf-8"), str(source))
    imported: set[str] = set()
    called: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
            if node.module == "yaml":  # from yaml import load: counts as a call of yaml.load
                called.update(f"yaml.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                called.add(f"{func.value.id}.{func.attr}")
            elif isinstance(func, ast.Name):
                called.add(func.id)
    return imported, called


def test_no_pickle_and_yaml_only_through_safe_load() -> None:
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 10
    yaml_calls: set[str] = set()
    for source in sources:
        imported, called = _calls_and_imports(source)
        unsafe = imported & {"pickle", "cPickle", "dill", "cloudpickle", "shelve", "marshal"}
        assert not unsafe, f"{source} imports {unsafe}"
        assert not called & {"eval", "exec"}, f"{source} calls eval/exec"
        yaml_calls |= {c for c in called if c.startswith("yaml.")}
        text = source.read_text(encoding="utf-8")
        assert "shell=True" not in text, source
        assert "allow_pickle=True" not in text, source
    assert yaml_calls <= {"yaml.safe_load", "yaml.safe_dump", "yaml.YAMLError"}, yaml_calls
    assert "yaml.safe_load" in yaml_calls
