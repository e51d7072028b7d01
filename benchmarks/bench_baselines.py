"""Baseline files: bytes per entry, the diff of a re-accept, load and flush of 1,000 entries.

    .venv/bin/python benchmarks/bench_baselines.py [--entries 1000]

An entry like the perf suite's (10 repetitions, two workloads, every metric the engine
records) is written in today's layout (one file per test, 4 significant digits, derived
metrics left out) and in schema 1 (one file per machine, 15 digits, summaries and
fingerprints in every measurement, as pytest-llmperf 0.1 wrote it). Then: the lines a
re-accept of one unchanged test changes (git diff --numstat), and the time to load and to
flush a store of --entries generated entries (median of 3).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pytest_llmperf.baseline import BaselineStore, Pending, SessionRecord
from pytest_llmperf.machine import fingerprint
from pytest_llmperf.model.metrics import METRICS, summarize
from pytest_llmperf.model.params import LoadParams

WORKLOADS = {"pp128+tg64": 1.0, "tg128": 1.1}
#: what the engine records for a generation workload on a CPU (no vram_mb)
METRIC_NAMES = [
    "ttft_ms", "pp_tps", "tg_tps", "tpot_ms", "itl_p50_ms", "itl_p95_ms", "itl_p99_ms",
    "itl_mean_ms", "itl_max_ms", "e2e_ms", "load_ms", "rss_peak_mb", "model_size_mb",
    "llama_pp_tps", "llama_tg_tps",
]  # fmt: skip


def values(rng: random.Random, reps: int = 10) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {}
    for wl, scale in WORKLOADS.items():
        base = {m: rng.uniform(1, 900) * scale for m in METRIC_NAMES}
        out[wl] = {
            m: [base[m] * rng.uniform(0.95, 1.05) for _ in range(reps)] for m in METRIC_NAMES
        }
        for m in ("load_ms", "rss_peak_mb", "model_size_mb"):
            out[wl][m] = out[wl][m][:1]
    return out


def fp() -> dict[str, Any]:
    return dict(
        fingerprint.compose(
            fingerprint.machine(),
            fingerprint.software(),
            {
                "id": "m",
                "quant": "Q8_0",
                "sha256": "ab" * 32,
                "file_size": 69_000_000,
                "name": "tiny",
                "arch": "llama",
            },
        ),
        params=LoadParams(n_threads=2, n_ctx=1024).non_default(),
        workloads=sorted(WORKLOADS),
    )


def session(rng: random.Random, when: str) -> SessionRecord:
    return SessionRecord(
        accepted_at=when, git_commit="f" * 40, repetitions=10, warmup=1, values=values(rng)
    )


def legacy_entry(rng: random.Random) -> dict[str, Any]:
    """An entry as 0.1 wrote it."""
    doc = fp()
    measurements = {}
    for wl, metrics in values(rng).items():
        measurements[wl] = {
            "model": "m",
            "model_path": "/models/m.gguf",
            "params": LoadParams(n_threads=2, n_ctx=1024).to_dict(),
            "workload": {"name": wl},
            "samples": [],
            "metrics": {
                m: {
                    "unit": METRICS[m].unit,
                    "better": METRICS[m].better,
                    "values": v,
                    "summary": summarize(v).to_dict(),
                }
                for m, v in metrics.items()
            },
            "absent": {"vram_mb": "no NVML"},
            "resolved": {"n_threads": 2, "flash_attn": "on"},
            "fingerprint": doc,
            "started_at": "2026-12-01T00:00:00+00:00",
            "repetitions": 10,
            "warmup": 1,
        }
    return {
        "accepted_at": "2026-12-01T00:00:00+00:00",
        "git_commit": "f" * 40,
        "model": "m",
        "fingerprint": doc,
        "measurements": measurements,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=1000)
    args = ap.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # -- bytes per entry
        old = json.dumps(
            {"schema_version": 1, "entries": {"t.py::a": {"k": legacy_entry(rng)}}},
            sort_keys=True,
            indent=2,
        )
        s = BaselineStore(root / "new", "m", history=5)
        s.queue("t.py::a", "k", Pending("m", fp(), session(rng, "2026-12-01T00:00:00+00:00")))
        s.flush()
        one = next((root / "new" / "m").rglob("*.json")).stat().st_size
        for i in range(4):
            s.queue(
                "t.py::a", "k", Pending("m", fp(), session(rng, f"2026-12-0{i + 2}T00:00:00+00:00"))
            )
            s.flush()
        five = next((root / "new" / "m").rglob("*.json")).stat().st_size
        print(
            f"bytes per entry (10 repetitions, 2 workloads): schema 1 {len(old)}, now {one} "
            f"(x{len(old) / one:.1f} smaller); with a history of 5 sessions {five}"
        )

        # -- the diff of a re-accept of one unchanged test (its history grows by one session)
        repo = root / "repo"
        s = BaselineStore(repo / "baselines", "m", history=5)
        for i in range(5):
            s.queue(
                "t.py::a", "k", Pending("m", fp(), session(rng, f"2026-11-0{i + 1}T00:00:00+00:00"))
            )
            s.flush()
        git = ["git", "-c", "user.name=b", "-c", "user.email=b@x"]
        subprocess.run([*git, "init", "-q", str(repo)], check=True)
        subprocess.run([*git, "-C", str(repo), "add", "-A"], check=True)
        subprocess.run([*git, "-C", str(repo), "commit", "-qm", "x"], check=True)
        s.queue("t.py::a", "k", Pending("m", fp(), session(rng, "2026-12-02T00:00:00+00:00")))
        s.flush()
        stat = subprocess.run(
            [*git, "-C", str(repo), "diff", "--numstat"], capture_output=True, text=True, check=True
        ).stdout.split()
        metrics_per_session = (
            sum(len(v) for v in values(rng).values()) - 4
        )  # tpot, itl_mean x 2 not stored
        print(
            f"re-accepting one unchanged test (a full history of 5): +{stat[0]} -{stat[1]} lines "
            f"(one new session: {metrics_per_session} metric lines; the oldest dropped)"
        )

        # -- load and flush of many entries
        store_dir = root / "many"
        s = BaselineStore(store_dir, "m")
        sess = session(rng, "2026-12-01T00:00:00+00:00")
        for i in range(args.entries):
            s.queue(f"t{i % 50}.py::test_{i}", "k", Pending("m", fp(), sess))
        t0 = time.perf_counter()
        s.flush()
        first = time.perf_counter() - t0
        loads, flushes = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            s2 = BaselineStore(store_dir, "m").load()
            loads.append(time.perf_counter() - t0)
            s2.queue(
                "t0.py::test_0", "k", Pending("m", fp(), session(rng, "2026-12-03T00:00:00+00:00"))
            )
            t0 = time.perf_counter()
            s2.flush()
            flushes.append(time.perf_counter() - t0)
        size = sum(p.stat().st_size for p in store_dir.rglob("*.json"))
        print(
            f"{args.entries} entries ({size / 1e6:.1f} MB): first write {first:.2f} s; load "
            f"{statistics.median(loads):.2f} s; accept one test and flush "
            f"{statistics.median(flushes):.2f} s (medians of 3)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
