"""What a test would measure, read at collection: loaded with ``-p
pytest_llmperf.plugin.probe`` into a ``pytest --collect-only`` child process (see
:mod:`pytest_llmperf.session.probe`), it writes, for every collected test that uses the
fixtures, its configuration as the plugin resolves it (the ``llmperf`` marker merged over
module and class, parametrization, profiles, the rootdir's registry) and the workloads
its body measures, to the file named by :data:`PROBE_ENV`.

The workloads are read from the test function's source, not run: each
``<fixture>.measure(...)`` call whose workload is a literal, or a parameter of the test
(its value in this item's parametrization). A call whose workload is computed, and a
streamed request (``measure_stream``), is named in ``unread``, so the caller can ask for
the workloads instead of guessing them.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import textwrap
from typing import Any

import pytest

from pytest_llmperf.errors import LLMPerfError
from pytest_llmperf.fileio import write_atomic
from pytest_llmperf.plugin.state import session_key, test_plan_of

#: the environment variable naming the file the probe writes
PROBE_ENV = "LLMPERF_PROBE_FILE"
_CALLS = ("measure", "measure_stream", "measure_load", "measure_all")


def _workloads(item: pytest.Item) -> tuple[list[str], list[str]]:
    """(the workloads the test's body measures, the calls it could not read)."""
    function = getattr(item, "function", None)
    if function is None:
        return [], ["the test is not a Python function"]
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError) as exc:
        return [], [f"its source cannot be read ({exc})"]
    callspec = getattr(item, "callspec", None)
    params: dict[str, Any] = dict(callspec.params) if callspec is not None else {}
    found: list[str] = []
    unread: list[str] = []
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _CALLS
        ):
            continue
        arg = node.args[0] if node.args else None
        for kw in node.keywords:
            if kw.arg == "workload":
                arg = kw.value
        line = node.lineno + (function.__code__.co_firstlineno - 1)
        if node.func.attr != "measure":
            unread.append(f"line {line}: {node.func.attr}(...) is not bisected")
        elif isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            text = arg.value
        elif isinstance(arg, ast.Name) and isinstance(params.get(arg.id), str):
            text = params[arg.id]
        else:
            unread.append(f"line {line}: {ast.unparse(node)[:60]}")
            continue
        if text not in found:
            found.append(text)
    return found, unread


def pytest_collection_finish(session: pytest.Session) -> None:
    out = os.environ.get(PROBE_ENV)
    if not out:
        return
    perf = session.config.stash.get(session_key, None)
    tests: list[dict[str, Any]] = []
    for item in session.items:
        doc: dict[str, Any] = {"nodeid": item.nodeid}
        try:
            plan = test_plan_of(item, perf) if perf is not None else None
        except LLMPerfError as exc:
            doc["error"] = str(exc)
            plan = None
        if plan is not None:
            cfg = plan.config
            workloads, unread = _workloads(item)
            doc.update(
                model=cfg.model,
                args=cfg.params.to_args(),
                build=cfg.build,
                launcher=cfg.launcher,
                workloads=workloads,
                unread=unread,
            )
        tests.append(doc)
    write_atomic(out, json.dumps({"tests": tests}, indent=1) + "\n")
