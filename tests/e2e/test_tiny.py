"""The built-in tiny models: build, cache, quantize, run.

Split by tier: pure parts in tests/unit/test_tiny.py, real model runs in
tests/integration/test_tiny.py and pytest sessions and child processes in
tests/e2e/test_tiny.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_cli_prints_a_path_that_runs_and_reuses_it(tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pytest_llmperf.cli.main",
        "tiny-model",
        "--variant",
        "moe-mxfp4",
        "--cache-dir",
        str(tmp_path),
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, check=True)
    path = first.stdout.strip()
    assert Path(path).is_file() and "built" in first.stderr
    second = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert second.stdout.strip() == path and "cached" in second.stderr
    env = dict(os.environ)
    code = (
        "import sys; from pytest_llmperf.backends.engine import LoadedModel;"
        "from pytest_llmperf.model.params import LoadParams;"
        "from pytest_llmperf.model.workloads import Workload;"
        "m = LoadedModel(sys.argv[1], LoadParams(n_threads=2, n_ctx=128));"
        "print(len(m.run(Workload(n_gen=8), 1, 0)[0].token_ns))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, path], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "8"
