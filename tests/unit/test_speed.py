"""The machine's speed probe (machine/speed.py): what it returns and what it reads back.
How well it tracks the machine is measured by benchmarks/speed_probe.py, not asserted."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_llmperf.baseline.history import SessionRecord
from pytest_llmperf.machine import speed


def test_the_probe_scores_this_machine() -> None:
    found = speed.probe(n_threads=2, passes=3, bursts=2)
    assert found.threads == 2 and found.probe == speed.PROBE
    assert 0 < found.low <= found.score <= found.high
    assert speed.Speed.from_json(found.to_json()) == speed.Speed(
        *(round(v, 1) for v in (found.score, found.low, found.high)), 2
    )


@pytest.mark.parametrize(
    "doc",
    [
        None,
        [],
        "fast",
        {"score": 100.0, "threads": 2, "probe": "another-probe"},
        {"score": 100.0, "threads": 2},
        {"score": "100", "threads": 2, "probe": speed.PROBE},
        {"score": True, "threads": 2, "probe": speed.PROBE},
        {"score": 0, "threads": 2, "probe": speed.PROBE},
        {"score": 100.0, "threads": 0, "probe": speed.PROBE},
    ],
)
def test_a_probe_this_version_cannot_compare_is_none(doc: Any) -> None:
    assert speed.Speed.from_json(doc) is None


def test_a_probe_without_its_range_reads_as_its_score() -> None:
    got = speed.Speed.from_json({"score": 100, "threads": 2, "probe": speed.PROBE, "low": "x"})
    assert got == speed.Speed(100.0, 100.0, 100.0, 2)


def test_the_stored_score_is_the_median_of_this_kind_and_thread_count() -> None:
    n = speed.threads()
    docs = [speed.Speed(s, s - 1, s + 1, n).to_json() for s in (100.0, 80.0, 120.0)]
    other_threads = speed.Speed(10.0, 9.0, 11.0, n + 1).to_json()
    other_probe = dict(docs[0], probe="another-probe", score=5.0)
    assert speed.stored_score([*docs, other_threads, other_probe, "broken"]) == 100.0
    assert speed.stored_score([other_threads]) is None and speed.stored_score([]) is None


def test_a_session_keeps_its_probe_and_refuses_a_malformed_one() -> None:
    doc = {
        "accepted_at": "2026-12-06T10:00:00+00:00",
        "repetitions": 3,
        "warmup": 1,
        "values": {"tg8": {"tg_tps": [100.0, 101.0, 99.0]}},
        "machine_speed": {
            "score": 512.3,
            "low": 500.0,
            "high": 530.0,
            "threads": 2,
            "probe": speed.PROBE,
        },
    }
    session = SessionRecord.from_json(doc)
    assert session.usable and session.machine_speed == doc["machine_speed"]
    assert session.to_json()["machine_speed"] == doc["machine_speed"]
    # an older version's session has none, and writes none
    older = SessionRecord.from_json({k: v for k, v in doc.items() if k != "machine_speed"})
    assert older.usable and older.machine_speed is None
    assert "machine_speed" not in older.to_json()
    bad = SessionRecord.from_json(dict(doc, machine_speed=512.3))
    assert not bad.usable
    assert "'machine_speed' is a float, expected an object" in bad.problem
    assert bad.to_json() == dict(doc, machine_speed=512.3)  # written back untouched
