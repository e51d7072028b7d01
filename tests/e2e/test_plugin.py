"""The plugin through real pytest sessions (pytester) on real tiny models."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from pytest_llmperf import baseline as bl

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

FAST = [
    "--perf-in-process",
    "--perf-repetitions=3",
    "--perf-warmup=1",
    "--perf-machine=m",
    "-p",
    "no:cacheprovider",
]

# These tests check the plugin's mechanics, not this machine's speed: two runs of an
# unchanged model can differ by 45% here, so no timing is gated unless a test provokes a
# regression itself (REGRESSION below), with a model several times slower.
REGISTRY = """
models:
  m: {{tiny: {{moe: true, n_layer: {layers}, quant: q8_0}}}}
thresholds:
  tg_tps: {gate}
  pp_tps: {gate}
  ttft_ms: "off"
  tpot_ms: "off"
  itl_p50_ms: "off"
  itl_p95_ms: "off"
  itl_p99_ms: "off"
  e2e_ms: "off"
  load_ms: "off"
"""

TEST_DECODE = """
import pytest

@pytest.mark.llmperf(model="m", n_threads=2, n_ctx=256)
def test_decode(llm_perf):
    m = llm_perf.measure("tg24")
    assert len(m.samples[0].token_ns) == 24

@pytest.mark.llmperf(model="m", n_threads=2, n_ctx=256)
def test_prompt(llm_perf):
    llm_perf.measure("pp64")
