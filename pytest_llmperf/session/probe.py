"""One test of the suite as a configuration and workloads, for ``llmperf bisect --test``.

The test is collected by pytest itself, in a child process (``python -m pytest
--collect-only -p pytest_llmperf.plugin.probe NODEID``): the plugin resolves the test's
configuration exactly as a session would (its marker merged over module and class, its
parametrization, profiles and the rootdir's registry), and
:mod:`pytest_llmperf.plugin.probe` reads the workloads its body measures. A child, not
this process: collecting imports the suite's conftest files and modules, registers
plugins and changes ``sys.path``, none of which should stay in the process that then runs
a bisect for an hour; and nothing is measured (running the body would measure on the
installed build, and its assertions need real measurements).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pytest_llmperf.errors import UsageError

#: the environment variable the probe plugin reads (pytest_llmperf.plugin.probe.PROBE_ENV)
PROBE_ENV = "LLMPERF_PROBE_FILE"


@dataclass(frozen=True)
class ProbedTest:
    nodeid: str
    model: str
    args: str
    build: str
    launcher: str
    workloads: tuple[str, ...]
    #: measure calls whose workload could not be read
    unread: tuple[str, ...]


def probe(nodeid: str, rootdir: Path, timeout_s: float = 300.0) -> ProbedTest:
    """The configuration and workloads of the test ``nodeid`` (see the module
    docstring); a UsageError naming what went wrong."""
    if "::" not in nodeid:
        raise UsageError(f"--test {nodeid}: name one test, e.g. perf_tests/test_x.py::test_y")
    with tempfile.TemporaryDirectory(prefix="llmperf-probe-") as tmp:
        out = Path(tmp) / "probe.json"
        env = dict(os.environ, **{PROBE_ENV: str(out)})
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "pytest_llmperf.plugin.probe",
            nodeid,
        ]
        try:
            done = subprocess.run(
                cmd, cwd=rootdir, env=env, capture_output=True, text=True, timeout=timeout_s
            )
        except subprocess.TimeoutExpired:
            raise UsageError(
                f"--test {nodeid}: collecting it took over {timeout_s:.0f} s"
            ) from None
        if not out.is_file():
            tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
            raise UsageError(
                f"--test {nodeid}: pytest could not collect it (exit {done.returncode}): "
                + " / ".join(tail)
            )
        tests = json.loads(out.read_text(encoding="utf-8")).get("tests", [])
    if not tests:
        raise UsageError(
            f"--test {nodeid}: pytest collects no test by that id; give one that "
            "`pytest --collect-only -q` lists (with its parameters)"
        )
    if len(tests) != 1:
        names = ", ".join(t.get("nodeid", "?") for t in tests[:5])
        raise UsageError(
            f"--test {nodeid}: collects {len(tests)} tests ({names}); name exactly one "
            "(with its parameters, e.g. test_x.py::test_y[tiny-moe-mxfp4])"
        )
    doc = tests[0]
    if "error" in doc:
        raise UsageError(f"--test {nodeid}: {doc['error']}")
    if "model" not in doc:
        raise UsageError(
            f"--test {nodeid}: not a performance test (it uses neither llm_perf nor "
            "llm_model, or names no model)"
        )
    return ProbedTest(
        doc["nodeid"],
        doc["model"],
        doc.get("args", ""),
        doc.get("build", "default"),
        doc.get("launcher", ""),
        tuple(doc.get("workloads", [])),
        tuple(doc.get("unread", [])),
    )
