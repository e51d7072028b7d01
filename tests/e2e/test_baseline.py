"""The baseline store: one file per test, history, upgrades from schema 1, corrupt and hand-
edited files, concurrent and crashing writes, keys, and merging in git.

Split by tier: pure parts in tests/unit/test_baseline.py and pytest sessions and child
processes in tests/e2e/test_baseline.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pytest_llmperf.baseline import (
    BaselineStore,
)
from tests.unit.test_baseline import doc, session, tmp_files

_WORKER = r"""
import json, sys
from pytest_llmperf.baseline import BaselineStore, Pending, SessionRecord
directory, worker, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
raw = json.loads(sys.stdin.read())
for i in range(rounds):
    s = BaselineStore(directory, "shared")
    p = Pending("m", raw["fp"], SessionRecord.from_json(raw["session"]))
    s.queue(f"t.py::test_{worker}_{i}", "k" + worker, p)
    s.queue("t.py::test_shared", "k" + worker, p)
    s.flush()
"""


def test_concurrent_flushes_from_processes_lose_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "baselines"
    payload = json.dumps({"fp": doc(["tg32"]), "session": session().to_json()})
    workers, rounds = 4, 6
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(directory), str(w), str(rounds)],
            stdin=subprocess.PIPE,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(payload)
        p.stdin.close()
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read() if p.stderr else ""
    s = BaselineStore(directory, "shared").load()
    nodeids = {e.nodeid for e in s.list_entries()}
    expected = {f"t.py::test_{w}_{i}" for w in range(workers) for i in range(rounds)}
    assert expected <= nodeids and len(nodeids) == workers * rounds + 1
    # every worker's entry of the shared test survived (stored keys are re-made from the
    # fingerprint on reading, so the four collapse onto the one key they share)
    assert len(s.entries_for("t.py::test_shared")) == 1
    assert tmp_files(directory) == []
    # no lock file is left in the user's repository
    assert not list(directory.rglob("*.lock"))
