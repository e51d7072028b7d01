"""Paired verdicts: the rule on known rounds, then real interleaved runs of real models
(a candidate several times slower is caught; the same configuration twice is not), the
plugin's reference= and --perf-reference, llmperf ab, and contamination.

Split by tier: pure parts in tests/unit/test_paired.py, real model runs in
tests/integration/test_paired.py and pytest sessions and child processes in
tests/e2e/test_paired.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_llmperf.cli.main import main
from pytest_llmperf.session import alike

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


# -- real rounds -------------------------------------------------------------------------

REGISTRY = """
models:
  fast: {tiny: {moe: true, n_layer: 4, quant: q8_0}}
  slow: {tiny: {moe: true, n_layer: 24, quant: q8_0}}
"""


def test_llmperf_ab(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "llmperf.yaml").write_text(REGISTRY)
    code = main(
        [
            "ab",
            "--model",
            "fast",
            "--model-b",
            "slow",
            "--args",
            "-t 2 -c 256",
            "-n",
            "16",
            "--rounds",
            "3",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "| tg16 | tg_tps |" in out and "regressed" in out
    code = main(
        [
            "ab",
            "--model",
            "fast",
            "--model-b",
            "slow",
            "--args",
            "-t 2 -c 256",
            "-p",
            "32",
            "--rounds",
            "3",
            "-o",
            "json",
        ]
    )
    data = json.loads(capsys.readouterr().out)
    assert code == 1 and data["results"][0]["test"] == "pp32" and data["results"][0]["rounds_data"]
    assert main(["ab", "--model", "fast", "--args", "-t 2", "-n", "8"]) == 2
    assert "A and B are the same configuration" in capsys.readouterr().err


# -- contamination ------------------------------------------------------------------------

HOG = "import sys, time\nend = time.time() + float(sys.argv[1])\nwhile time.time() < end: pass\n"


def test_a_busy_neighbour_marks_repetitions_contaminated(tiny_model: object) -> None:
    from pytest_llmperf.backends.runner import IsolatedRunner
    from pytest_llmperf.model.params import LoadParams
    from pytest_llmperf.model.workloads import Workload

    model = tiny_model("moe-q8_0")  # type: ignore[operator]
    runner = IsolatedRunner(str(model), LoadParams(n_threads=1, n_ctx=256), "m")
    hogs = [subprocess.Popen([sys.executable, "-c", HOG, "20"]) for _ in range(os.cpu_count() or 2)]
    try:
        time.sleep(0.5)
        m = runner.measure(Workload.parse("tg64"), repetitions=3, warmup=0)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
        runner.close()
    assert all(s.contaminated for s in m.samples), [s.contention for s in m.samples]
    assert max(s.contention["others_cpu"] for s in m.samples) > 0.3


def test_contaminated_rounds_are_replaced_and_a_machine_busy_throughout_stops(
    tiny_model: object,
) -> None:
    """A real pair of workers beside processes that take every core: no round is clean,
    each is replaced up to as many again as the cap (3 + 3), then the verdict says so."""
    from pytest_llmperf.backends.runner import IsolatedRunner
    from pytest_llmperf.model.params import LoadParams
    from pytest_llmperf.model.workloads import Workload
    from pytest_llmperf.session.pairs import PairRunner
    from pytest_llmperf.verdict import paired
    from pytest_llmperf.verdict.thresholds import default_rules

    model = str(tiny_model("moe-q8_0"))  # type: ignore[operator]
    params = LoadParams(n_threads=1, n_ctx=256)
    pair = PairRunner(
        lambda: IsolatedRunner(model, params, "a"),
        lambda: IsolatedRunner(model, params, "b"),
        paired.design_for(max_rounds=3, loads=1, round_s=0.0),
    )
    hogs = [subprocess.Popen([sys.executable, "-c", HOG, "60"]) for _ in range(os.cpu_count() or 2)]
    try:
        time.sleep(0.5)
        result = pair.measure(Workload.parse("tg8"), default_rules(), warmup=1)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
        pair.close()
    assert len(result.runs.rounds) == 6 and result.runs.contaminated() == 6
    [tg] = [c for c in result.comparisons if c.metric == "tg_tps"]
    assert tg.verdict == "inconclusive"
    assert tg.reason == "0 clean round(s) (6 contaminated by other processes): too few to compare"


def test_the_sides_resolved_facts_are_compared_field_by_field(tiny_model: object) -> None:
    """Real workers: what each resolved (flash attention as llama.cpp decided it, threads,
    the environment it sees) must match unless the pair varies it."""
    from pytest_llmperf.backends.runner import IsolatedRunner
    from pytest_llmperf.model.params import LoadParams

    path = str(tiny_model("moe-q8_0"))  # type: ignore[operator]
    base = LoadParams.from_args("-t 2 -c 256 -fa off")
    a = IsolatedRunner(path, base, "m")
    b = IsolatedRunner(path, base.merged("-fa on"), "m", launcher=("env", "OMP_WAIT_POLICY=active"))
    try:
        fa, fb = alike.facts(a), alike.facts(b)
    finally:
        a.close()
        b.close()
    assert alike.differences(fa, fa, ()) == []  # one worker against itself: alike
    named = {d.split(":")[0] for d in alike.differences(fa, fb, ("cpu_moe",))}
    assert named == {"resolved.flash_attn", "env.OMP_WAIT_POLICY"}
    # varying flash attention and the launcher explains both
    assert alike.differences(fa, fb, ("flash_attn", "launcher")) == []
