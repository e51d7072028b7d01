"""A regression against the stored baseline measured while the whole machine ran slower
than when the baseline was recorded (its speed probe says so): re-measured once, then not
judged; the same regression on a machine no slower than recorded fails."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.machine import speed

RUN = [
    "-p",
    "no:cacheprovider",
    "--perf-machine=m",
    "--perf-warmup=0",
    "--perf-repetitions=4",
    "--perf-remeasure=0",
    "--perf-report=rep",
]
ONE_TEST = """
import pytest

@pytest.mark.llmperf(model="tiny-moe-q8_0", n_threads=2, n_ctx=256)
def test_decode(llm_perf):
    llm_perf.measure("tg8")
"""


def _edit(stored: Path, data: dict[str, Any], *, speed_factor: float) -> None:
    """The stored baseline says this machine generated 10x faster, and its speed probe
    scored ``speed_factor`` x what it scored."""
    for entry in data["entries"].values():
        session = entry["sessions"][0]
        values = session["values"]["tg8"]
        values["tg_tps"] = [v * 10 for v in values["tg_tps"]]
        session["machine_speed"]["score"] *= speed_factor
    stored.write_text(json.dumps(data))


def _result(pytester: pytest.Pytester) -> dict[str, Any]:
    [test] = json.loads((pytester.path / "rep" / "results.json").read_text())["tests"]
    assert isinstance(test, dict)
    return test


def test_a_regression_measured_on_a_slower_machine_is_not_judged(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_perf=ONE_TEST)
    pytester.runpytest(*RUN, "--perf-accept").assert_outcomes(passed=1)
    [stored] = (pytester.path / "baselines" / "m").rglob("*.json")
    data = json.loads(stored.read_text())
    [entry] = data["entries"].values()
    probe = entry["sessions"][0]["machine_speed"]
    assert probe["probe"] == speed.PROBE and probe["score"] > 0 and probe["threads"] >= 1
    recorded = json.dumps(data)

    # the probe scored 10x higher when the baseline was recorded: not judged
    _edit(stored, json.loads(recorded), speed_factor=10)
    edited = json.loads(stored.read_text())
    res = pytester.runpytest(*RUN)
    res.assert_outcomes(passed=1)
    out = res.stdout.str()
    assert "1 inconclusive" in out
    test = _result(pytester)
    assert test["verdict"] == "inconclusive"
    notes = "\n".join(test["notes"])
    assert re.search(r"re-measured \(attempt 2\): the machine ran \d+% slower", notes), notes
    assert re.search(r"tg8: tg_tps, .* measured slower while the whole machine ran \d+%", notes)
    assert "run again when the machine is back to its usual speed" in notes
    [tg] = [c for c in test["comparisons"]["tg8"] if c["metric"] == "tg_tps"]
    assert tg["verdict"] == "inconclusive" and tg["reason"].startswith("not judged: the machine")
    [m] = test["measurements"]
    assert m["resolved"]["machine_speed"]["probe"] == speed.PROBE
    # nothing stored changed
    assert json.loads(stored.read_text()) == edited

    # the same regression on a machine no slower than recorded fails (the stored score
    # halved, so that the probe's own spread cannot make it look slower)
    _edit(stored, json.loads(recorded), speed_factor=0.5)
    res = pytester.runpytest(*RUN)
    res.assert_outcomes(failed=1)
    assert "regressed" in res.stdout.str()
    assert "whole machine ran" not in res.stdout.str()
