"""pytest_llmperf.outputs seen from outside: report.html in a real headless browser (when
chromium is installed), pytest-benchmark's own command reading our export, and the
package imported by a clean interpreter. The reports are tests/unit/test_report.py's
fixtures (from tests/data/results_fixture.json).

Split by tier: pure parts in tests/unit/test_report.py and pytest sessions and child
processes in tests/e2e/test_report.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_llmperf.outputs import write_benchmark_json
from tests.unit import test_report as unit
from tests.unit.test_report import EXPECTED_PLOTS, PerfReport

#: the unit tier's fixtures: the fixture file's reports, its baselines, their report folder
reports, baselines, outdir = unit.reports, unit.baselines, unit.outdir

# -- pytest-benchmark and Bencher --------------------------------------------------------


def _pytest_benchmark_cli() -> Path:
    for name in ("pytest-benchmark", "py.test-benchmark"):
        path = Path(sys.executable).parent / name
        if path.exists():
            return path
    pytest.skip("pytest-benchmark's command line is not installed next to this Python")


def test_benchmark_json_compare(tmp_path: Path, reports: list[PerfReport]) -> None:
    path = write_benchmark_json(reports, tmp_path / "0001_llmperf.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    names = [b["name"] for b in data["benchmarks"]]
    # one benchmark per (test, workload) that timed something; the crashed test has none
    assert len(names) == sum(len(r.measurements) for r in reports)
    # pytest-benchmark's CLI builds a pytest Config, which imports every installed pytest
    # plugin; keep the run independent of the state of this project's own plugin
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.run(
        [str(_pytest_benchmark_cli()), "compare", str(path), "--columns=min,max,mean,ops,rounds"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Failed to load" not in out
    for name in names:
        assert name in out, f"{name!r} missing from:\n{out}"


# -- a real browser ----------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.slow
@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="/usr/bin/chromium is not installed (apt-get install chromium) to render report.html",
)
def test_report_html_in_headless_chromium(outdir: Path, tmp_path: Path) -> None:
    html = outdir / "report.html"
    common = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ]
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            *common,
            f"--user-data-dir={tmp_path / 'profile1'}",
            f"--screenshot={shot}",
            "--window-size=1280,2000",
            html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert shot.exists() and shot.stat().st_size > 50_000, "no screenshot"
    if os.environ.get("LLMPERF_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["LLMPERF_KEEP_SCREENSHOT"])
    proc = subprocess.run(
        [*common, f"--user-data-dir={tmp_path / 'profile2'}", "--dump-dom", html.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    dom = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = re.search(r'data-images-loaded="(\d+)"', dom)
    assert loaded, f"the page's load script did not run:\n{dom[:500]}"
    assert int(loaded.group(1)) == len(EXPECTED_PLOTS)
    assert f"({len(EXPECTED_PLOTS)} plots)</title>" in dom
    assert dom.count("<table") >= 10 and "S_TG t/s" in dom


def test_report_package_imports_neither_pytest_nor_matplotlib() -> None:
    code = (
        "import sys, pytest_llmperf.outputs\n"
        "bad = [m for m in ('pytest', '_pytest', 'matplotlib') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
