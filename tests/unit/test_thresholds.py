"""Thresholds, limits, ratio SLAs: parsing, error messages, defaults and merge precedence."""

from __future__ import annotations

import pytest

from pytest_llmperf.errors import UsageError
from pytest_llmperf.model.metrics import METRICS
from pytest_llmperf.verdict.thresholds import (
    DEFAULT_THRESHOLDS,
    Limit,
    Operand,
    RatioSLA,
    Threshold,
    default_rules,
    merge_threshold_sources,
    parse_limit,
    parse_sla,
    parse_threshold,
)

# -- relative thresholds ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "text", "rel", "abs_", "canonical"),
    [
        ("tg_tps", "-10%", 10.0, None, "-10%"),
        ("tg_tps", "10%", 10.0, None, "-10%"),
        ("tg_tps", " -12.5 % ", 12.5, None, "-12.5%"),
        ("pp_tps", "-5% or -20 t/s", 5.0, 20.0, "-5% or -20 t/s"),
        ("itl_p95_ms", "+15% or +0.5 ms", 15.0, 0.5, "+15% or +0.5 ms"),
        ("itl_p95_ms", "+15% or +0.5", 15.0, 0.5, "+15% or +0.5 ms"),
        ("itl_p95_ms", "15% OR 0.5ms", 15.0, 0.5, "+15% or +0.5 ms"),
        ("itl_p99_ms", "+25%", 25.0, None, "+25%"),
        ("ttft_ms", "5%", 5.0, None, "+5%"),
        ("load_ms", "+20 ms", None, 20.0, "+20 ms"),
        ("load_ms", "±20ms", None, 20.0, "+20 ms"),
        ("vram_mb", "+5% or +16 MB", 5.0, 16.0, "+5% or +16 MB"),
        ("vram_mb", "+16 MiB", None, 16.0, "+16 MB"),
        ("e2e_ms", "0%", 0.0, None, "+0%"),
    ],
)
def test_parse_threshold(
    metric: str, text: str, rel: float | None, abs_: float | None, canonical: str
) -> None:
    t = parse_threshold(metric, text)
    assert (t.metric, t.rel_pct, t.abs) == (metric, rel, abs_)
    assert t.enabled
    assert t.text() == canonical
    # the canonical text parses back to the same threshold
    assert parse_threshold(metric, canonical) == t


@pytest.mark.parametrize("text", ["off", "OFF", "none", "null", "false", "disabled", None, False])
def test_threshold_off(text: object) -> None:
    t = parse_threshold("tg_tps", text)
    assert not t.enabled
    assert t.text() == "off"
    assert not t.exceeded(100.0, 1.0)


def test_threshold_direction_and_boundaries() -> None:
    tg = parse_threshold("tg_tps", "-10%")
    assert not tg.exceeded(100.0, 90.0)  # exactly 10 % is allowed ("more than 10 %")
    assert tg.exceeded(100.0, 89.99)
    assert not tg.exceeded(100.0, 150.0)
    assert tg.improved(100.0, 111.0)
    assert not tg.improved(100.0, 110.0)
    itl = parse_threshold("itl_p95_ms", "+15% or +0.5 ms")
    # small values: the absolute allowance is the larger one
    assert itl.allowance(1.0) == pytest.approx(0.5)
    assert not itl.exceeded(1.0, 1.45)  # +45 % but only +0.45 ms
    assert itl.exceeded(1.0, 1.51)
    # large values: the relative allowance is the larger one
    assert itl.allowance(100.0) == pytest.approx(15.0)
    assert not itl.exceeded(100.0, 114.0)
    assert itl.exceeded(100.0, 116.0)
    assert not itl.exceeded(100.0, 50.0)
    assert itl.improved(100.0, 80.0)