"""


#: the gate of the regression tests: a model six times slower (4 -> 24 layers) is far
#: beyond it whatever the machine's mood, and an unchanged one never reaches it
REGRESSION_GATE = "-60%"


def project(
    pytester: pytest.Pytester, layers: int = 4, tests: str = TEST_DECODE, gate: str = '"off"'
) -> Path:
    pytester.makefile(".yaml", llmperf=REGISTRY.format(layers=layers, gate=gate))
    pytester.makepyfile(test_perf=tests)
    return pytester.path / "baselines" / "m.json"


def entries(path: Path) -> dict[str, dict[str, bl.Entry]]:
    """The stored entries of the machine whose file is ``path``, through the store."""
    store = bl.BaselineStore(path.parent, path.name.removesuffix(".json")).load()
    return {e.nodeid: store.entries_for(e.nodeid) for e in store.list_entries()}


def snapshot(path: Path) -> dict[str, bytes]:
    """The bytes of every baseline file of the machine whose file is ``path``."""
    files = [path, *sorted((path.parent / path.name.removesuffix(".json")).rglob("*"))]
    return {str(f): f.read_bytes() for f in files if f.is_file()}


def test_registers_options_markers_and_fixtures(pytester: pytest.Pytester) -> None:
    help_ = pytester.runpytest("--help")
    help_.stdout.fnmatch_lines(["*--perf-accept*", "*--perf-missing*", "*--perf-report*"])
    markers = pytester.runpytest("--markers")
    markers.stdout.fnmatch_lines(["*@pytest.mark.llmperf(model=None*"])
    fixtures = pytester.runpytest("--fixtures")
    fixtures.stdout.fnmatch_lines(["llm_model -- *", "llm_perf -- *"])


def test_new_baseline_is_recorded_then_gates(pytester: pytest.Pytester) -> None:
    path = project(pytester)
    first = pytester.runpytest(*FAST)
    first.assert_outcomes(passed=2)
    first.stdout.fnmatch_lines(["*llmperf*", "*test_decode*new*", "*created 2*"])
    assert set(entries(path)) == {"test_perf.py::test_decode", "test_perf.py::test_prompt"}
    before = snapshot(path)
    second = pytester.runpytest(*FAST)
    second.assert_outcomes(passed=2)
    second.stdout.no_fnmatch_line("*created*")
    assert snapshot(path) == before  # nothing to write when nothing is accepted
    text = second.stdout.str()
    assert re.search(r"test_decode.*(pass|inconclusive|improved)", text), text


def test_missing_baseline_policies(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = project(pytester)
    skipped = pytester.runpytest(*FAST, "--perf-missing=skip", "-rs")
    skipped.assert_outcomes(skipped=2)
    skipped.stdout.fnmatch_lines(["*no baseline for this test on this machine*--perf-accept*"])
    assert not path.exists()
    failed = pytester.runpytest(*FAST, "--perf-missing=fail")
    failed.assert_outcomes(failed=2)
    monkeypatch.setenv("CI", "true")  # CI fails on a missing baseline by default
    ci = pytester.runpytest(*FAST)
    ci.assert_outcomes(failed=2)
    assert not path.exists()


def test_regression_fails_the_test_in_its_call_phase_with_the_table(
    pytester: pytest.Pytester,
) -> None:
    path = project(pytester, layers=4, gate=REGRESSION_GATE)
    pytester.runpytest(*FAST, "--perf-accept").assert_outcomes(passed=2)
    accepted = snapshot(path)
    project(pytester, layers=24, gate=REGRESSION_GATE)  # the same model id, 6x slower
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest(*FAST, "--perf-repetitions=5", f"--junitxml={junit}", "-rf")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "performance regressed" in out or "regressed" in out
    result.stdout.fnmatch_lines(
        [
            "*metric*baseline*current*change*threshold*verdict*",
            "*tg_tps*regressed*",
            "*re-run with --perf-accept to accept these numbers*",
            "*FAILED test_perf.py::test_decode*",
        ]
    )
    assert "model.sha256" in out  # the file changed: said as a warning
    xml = junit.read_text()
    assert xml.count("<failure") == 2
    assert snapshot(path) == accepted  # a failing run writes nothing
    # --lf sees the failure like any other
    lf = pytester.runpytest(*FAST, "--perf-repetitions=5", "--lf", "-p", "cacheprovider")
    assert lf.ret == 1
    # accepting the new numbers makes them the baseline, and the suite pass again
    pytester.runpytest(*FAST, "--perf-accept").assert_outcomes(passed=2)
    slow_sha = {
        e.fingerprint["model"]["sha256"]
        for by_key in entries(path).values()
        for e in by_key.values()
    }
    assert len(slow_sha) == 1 and snapshot(path) != accepted
    project(pytester, layers=24)  # the same model, gate off: the mechanism, not the mood
    pytester.runpytest(*FAST, "--perf-repetitions=5").assert_outcomes(passed=2)


def test_accept_modes_and_partial_accept(pytester: pytest.Pytester) -> None:
    path = project(pytester)
    pytester.runpytest(*FAST, "--perf-accept", "-k", "decode").assert_outcomes(passed=1)
    assert set(entries(path)) == {"test_perf.py::test_decode"}
    stamp = entries(path)["test_perf.py::test_decode"]
    # a -k selection never deletes other entries
    res = pytester.runpytest(*FAST, "--perf-accept=new")
    res.assert_outcomes(passed=2)
    res.stdout.fnmatch_lines(["*created 1*", "*created: test_perf.py::test_prompt*"])
    assert entries(path)["test_perf.py::test_decode"] == stamp
    # failed: only regressed/new/mismatch tests are re-recorded; nothing here failed
    res = pytester.runpytest(*FAST, "--perf-accept=failed")
    res.assert_outcomes(passed=2)
    res.stdout.no_fnmatch_line("*updated*")
    res = pytester.runpytest(*FAST, "--perf-accept=all", "-k", "prompt")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines(["*test_prompt*"])
    assert entries(path)["test_perf.py::test_decode"] == stamp


def test_mismatch_needs_force_accept(pytester: pytest.Pytester) -> None:
    path = project(pytester)
    pytester.runpytest(*FAST, "--perf-accept").assert_outcomes(passed=2)
    changed = TEST_DECODE.replace("n_ctx=256", "n_ctx=512")  # other params: another key
    pytester.makepyfile(test_perf=changed)
    res = pytester.runpytest(*FAST, "--perf-missing=fail")
    res.assert_outcomes(failed=2)
    res.stdout.fnmatch_lines(["*the stored baseline has another fingerprint*"])
    res = pytester.runpytest(*FAST, "--perf-accept")
    res.assert_outcomes(passed=2)
    res.stdout.fnmatch_lines(
        [
            "*left alone (not accepted): 2*",
            "*test_decode: fingerprint mismatch (add --perf-force-accept)*",
        ]
    )
    res = pytester.runpytest(*FAST, "--perf-accept", "--perf-force-accept")
    res.assert_outcomes(passed=2)
    assert all(len(v) == 2 for v in entries(path).values())  # both fingerprints kept


def test_unused_entries_are_listed(pytester: pytest.Pytester) -> None:
    project(pytester)
    pytester.runpytest(*FAST, "--perf-accept").assert_outcomes(passed=2)
    pytester.makepyfile(
        test_perf=TEST_DECODE.split("@pytest.mark.llmperf", 2)[0]
        + "@pytest.mark.llmperf"
        + TEST_DECODE.split("@pytest.mark.llmperf")[1]
    )
    res = pytester.runpytest(*FAST)
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines(
        ["*1 stored baseline entries were not used*", "*test_perf.py::test_prompt*"]
    )


def test_limits_and_ratio_sla_from_marker(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        tests="""
import pytest

@pytest.mark.llmperf(model="m", n_threads=2, n_ctx=512, limits=["tg_tps >= 1e9"])
def test_limit(llm_perf):
    llm_perf.measure("tg16")

@pytest.mark.llmperf(model="m", n_threads=2, n_ctx=512,
                     sla=["tpot_ms[tg16@d256] / tpot_ms[tg16] <= 100"])
def test_sla(llm_perf):
    llm_perf.measure("tg16")
    llm_perf.measure("tg16@d256")
""",
    )
    res = pytester.runpytest(*FAST, "-rf")
    res.assert_outcomes(failed=1, passed=1)
    res.stdout.fnmatch_lines(["*tg_tps*>= 1e+09*regressed*", "*FAILED*test_limit*"])


def test_parametrized_ids_and_k_selection(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        tests="""
import pytest
from pytest_llmperf import configs

@pytest.mark.parametrize("llmperf_config", configs(["tiny-moe-q8_0", "tiny-moe-mxfp4"],
                         n_threads=2, n_ctx=256, cpu_moe=[False, True]))
