"""The metric registry holds every fact about a metric, and its consumers read it.

A metric is one :class:`~pytest_llmperf.model.metrics.MetricSpec` in ``METRICS``: unit,
direction, narrow-table name, plot title, whether it is measured per repetition or per
load, its default threshold, its streamed counterpart, the metric it is the inverse of.
These tests fail when a consumer keeps its own table of metric names instead (the way a
newcomer's new metric used to be shown, plotted or gated only in some places).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pytest_llmperf
from pytest_llmperf.baseline.history import DERIVED
from pytest_llmperf.model.metrics import METRICS, Sample, ordered_metrics
from pytest_llmperf.verdict.thresholds import DEFAULT_THRESHOLDS, parse_threshold

PACKAGE = Path(pytest_llmperf.__file__).parent
REGISTRY = PACKAGE / "model" / "metrics.py"


def test_every_entry_is_complete() -> None:
    for name, spec in METRICS.items():
        assert spec.name == name
        assert spec.unit and spec.title and spec.description, name
        assert spec.better in ("higher", "lower"), name
        assert spec.per in ("repetition", "load"), name
        if spec.threshold is not None:
            parse_threshold(name, spec.threshold, "the registry")  # parses, right direction
        for other in (spec.stream, spec.inverse_of):
            assert not other or other in METRICS, f"{name} names an unknown metric {other!r}"
        if spec.inverse_of:
            base = METRICS[spec.inverse_of]
            assert {spec.unit, base.unit} == {"ms", "t/s"}, name
            assert spec.better != base.better, name
        if spec.stream:
            assert METRICS[spec.stream].unit == spec.unit, name


def test_the_default_thresholds_are_the_registrys() -> None:
    assert {
        n: s.threshold for n, s in METRICS.items() if s.threshold is not None
    } == DEFAULT_THRESHOLDS


def test_baselines_rebuild_exactly_the_inverse_metrics() -> None:
    assert {n: src for n, (src, _fn) in DERIVED.items()} == {
        n: s.inverse_of for n, s in METRICS.items() if s.inverse_of
    }


@pytest.mark.parametrize("stream", [False, True])
def test_samples_define_only_registry_metrics(stream: bool) -> None:
    sample = Sample(
        n_prompt=16,
        n_gen=8,
        n_depth=0,
        prompt_ns=2_000_000,
        token_ns=[3_000_000 + i * 1_000_000 for i in range(8)],
        end_ns=11_000_000,
        llama={"n_p_eval": 16, "t_p_eval_ms": 2.0, "n_eval": 8, "t_eval_ms": 8.0},
        stream=stream,
        chunk_ns=[3_000_000 + i * 1_000_000 for i in range(8)] if stream else [],
        chunk_chars=[1] * 8 if stream else [],
        engine={"tg_tps": 900.0, "ttft_ms": 3.0, "itl_p95_ms": 1.1} if stream else {},
    )
    names = set(sample.metrics())
    assert names and names <= set(METRICS)
    assert ordered_metrics(names) == [m for m in ordered_metrics(METRICS) if m in names]


def _metric_tables(tree: ast.AST) -> list[tuple[int, list[str]]]:
    """Literal dicts, sets and tuples naming three or more registry metrics."""
    out: list[tuple[int, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            items = node.keys
        elif isinstance(node, (ast.Set, ast.Tuple, ast.List)):
            items = list(node.elts)
        else:
            continue
        named = [
            k.value
            for k in items
            if isinstance(k, ast.Constant) and isinstance(k.value, str) and k.value in METRICS
        ]
        if len(named) >= 3:
            out.append((getattr(node, "lineno", 0), named))
    return out


# Places that list metrics on purpose: the headline order of every table (one list, in
# the registry module itself, is the registry's own).
ALLOWED: dict[str, int] = {"backends/llamabench.py": 1, "backends/stream.py": 1}


def test_no_consumer_keeps_its_own_table_of_metrics() -> None:
    """A table of metric names outside the registry module is a second place to update
    when a metric is added: read the registry (a MetricSpec field) instead."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == REGISTRY:
            continue
        tables = _metric_tables(ast.parse(path.read_text(encoding="utf-8")))
        rel = str(path.relative_to(PACKAGE))
        if len(tables) > ALLOWED.get(rel, 0):
            offenders.append(f"{rel}: {tables}")
    assert not offenders, "metric tables outside model/metrics.py:\n" + "\n".join(offenders)