@pytest.mark.parametrize(
    ("metric", "text", "expected"),
    [
        (
            "tg_tps",
            "-10 percent",
            "'-10 percent' not understood; write '-10%' or '+15% or +0.5 ms'",
        ),
        ("tg_tps", "ten percent", "not understood"),
        (
            "tg_tps",
            "+10%",
            "points the wrong way: tg_tps is better higher, so a regression is "
            "a drop; write '-10%'",
        ),
        (
            "itl_p95_ms",
            "-15%",
            "points the wrong way: itl_p95_ms is better lower, so a "
            "regression is a rise; write '+15%'",
        ),
        ("tg_tps", "-10% or -5% ", "two percentages"),
        ("load_ms", "+1 ms or +2 ms", "two amounts"),
        ("load_ms", "+1 MB", "unit 'MB' does not fit load_ms (measured in ms)"),
        ("tg_tps", 10, "bare number"),
        ("tg_tps", 0.1, "bare number"),
        ("tg_tps", ["-10%"], "not understood"),
        ("tg_tps", "-10%%", "not understood"),
        ("tokens_per_s", "-10%", "unknown metric 'tokens_per_s'; known metrics: e2e_ms"),
    ],
)
def test_parse_threshold_errors(metric: str, text: object, expected: str) -> None:
    with pytest.raises(UsageError) as exc:
        parse_threshold(metric, text, "llmperf.yaml [thresholds] " + metric)
    msg = str(exc.value)
    assert expected in msg
    assert msg.startswith(f"llmperf.yaml [thresholds] {metric}: ")


def test_threshold_rejects_negative_and_unknown() -> None:
    with pytest.raises(UsageError, match="must be a finite number >= 0"):
        Threshold("tg_tps", rel_pct=-5.0)
    with pytest.raises(UsageError, match="unknown metric 'nope'; known metrics: "):
        Threshold("nope", rel_pct=5.0)


def test_defaults() -> None:
    cfg = default_rules()
    assert cfg.sources == ("defaults",)
    assert {m: t.text() for m, t in cfg.thresholds.items()} == {
        "tg_tps": "-10%",
        "pp_tps": "-10%",
        "ttft_ms": "+15% or +1 ms",
        "tpot_ms": "+10%",
        "itl_p50_ms": "+15% or +0.5 ms",
        "itl_p95_ms": "+15% or +0.5 ms",
        "itl_p99_ms": "+25% or +1 ms",
        "e2e_ms": "+15%",
        "load_ms": "+25% or +20 ms",
        "vram_mb": "+5% or +16 MB",
        "rss_peak_mb": "+10% or +16 MB",
        "stream_ttft_ms": "+15% or +1 ms",
        "stream_tps": "-10%",
        "stream_itl_p50_ms": "+15% or +0.5 ms",
        "stream_itl_p95_ms": "+15% or +0.5 ms",
        "stream_itl_p99_ms": "+25% or +1 ms",
        "stream_e2e_ms": "+15%",
        "stream_overhead": "+10%",
    }
    assert set(DEFAULT_THRESHOLDS) <= set(METRICS)
    # informational metrics and the mean/max gaps are not gated by default
    for metric in ("llama_tg_tps", "llama_pp_tps", "model_size_mb", "itl_mean_ms", "itl_max_ms"):
        assert not cfg.is_gated(metric)
        assert cfg.threshold(metric) is None
    assert cfg.limits == ()
    assert cfg.slas == ()


# -- limits and SLAs --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "operand", "op", "value"),
    [
        ("load_ms < 11000", Operand("load_ms"), "<", 11000.0),
        ("load_ms<11000ms", Operand("load_ms"), "<", 11000.0),
        ("tg_tps >= 5", Operand("tg_tps"), ">=", 5.0),
        ("tg_tps[tg64] >= 5.0", Operand("tg_tps", "tg64"), ">=", 5.0),
        ("tg_tps[ tg64 ] ≥ 5", Operand("tg_tps", "tg64"), ">=", 5.0),
        ("ttft_ms[pg512,128] <= 250", Operand("ttft_ms", "pp512+tg128"), "<=", 250.0),
        ("vram_mb > 0", Operand("vram_mb"), ">", 0.0),
        ("itl_p95_ms[tg128@d4096] =< 40", Operand("itl_p95_ms", "tg128@d4096"), "<=", 40.0),
    ],
)
def test_parse_limit(text: str, operand: Operand, op: str, value: float) -> None:
    lim = parse_limit(text)
    assert (lim.operand, lim.op, lim.value) == (operand, op, value)
    assert parse_limit(lim.text()) == lim


