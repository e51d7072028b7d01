"""Tests of pytest_llmperf.outputs: terminal lines, summary.md (golden), results.json round
trip, plots, report.html (also in a real headless browser when chromium is installed),
pytest-benchmark and Bencher exports.

The input is tests/data/results_fixture.json, generated once by ``build_fixture()`` below
and committed. ``LLMPERF_UPDATE_GOLDEN=1 pytest tests/unit/test_report.py`` regenerates
the fixture and the golden files in tests/golden/.

Split by tier: pure parts in tests/unit/test_report.py and pytest sessions and child
processes in tests/e2e/test_report.py.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf.errors import UsageError
from pytest_llmperf.model.metrics import Sample, summarize
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.results import Measurement, MetricComparison
from pytest_llmperf.model.results import TestResult as PerfReport  # not collected as a test class
from pytest_llmperf.model.workloads import Workload
from pytest_llmperf.outputs import (
    PLOTS_MISSING_NOTE,
    benchmark_json,
    bmf_dict,
    llama_bench_fields,
    load_results,
    results_dict,
    summary_markdown,
    terminal_lines,
    write_bmf,
    write_report,
)

HERE = Path(__file__).parents[1]  # tests/: its data/ and golden/
FIXTURE = HERE / "data" / "results_fixture.json"
GOLDEN = HERE / "golden"
GENERATED_AT = "2025-06-01T12:00:00+00:00"
UPDATE = os.environ.get("LLMPERF_UPDATE_GOLDEN") == "1"

# -- the fixture -------------------------------------------------------------------------

_CPU_FP: dict[str, Any] = {
    "machine": {
        "cpu": "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz",
        "cores": 2,
        "physical_cores": 1,
        "ram_gb": 7.8,
        "gpu": None,
        "gpu_count": 0,
        "gpu_driver": None,
        "vram_total_mb": None,
        "gpu_absent_reason": "NVML unavailable: libnvidia-ml.so.1 not found",
        "os": "Linux 6.1.0",
        "arch": "x86_64",
    },
    "software": {
        "python": "3.11.9",
        "llama_cpp": "0.3.16",
        "llama_system_info": "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | "
        "FMA = 1 | AVX512 = 1 | OPENMP = 1 | REPACK = 1 |",
        "pytest_llmperf": "0.1.0",
    },
}
_GPU_FP: dict[str, Any] = {
    "machine": {
        **_CPU_FP["machine"],
        "cores": 16,
        "gpu": "NVIDIA H200",
        "gpu_count": 1,
        "gpu_driver": "570.86.15",
        "vram_total_mb": 143771,
        "gpu_absent_reason": None,
    },
    "software": {
        **_CPU_FP["software"],
        "llama_system_info": "CUDA : ARCHS = 900 | USE_GRAPHS = 1 | PEER_MAX_BATCH_SIZE"
        " = 128 | CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 |",
    },
}
_MODELS: dict[str, dict[str, Any]] = {
    "tiny-llama-q8_0": {
        "sha256": "5f1c" * 16,
        "file_size": 9_961_472,
        "quant": "Q8_0",
        "name": "tiny-llama",
        "arch": "llama",
        "n_params": 8_912_896,
    },
    "tiny-moe-mxfp4_moe": {
        "sha256": "a07e" * 16,
        "file_size": 14_680_064,
        "quant": "MXFP4_MOE",
        "name": "tiny-moe",
        "arch": "llama",
        "n_params": 25_165_824,
    },
    "tiny-moe-q8_0": {
        "sha256": "77b2" * 16,
        "file_size": 26_738_688,
        "quant": "Q8_0",
        "name": "tiny-moe",
        "arch": "llama",
        "n_params": 25_165_824,
    },
}


def _sample(
    rng: random.Random, wl: Workload, pp_tps: float, tg_tps: float, spikes: float = 0.01
) -> Sample:
    t = 0
    prompt_ns = None
    if wl.n_prompt:
        prompt_ns = int(wl.n_prompt / pp_tps * 1e9 * rng.uniform(0.97, 1.03))
        t = prompt_ns
    gap = 1e9 / tg_tps if tg_tps else 0.0
    tokens: list[int] = []
    if wl.n_gen:
        t += int(gap * rng.uniform(1.0, 1.08)) if not wl.n_prompt else int(rng.uniform(4e4, 6e4))
        tokens.append(t)
        scale = rng.uniform(0.97, 1.03)
        for _ in range(wl.n_gen - 1):
            g = gap * scale * rng.lognormvariate(0.0, 0.05)
            if rng.random() < spikes:
                g *= rng.uniform(2.0, 3.5)
            t += int(g)
            tokens.append(t)
    end = (tokens[-1] if tokens else t) + 12_000
    llama: dict[str, float] = {}
    if wl.n_prompt and prompt_ns:
        llama.update(n_p_eval=wl.n_prompt, t_p_eval_ms=round(prompt_ns / 1e6 * 0.99, 3))
    if len(tokens) > 1:
        llama.update(
            n_eval=len(tokens) - 1, t_eval_ms=round((tokens[-1] - tokens[0]) / 1e6 * 0.98, 3)
        )
    return Sample(
        n_prompt=wl.n_prompt,
        n_gen=wl.n_gen,
        n_depth=wl.n_depth,
        prompt_ns=prompt_ns,
        token_ns=tokens,
        end_ns=end,
        llama=llama,
    )


def _measure(
    rng: random.Random,
    model: str,
    params: LoadParams,
    wl: Workload,
    *,
    pp_tps: float = 0.0,
    tg_tps: float = 0.0,
    reps: int = 5,
    gpu: bool = False,
    load_ms: list[float] | None = None,
    rss: float = 212.4,
    vram: float | None = None,
    sweep: dict[str, Any] | None = None,
) -> Measurement:
    fp = {**(_GPU_FP if gpu else _CPU_FP), "model": _MODELS[model]}
    samples = [] if wl.kind == "load" else [_sample(rng, wl, pp_tps, tg_tps) for _ in range(reps)]
    run: dict[str, list[float]] = {
        "load_ms": load_ms or [round(rng.uniform(78, 92), 2)],
        "rss_peak_mb": [rss],
        "model_size_mb": [round(_MODELS[model]["file_size"] / 2**20, 2)],
    }
    absent: dict[str, str] = {}
    if vram is None:
        absent["vram_mb"] = "NVML unavailable: libnvidia-ml.so.1 not found (no NVIDIA driver)"
    else:
        run["vram_mb"] = [vram]
    resolved: dict[str, Any] = {
        "n_threads": params.n_threads or 2,
        "n_threads_batch": params.n_threads or 2,
        "n_ctx": params.n_ctx,
        "flash_attn": "off" if params.flash_attn == "auto" else params.flash_attn,
        "quant": _MODELS[model]["quant"],
        "sampler": "greedy",
    }
    if sweep:
        resolved["sweep_axes"] = sweep
    return Measurement.from_samples(
        model=model,
        model_path=f"/models/{model}.gguf",
        params=params,
        workload=wl,
        samples=samples,
        run_values=run,
        absent=absent,
        resolved=resolved,
        fingerprint=fp,
        started_at=GENERATED_AT,
        repetitions=reps,
        warmup=0 if wl.kind == "load" else 1,
    )


_THRESHOLDS = {
    "tg_tps": 10.0,
    "pp_tps": 10.0,
    "ttft_ms": 15.0,
    "itl_p95_ms": 20.0,
    "load_ms": 25.0,
    "rss_peak_mb": 10.0,
}


def _compare(
    cur: Measurement, base: Measurement, p_values: dict[str, float]
) -> list[MetricComparison]:
    out = []
    for metric, thr in _THRESHOLDS.items():
        c, b = cur.median(metric), base.median(metric)
        if c is None or b is None:
            continue
        change = (c - b) / b * 100
        higher = metric.endswith("_tps")
        worse = -change if higher else change
        p = p_values.get(metric)
        if worse > thr:
            verdict = "regressed" if p is None or p < 0.05 else "inconclusive"
        elif worse < -thr:
            verdict = "improved" if p is None or p < 0.05 else "inconclusive"
        else:
            verdict = "pass"
        unit = "t/s" if higher else ("MB" if metric.endswith("_mb") else "ms")
        out.append(
            MetricComparison(
                metric=metric,
                unit=unit,
                better="higher" if higher else "lower",
                baseline_median=b,
                current_median=c,
                change_pct=change,
                threshold=f"{'-' if higher else '+'}{thr:g}%",
                verdict=verdict,
                p_value=p,
            )
        )
    return out


def build_fixture() -> tuple[list[PerfReport], list[PerfReport]]:
    """(current reports, baseline reports): deterministic synthetic measurements."""
    rng = random.Random(20250601)
    reports: list[PerfReport] = []
    baselines: list[PerfReport] = []

    # a tg test that regressed (-12% tg_tps), on a CPU machine: vram absent
    p_tg = LoadParams(n_threads=2)
    tg64 = Workload.parse("tg64")
    base = _measure(rng, "tiny-llama-q8_0", p_tg, tg64, tg_tps=196.0)
    cur = _measure(rng, "tiny-llama-q8_0", p_tg, tg64, tg_tps=172.5)
    node = "perf_tests/test_decode.py::test_tg[tiny-llama-q8_0]"
    baselines.append(PerfReport(node, [base]))
    reports.append(
        PerfReport(
            node,
            [cur],
            {"tg64": _compare(cur, base, {"tg_tps": 0.0079, "itl_p95_ms": 0.03})},
            verdict="regressed",
            baseline_key="baselines/xeon-8481c-2c.json",
        )
    )

    # a prompt-processing test on a GPU, with an SLA limit
    p_pp = LoadParams(n_gpu_layers=-1, flash_attn="on", n_batch=512, n_ubatch=256)
    pp512 = Workload.parse("pp512")
    base = _measure(
        rng, "tiny-llama-q8_0", p_pp, pp512, pp_tps=41_200, gpu=True, vram=310.5, rss=480.2
    )
    cur = _measure(
        rng, "tiny-llama-q8_0", p_pp, pp512, pp_tps=42_480, gpu=True, vram=310.5, rss=481.0
    )
    node = "perf_tests/test_prompt.py::test_pp[tiny-llama-q8_0-gpu]"
    baselines.append(PerfReport(node, [base]))
    sla = MetricComparison("vram_mb", "MB", "lower", None, 310.5, None, "< 400 MB", "pass")
    reports.append(
        PerfReport(
            node,
            [cur],
            {"pp512": _compare(cur, base, {}), "sla": [sla]},
            verdict="pass",
            baseline_key="baselines/xeon-8481c-16c-nvidia-h200.json",
        )
    )

    # a context-depth series: pp128 and tg32 at four depths, no baseline yet
    p_d = LoadParams(n_ctx=2048, n_threads=2, flash_attn="on")
    ms = []
    for depth in (0, 256, 512, 1024):
        slow = 1 + depth / 1400
        ms.append(
            _measure(
                rng,
                "tiny-moe-mxfp4_moe",
                p_d,
                Workload(n_prompt=128, n_depth=depth),
                pp_tps=2150 / slow,
                reps=3,
                rss=260.0,
            )
        )
        ms.append(
            _measure(
                rng,
                "tiny-moe-mxfp4_moe",
                p_d,
                Workload(n_gen=32, n_depth=depth),
                tg_tps=118 / (1 + depth / 2600),
                reps=3,
                rss=260.0,
            )
        )
    reports.append(
        PerfReport("perf_tests/test_depth.py::test_depth[tiny-moe-mxfp4_moe]", ms, verdict="new")
    )

    # a sparse sweep of n_threads x n_batch (5 of 6 points)
    tg32 = Workload.parse("tg32")
    outcome = {(1, 512): ("improved", 1.16), (2, 64): ("inconclusive", 0.86)}
    for threads, batch in ((1, 64), (1, 512), (2, 64), (2, 256), (2, 512)):
        params = LoadParams(n_threads=threads, n_batch=batch, n_ubatch=min(batch, 512))
        rate = 70.0 * (1.75 if threads == 2 else 1.0) * (1 + batch / 5000)
        verdict, factor = outcome.get((threads, batch), ("pass", 1.0))
        cur = _measure(
            rng,
            "tiny-llama-q8_0",
            params,
            tg32,
            tg_tps=rate * factor,
            reps=3,
            sweep={"n_threads": threads, "n_batch": batch},
        )
        base_m = _measure(rng, "tiny-llama-q8_0", params, tg32, tg_tps=rate, reps=3)
        p_value = 0.2 if verdict == "inconclusive" else 0.01
        comps = [
            c
            for c in _compare(cur, base_m, {"tg_tps": p_value, "ttft_ms": p_value})
            if c.metric in ("tg_tps", "ttft_ms")
        ]
        reports.append(
            PerfReport(
                f"perf_tests/test_sweep.py::test_threads_batch[t{threads}-b{batch}]",
                [cur],
                {"tg32": comps},
                verdict=worst_of(comps),
            )
        )

    # cpu-moe against a baseline from another llama.cpp version: mismatch
    p_moe = LoadParams(n_threads=2, cpu_moe=True)
    cur = _measure(rng, "tiny-moe-q8_0", p_moe, tg32, tg_tps=88.0, reps=3, rss=301.7)
    mm = MetricComparison(
        "tg_tps",
        "t/s",
        "higher",
        91.3,
        cur.median("tg_tps"),
        (cur.median("tg_tps") or 0) / 91.3 * 100 - 100,
        "-10%",
        "mismatch",
        reason="baseline recorded with llama_cpp 0.3.14, now 0.3.16",
    )
    reports.append(
        PerfReport(
            "perf_tests/test_moe.py::test_cpu_moe[tiny-moe-q8_0-cpumoe]",
            [cur],
            {"tg32": [mm]},
            verdict="mismatch",
            notes=[
                "fingerprint differs from the baseline: software.llama_cpp 0.3.14 -> 0.3.16; "
                "re-run with --perf-accept to record a new baseline"
            ],
        )
    )

    # cold load times (no tokens)
    load = _measure(
        rng,
        "tiny-llama-q8_0",
        LoadParams(n_threads=2),
        Workload(),
        reps=3,
        load_ms=[80.12, 84.31, 79.93],
    )
    lc = MetricComparison(
        "load_ms",
        "ms",
        "lower",
        78.4,
        load.median("load_ms"),
        ((load.median("load_ms") or 0) / 78.4 - 1) * 100,
        "+25%",
        "pass",
    )
    reports.append(
        PerfReport(
            "perf_tests/test_load.py::test_cold_load[tiny-llama-q8_0]",
            [load],
            {"load": [lc]},
            verdict="pass",
        )
    )

    # a test whose backend crashed before measuring anything
    reports.append(
        PerfReport(
            "perf_tests/test_decode.py::test_tg[broken-q4_k_m]",
            [],
            verdict="error",
            notes=[
                "llama.cpp crashed (SIGILL) loading /models/broken-q4_k_m.gguf: rebuild "
                "llama-cpp-python without AMX (-mno-amx-tile)"
            ],
        )
    )
    return reports, baselines


def worst_of(comps: list[MetricComparison]) -> str:
    from pytest_llmperf.model.results import worst

    return worst([c.verdict for c in comps])


def _write_fixture() -> None:
    reports, baselines = build_fixture()
    data = results_dict(reports, generated_at=GENERATED_AT)
    data["baseline_tests"] = [b.to_dict() for b in baselines]
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


if UPDATE:
    _write_fixture()


@pytest.fixture(scope="module")
def reports() -> list[PerfReport]:
    return load_results(FIXTURE)


@pytest.fixture(scope="module")
def baselines() -> list[PerfReport]:
    data = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return [PerfReport.from_dict(t) for t in data["baseline_tests"]]


@pytest.fixture(scope="module")
def outdir(
    tmp_path_factory: pytest.TempPathFactory, reports: list[PerfReport], baselines: list[PerfReport]
) -> Path:
    out = tmp_path_factory.mktemp("report")
    write_report(reports, out, baseline_reports=baselines, generated_at=GENERATED_AT)
    return out


# -- golden files ------------------------------------------------------------------------


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"{path} missing: run with LLMPERF_UPDATE_GOLDEN=1 to create it"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, (
        f"{name} differs from the golden file {path}; if the change is intended, "
        "re-run with LLMPERF_UPDATE_GOLDEN=1 and review the diff"
    )


def render_terminal(lines: list[tuple[str, dict[str, bool]]]) -> str:
    out = []
    for text, markup in lines:
        tags = ",".join(sorted(k for k, v in markup.items() if v)) or "-"
        out.append(f"{tags:<10}|{text}")
    return "\n".join(out) + "\n"


def test_summary_md_golden(reports: list[PerfReport]) -> None:
    check_golden("summary.md", summary_markdown(reports, generated_at=GENERATED_AT))


@pytest.mark.parametrize(("verbose", "width"), [(0, 80), (1, 80), (0, 132)])
def test_terminal_golden(reports: list[PerfReport], verbose: int, width: int) -> None:
    lines = terminal_lines(reports, verbose, width)
    check_golden(f"terminal_v{verbose}_w{width}.txt", render_terminal(lines))


@pytest.mark.parametrize("width", [80, 100, 132])
def test_terminal_fits_width(reports: list[PerfReport], width: int) -> None:
    for text, _ in terminal_lines(reports, 0, width):
        assert len(text) <= width, text


def test_terminal_one_row_per_test_and_workload(reports: list[PerfReport]) -> None:
    text = [t for t, _ in terminal_lines(reports, 0, 80)]
    # the depth test measured 8 workloads: one row each, labelled with the workload
    start = text.index("test_depth[tiny-moe-mxfp4_moe]")
    depth_rows = text[start + 1 : start + 9]
    assert [t.split()[0] for t in depth_rows] == [
        f"{w}{d}" for d in ("", "@d256", "@d512", "@d1024") for w in ("pp128", "tg32")
    ]
    assert all(t.startswith("  ") and t.endswith("new") for t in depth_rows)
    assert sum(1 for t in text if t.startswith("test_thread")) == 5


def test_terminal_colours(reports: list[PerfReport]) -> None:
    lines = terminal_lines(reports, 0, 100)

    def markup_of(fragment: str) -> dict[str, bool]:
        matches = [m for t, m in lines if fragment in t]
        assert matches, fragment
        return matches[0]

    assert markup_of("test_tg[tiny-llama") == {"red": True, "bold": True}
    assert markup_of("test_pp[") == {"green": True}
    assert markup_of("t1-b512]") == {"green": True, "bold": True}
    assert markup_of("t2-b64]") == {"yellow": True}
    assert markup_of("test_cpu_moe") == {"yellow": True}
    assert markup_of("test_depth") == {"yellow": True}
    tg = next(t for t, _ in lines if "test_tg[tiny-llama" in t)
    assert "REGRESSED" in tg and re.search(r"-1\d\.\d% tg_tps", tg)


def test_terminal_verbose_shows_every_metric(reports: list[PerfReport]) -> None:
    text = "\n".join(t for t, _ in terminal_lines(reports[:1], 1, 80))
    m = reports[0].measurements[0]
    for metric in m.values:
        assert re.search(rf"^\s+{metric}\s", text, re.M), metric
    assert "±" in text and "n=5" in text and "-10%" in text
    assert "vram_mb       not measured: NVML unavailable" in text


def test_terminal_empty() -> None:
    assert terminal_lines([], 0) == [("no performance measurements", {})]


# -- results.json ------------------------------------------------------------------------


def test_results_json_round_trip(outdir: Path, reports: list[PerfReport]) -> None:
    loaded = load_results(outdir / "results.json")
    assert [r.to_dict() for r in loaded] == [r.to_dict() for r in reports]
    data = json.loads((outdir / "results.json").read_text(encoding="utf-8"))
    assert data["schema_version"] == 1
    assert data["generated_at"] == GENERATED_AT
    assert len(data["tests"]) == len(reports)


def test_results_json_llama_bench_fields(outdir: Path) -> None:
    data = json.loads((outdir / "results.json").read_text(encoding="utf-8"))
    tg = data["tests"][0]["measurements"][0]["llama_bench"]
    for key in (
        "n_threads",
        "n_batch",
        "n_ubatch",
        "n_gpu_layers",
        "type_k",
        "type_v",
        "flash_attn",
        "n_prompt",
        "n_gen",
        "n_depth",
        "avg_ts",
        "stddev_ts",
        "samples_ns",
        "samples_ts",
    ):
        assert key in tg, key
    assert (tg["n_threads"], tg["n_prompt"], tg["n_gen"], tg["n_depth"]) == (2, 0, 64, 0)
    assert len(tg["samples_ns"]) == len(tg["samples_ts"]) == 5
    for ns, ts in zip(tg["samples_ns"], tg["samples_ts"], strict=True):
        assert ts == pytest.approx(64 / (ns / 1e9))
    assert tg["avg_ts"] == pytest.approx(sum(tg["samples_ts"]) / 5)
    pp = data["tests"][1]["measurements"][0]["llama_bench"]
    assert pp["flash_attn"] is True and pp["n_gpu_layers"] == -1 and pp["backends"] == "CUDA"
    depth = data["tests"][2]["measurements"][-1]["llama_bench"]
    assert depth["n_depth"] == 1024
    load = data["tests"][-2]["measurements"][0]["llama_bench"]
    assert "avg_ts" not in load  # nothing timed but the load


def test_llama_bench_pp_rate_matches_pp_tps(reports: list[PerfReport]) -> None:
    m = reports[1].measurements[0]
    fields = llama_bench_fields(m)
    assert fields["samples_ts"] == pytest.approx(m.values["pp_tps"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "results file not found"),
        ("{not json", "not valid JSON (line 1"),
        ("[1, 2]", "not a pytest-llmperf results file"),
        ('{"schema_version": 99, "tests": []}', "schema_version 99 is not supported"),
        ('{"schema_version": 1, "tests": {}}', "'tests' must be a list"),
        (
            '{"schema_version": 1, "tests": [{"nodeid": "t::x", "measurements": [{}]}]}',
            "test #0 (t::x) is malformed: missing field 'workload'",
        ),
        (
            '{"schema_version": 1, "tests": [{"nodeid": "t::y", "measurements": [{"workload": '
            '{"n_gen": 8}, "params": {"n_threads": 0}}]}]}',
            "test #0 (t::y): n_threads=0",
        ),
    ],
)
def test_load_results_errors(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(UsageError) as info:
        load_results(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


# -- summary.md, plots, report.html ------------------------------------------------------

EXPECTED_PLOTS = {
    "metric_tg_tps.png",
    "metric_pp_tps.png",
    "metric_ttft_ms.png",
    "metric_itl_p95_ms.png",
    "metric_load_ms.png",
    "metric_vram_mb.png",
    "metric_rss_peak_mb.png",
    "itl_1.png",
    "itl_2.png",
    "depth.png",
    "sweep_test_threads_batch-tg32.png",
}


def test_write_report_files(outdir: Path) -> None:
    names = {p.name for p in outdir.iterdir()}
    assert {"results.json", "summary.md", "report.html"} <= names
    assert names >= EXPECTED_PLOTS, sorted(names)
    assert not [n for n in names if n.endswith(".tmp") or n.startswith(".")]


def test_plots_are_real_pngs(outdir: Path) -> None:
    for name in EXPECTED_PLOTS:
        data = (outdir / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), name
        assert len(data) > 15_000, f"{name}: only {len(data)} bytes"


def test_summary_md_sections(outdir: Path) -> None:
    md = (outdir / "summary.md").read_text(encoding="utf-8")
    assert re.search(r"\| model +\| +size \| +params \| backend \| threads \| n_batch \|", md)
    assert re.search(r"\| +tg64 \| +\d+\.\d\d ± \d+\.\d\d \|", md)
    assert re.search(
        r"\|\s+PP \|\s+TG \|\s+N_KV \|\s+T_PP s \|\s+S_PP t/s \|\s+T_TG s \|"
        r"\s+S_TG t/s \|",
        md,
    )
    assert "![depth" in md  # plots linked next to the tables
    assert PLOTS_MISSING_NOTE not in md


def test_report_html_self_contained(outdir: Path) -> None:
    html = (outdir / "report.html").read_text(encoding="utf-8")
    assert html.count("<table") >= 10
    assert "S_PP t/s" in html and "llama-bench" in html
    uris = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(uris) == len(EXPECTED_PLOTS)
    for uri in uris:
        assert base64.b64decode(uri).startswith(b"\x89PNG")
    # nothing fetched from elsewhere
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", html)
    assert "<link" not in html and "@import" not in html


def test_without_matplotlib(
    tmp_path: Path, reports: list[PerfReport], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    written = write_report(reports, tmp_path, generated_at=GENERATED_AT)
    assert {p.name for p in written} == {"results.json", "summary.md", "report.html"}
    assert not list(tmp_path.glob("*.png"))
    assert PLOTS_MISSING_NOTE in (tmp_path / "summary.md").read_text(encoding="utf-8")
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert PLOTS_MISSING_NOTE in html and "<img" not in html


def test_write_report_empty(tmp_path: Path) -> None:
    written = write_report([], tmp_path)
    assert {p.name for p in written} == {"results.json", "summary.md", "report.html"}
    assert load_results(tmp_path / "results.json") == []


def test_plots_without_baseline_reports(tmp_path: Path, reports: list[PerfReport]) -> None:
    written = write_report(reports, tmp_path, generated_at=GENERATED_AT)
    assert {p.name for p in written} >= EXPECTED_PLOTS


def test_benchmark_json_structure(reports: list[PerfReport]) -> None:
    data = benchmark_json(reports, generated_at=GENERATED_AT)
    assert set(data) == {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    for key in ("node", "processor", "machine", "python_version", "system", "cpu"):
        assert key in data["machine_info"]
    tg = data["benchmarks"][0]
    assert set(tg) >= {"group", "name", "fullname", "params", "stats", "options", "extra_info"}
    stats = tg["stats"]
    assert set(stats) == {
        "min",
        "max",
        "mean",
        "stddev",
        "rounds",
        "median",
        "iqr",
        "q1",
        "q3",
        "iqr_outliers",
        "stddev_outliers",
        "outliers",
        "ld15iqr",
        "hd15iqr",
        "ops",
        "total",
        "data",
        "iterations",
    }
    m = reports[0].measurements[0]
    assert stats["data"] == pytest.approx([1 / v for v in m.values["tg_tps"]])
    # ops = tokens/s: the harmonic mean of the repetitions' tg_tps
    hm = len(m.values["tg_tps"]) / sum(1 / v for v in m.values["tg_tps"])
    assert stats["ops"] == pytest.approx(hm)
    assert tg["extra_info"]["tg_tps"] == pytest.approx(m.median("tg_tps"))
    assert tg["extra_info"]["unit"] == "s/token"
    # github-action-benchmark's "pytest" tool reads fullname, stats.ops/stddev/mean/rounds
    for b in data["benchmarks"]:
        assert isinstance(b["fullname"], str) and b["stats"]["ops"] > 0
        assert b["stats"]["rounds"] == len(b["stats"]["data"])


def test_benchmark_stats_match_pytest_benchmark() -> None:
    stats_mod = pytest.importorskip("pytest_benchmark.stats")
    from pytest_llmperf.outputs.interop import benchmark_stats

    for data in ([0.5], [3.0, 1.0], [1.0, 2.0, 9.0], [1, 2, 3, 4, 30], [5, 1, 4, 2, 3, 8, 7]):
        ref = stats_mod.Stats()
        for x in data:
            ref.update(float(x))
        ours = benchmark_stats(data)
        for key, value in ref.as_dict().items():
            assert ours[key] == pytest.approx(value), (data, key)


def test_bmf(tmp_path: Path, reports: list[PerfReport]) -> None:
    path = write_bmf(reports, tmp_path / "bmf.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data == bmf_dict(reports)
    tg = data["test_tg[tiny-llama-q8_0] tg64"]
    for slug in ("tg-tps", "ttft-ms", "itl-p95-ms", "load-ms", "rss-peak-mb"):
        entry = tg[slug]
        assert set(entry) == {"value", "lower_value", "upper_value"}
        assert entry["lower_value"] <= entry["value"] <= entry["upper_value"]
    assert "vram-mb" not in tg  # absent, never a 0
    m = reports[0].measurements[0]
    s = summarize(m.values["tg_tps"])
    assert tg["tg-tps"] == {"value": s.median, "lower_value": s.min, "upper_value": s.max}
    assert "vram-mb" in data["test_pp[tiny-llama-q8_0-gpu] pp512"]