def test_decode(llm_perf):
    llm_perf.measure("tg8")
""",
    )
    res = pytester.runpytest(*FAST, "--collect-only", "-q")
    res.stdout.fnmatch_lines(
        [
            "test_perf.py::test_decode[[]tiny-moe-q8_0-c256-t2[]]",
            "test_perf.py::test_decode[[]tiny-moe-q8_0-c256-t2-cpumoe[]]",
            "test_perf.py::test_decode[[]tiny-moe-mxfp4-c256-t2[]]",
            "test_perf.py::test_decode[[]tiny-moe-mxfp4-c256-t2-cpumoe[]]",
        ]
    )
    res = pytester.runpytest(*FAST, "-k", "mxfp4", "-v")
    res.assert_outcomes(passed=2)


def test_model_absent_is_a_skip_with_the_variable_to_set(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BIG_MODEL_GGUF", raising=False)
    pytester.makefile(".yaml", llmperf="models:\n  big: {env: BIG_MODEL_GGUF}\n")
    pytester.makepyfile(
        test_perf="""
import pytest

@pytest.mark.llmperf(model="big")
def test_big(llm_perf):
    llm_perf.measure("tg8")
"""
    )
    res = pytester.runpytest(*FAST, "-rs")
    res.assert_outcomes(skipped=1)
    res.stdout.fnmatch_lines(["*set the environment variable BIG_MODEL_GGUF*"])


def test_isolated_by_default_and_crash_fails_one_test(pytester: pytest.Pytester) -> None:
    project(
        pytester,
        tests="""
import os, signal
import pytest

@pytest.mark.llmperf(model="m", n_threads=2, n_ctx=256)
def test_a(llm_perf):
    llm_perf.measure("tg8")

@pytest.mark.llmperf(model="m", n_threads=1, n_ctx=256)
def test_crash(llm_perf, llm_model):
    os.kill(llm_model.runner.pid, signal.SIGSEGV)
    llm_perf.measure("tg8")

@pytest.mark.llmperf(model="m", n_threads=1, n_ctx=256)
def test_after(llm_perf):
    llm_perf.measure("tg8")
""",
    )
    res = pytester.runpytest(
        "--perf-repetitions=1",
        "--perf-warmup=0",
        "--perf-machine=m",
        "-p",
        "no:cacheprovider",
        "--perf-no-reorder",
    )
    res.assert_outcomes(passed=2, failed=1)
    res.stdout.fnmatch_lines(["*died during measure tg8: SIGSEGV*", "*FAILED*test_crash*"])


def test_xdist_workers_accept_without_losing_entries(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    tests = "import pytest\n" + "".join(
        f"""
@pytest.mark.llmperf(model="m", n_threads=1, n_ctx=256)
def test_{i}(llm_perf):
    llm_perf.measure("tg8")
"""
        for i in range(6)
    )
    path = project(pytester, tests=tests)
    res = pytester.runpytest(*FAST, "--perf-repetitions=1", "-n", "2", "--perf-accept")
    res.assert_outcomes(passed=6)
    # the controller runs no test: it shows the workers' reports
    res.stdout.fnmatch_lines(
        [
            "*llmperf*",
            "*test_5*",
            "*6 tests: 6 new*",
            "*baselines are written by the xdist workers*",
        ]
    )
    assert len(entries(path)) == 6


def test_report_outputs(pytester: pytest.Pytester) -> None:
    project(pytester)
    out = pytester.path / "rep"
    pytester.runpytest(*FAST, "--perf-accept").assert_outcomes(passed=2)
    res = pytester.runpytest(
        *FAST,
        f"--perf-report={out}",
        f"--perf-benchmark-json={out / 'bench.json'}",
        f"--perf-bmf={out / 'bmf.json'}",
    )
    res.assert_outcomes(passed=2)
    for name in ("results.json", "summary.md", "report.html", "bench.json", "bmf.json"):
        assert (out / name).is_file(), name
    data = json.loads((out / "results.json").read_text())
    assert {t["nodeid"] for t in data["tests"]} == {
        "test_perf.py::test_decode",
        "test_perf.py::test_prompt",
    }
    # the baselines' history beside the report, linked from it
    history = (out / "history.md").read_text(encoding="utf-8")
    assert "## test_perf.py::test_decode" in history and "tg_tps" in history
    assert "<h1>Baseline history</h1>" in (out / "history.html").read_text(encoding="utf-8")
    assert "[baseline history](history.md)" in (out / "summary.md").read_text(encoding="utf-8")
    assert '<a href="history.html">baseline history</a>' in (out / "report.html").read_text(
        encoding="utf-8"
    )


def test_verbose_shows_every_metric(pytester: pytest.Pytester) -> None:
    project(pytester)
    res = pytester.runpytest(*FAST, "-v", "-k", "decode")
    res.assert_outcomes(passed=1)
    for metric in ("itl_p99_ms", "tpot_ms", "llama_tg_tps", "rss_peak_mb"):
        assert metric in res.stdout.str(), metric
    assert os.environ.get("CI") is None