def test_limit_holds() -> None:
    assert parse_limit("load_ms < 11000").holds(10999.0)
    assert not parse_limit("load_ms < 11000").holds(11000.0)
    assert parse_limit("load_ms <= 11000").holds(11000.0)
    assert parse_limit("tg_tps >= 5").holds(5.0)
    assert not parse_limit("tg_tps > 5").holds(5.0)
    assert parse_limit("load_ms < 11000").bound_text() == "< 11000"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("load_ms == 11000", "not understood; write e.g. 'load_ms < 11000'"),
        ("load_ms < eleven", "not understood"),
        ("load_ms", "not understood"),
        ("load_time < 11000", "unknown metric 'load_time'; known metrics: "),
        ("tg_tps[tg] >= 5", "workload 'tg' not understood"),
        ("tg_tps[] >= 5", "empty workload"),
        ("load_ms < 11 MB", "unit 'MB' does not fit load_ms"),
        (11000, "not understood"),
    ],
)
def test_parse_limit_errors(text: object, expected: str) -> None:
    with pytest.raises(UsageError, match=r"^pyproject\.toml \[tool\.llmperf\.limits\]: ") as exc:
        parse_limit(text, "pyproject.toml [tool.llmperf.limits]")
    assert expected in str(exc.value)


def test_parse_sla() -> None:
    sla = parse_sla("itl_p95_ms[tg512] / itl_p95_ms[tg64] <= 1.30")
    assert sla.numerator == Operand("itl_p95_ms", "tg512")
    assert sla.denominator == Operand("itl_p95_ms", "tg64")
    assert (sla.op, sla.value) == ("<=", 1.3)
    assert sla.bound_text() == "<= 1.3"
    assert sla.holds(1.3) and not sla.holds(1.31)
    assert parse_sla(sla.text()) == sla
    assert parse_sla("tg_tps[tg512]/tg_tps[tg64] >= 0.8x").op == ">="
    mixed = parse_sla("e2e_ms / ttft_ms < 50")
    assert mixed.numerator == Operand("e2e_ms") and mixed.denominator == Operand("ttft_ms")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("itl_p95_ms[tg512] <= 1.30", "not understood; write e.g. 'itl_p95_ms[tg512] / "),
        ("itl_p95_ms[tg64] / itl_p95_ms[tg64] <= 1.3", "divides a median by itself"),
        ("itl_p95_ms[tg512] / itl_p95_ms[tg64] <= 0", "must be a number > 0"),
        ("p95[tg512] / itl_p95_ms[tg64] <= 1.3", "unknown metric 'p95'"),
    ],
)
def test_parse_sla_errors(text: str, expected: str) -> None:
    with pytest.raises(UsageError, match=r"^marker on t\.py::x \[sla\]: ") as exc:
        parse_sla(text, "marker on t.py::x [sla]")
    assert expected in str(exc.value)


# -- merging ----------------------------------------------------------------------------

PYPROJECT = "pyproject.toml [tool.llmperf]"
INI = "pytest.ini [pytest] llmperf_*"
YAML = "llmperf.yaml"
MARKER = "marker on tests/test_x.py::test_y"


def test_merge_precedence() -> None:
    cfg = merge_threshold_sources(
        [
            (
                PYPROJECT,
                {
                    "thresholds": {
                        "tg_tps": "-20%",
                        "pp_tps": "-20%",
                        "ttft_ms": "+30%",
                        "e2e_ms": "+40%",
                    }
                },
            ),
            (INI, {"thresholds": {"pp_tps": "-15%", "ttft_ms": "+25%", "e2e_ms": "+35%"}}),
            (YAML, {"thresholds": {"ttft_ms": "+20%", "e2e_ms": "+30%"}}),
            (MARKER, {"thresholds": {"e2e_ms": "+25%"}}),
        ]
    )
    assert cfg.thresholds["tg_tps"].text() == "-20%"
    assert cfg.thresholds["pp_tps"].text() == "-15%"
    assert cfg.thresholds["ttft_ms"].text() == "+20%"
    assert cfg.thresholds["e2e_ms"].text() == "+25%"
    assert cfg.thresholds["tpot_ms"].text() == "+10%"  # untouched default
    assert cfg.sources == ("defaults", PYPROJECT, INI, YAML, MARKER)
    assert cfg.thresholds["e2e_ms"].source.startswith(MARKER)


def test_merge_with_base_and_top_level_metrics() -> None:
    project = merge_threshold_sources([(YAML, {"tg_tps": "-5%", "limits": ["load_ms < 9000"]})])
    assert project.thresholds["tg_tps"].text() == "-5%"
    test = merge_threshold_sources([(MARKER, {"itl_p95_ms": "+50%"})], base=project)
    assert test.thresholds["tg_tps"].text() == "-5%"
    assert test.thresholds["itl_p95_ms"].text() == "+50%"
    assert [lim.text() for lim in test.limits] == ["load_ms < 9000"]
    # the base is not modified
    assert project.thresholds["itl_p95_ms"].text() == "+15% or +0.5 ms"
    # empty sources change nothing
    assert merge_threshold_sources([(MARKER, {}), (YAML, None)], base=project) == project


def test_merge_off_and_gating_informational() -> None:
    cfg = merge_threshold_sources(
        [
            (YAML, {"thresholds": {"vram_mb": "off", "llama_tg_tps": "-10%"}}),
        ]
    )
    assert not cfg.is_gated("vram_mb")
    assert cfg.is_gated("llama_tg_tps")
    again = merge_threshold_sources([(MARKER, {"thresholds": {"vram_mb": "+1%"}})], base=cfg)
    assert again.is_gated("vram_mb")


def test_merge_limits_and_slas_override_by_key() -> None:
    cfg = merge_threshold_sources(
        [
            (
                PYPROJECT,
                {
                    "limits": ["load_ms < 11000", "tg_tps[tg64] >= 5", "tg_tps >= 1"],
                    "sla": ["itl_p95_ms[tg512] / itl_p95_ms[tg64] <= 1.30"],
                },
            ),
            (INI, {"limits": "load_ms < 9000\ntg_tps[tg64] <= 500\n"}),
            (
                MARKER,
                {
                    "limits": {"tg_tps[tg64]": ">= 7", "tg_tps": "off"},
                    "sla": {"itl_p95_ms[tg512] / itl_p95_ms[tg64]": "<= 1.1"},
                },
            ),
        ]
    )
    assert sorted(lim.text() for lim in cfg.limits) == [
        "load_ms < 9000",
        "tg_tps[tg64] <= 500",
        "tg_tps[tg64] >= 7",
    ]
    assert [s.text() for s in cfg.slas] == ["itl_p95_ms[tg512] / itl_p95_ms[tg64] <= 1.1"]
    off = merge_threshold_sources(
        [(YAML, {"sla": {"itl_p95_ms[tg512] / itl_p95_ms[tg64]": "off"}})], base=cfg
    )
    assert off.slas == ()
    assert all(isinstance(x, Limit) for x in cfg.limits)
    assert all(isinstance(x, RatioSLA) for x in cfg.slas)
    assert "limit: load_ms < 9000" in cfg.describe()


def test_merge_error_names_source_key_and_fix() -> None:
    with pytest.raises(UsageError) as exc:
        merge_threshold_sources(
            [("pyproject.toml [tool.llmperf]", {"thresholds": {"tg_tps": "-10 percent"}})]
        )
    assert str(exc.value) == (
        "pyproject.toml [tool.llmperf.thresholds] tg_tps: '-10 percent' not understood; "
        "write '-10%' or '+15% or +0.5 ms' (or 'off')"
    )
    with pytest.raises(UsageError) as exc:
        merge_threshold_sources([(MARKER, {"thresholds": {"tokens_s": "-10%"}})])
    msg = str(exc.value)
    assert msg.startswith(f"{MARKER} [thresholds]: unknown metric 'tokens_s'; known metrics: ")
    assert "tg_tps" in msg and "itl_p95_ms" in msg
    with pytest.raises(UsageError, match=f"^{YAML}: unknown key 'treshold'; accepted: thresholds"):
        merge_threshold_sources([(YAML, {"treshold": {"tg_tps": "-10%"}})])
    with pytest.raises(UsageError, match=r"^llmperf.yaml \[limits\]: 'load_ms = 5'"):
        merge_threshold_sources([(YAML, {"limits": ["load_ms = 5"]})])
    with pytest.raises(UsageError, match=r"^llmperf.yaml \[limits\]: expected a list"):
        merge_threshold_sources([(YAML, {"limits": 5})])
    with pytest.raises(UsageError, match=r"must be a mapping of metric"):
        merge_threshold_sources([(YAML, {"thresholds": ["tg_tps: -10%"]})])
    with pytest.raises(UsageError, match=r"^llmperf.yaml: thresholds must be a mapping"):
        merge_threshold_sources([(YAML, ["tg_tps"])])  # type: ignore[list-item]
    with pytest.raises(UsageError, match=r"\[limits\]: load_ms: 11000 not understood"):
        merge_threshold_sources([(YAML, {"limits": {"load_ms": 11000}})])
