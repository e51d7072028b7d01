"""The machine's speed right now: a short, fixed probe run beside each stored-gate
measurement, so that a regression measured while the whole machine ran slower is not
blamed on the code.

A shared machine (a cloud VM, a CI runner) has spells in which everything on it runs
slower: a neighbour on the host's sibling hyperthreads, a lower clock, a busy memory
bus. No counter inside the machine shows them (the CPU time other processes take, and the
hypervisor's steal, stay near zero), yet llama.cpp's generation rate falls by half or more
for minutes. A baseline recorded outside such a spell and a run inside one differ by more
than any threshold.

**The probe** is the same work every time, independent of llama.cpp (a slower build must
not slow its own yardstick): each CPU this process may run on gets a thread that runs a
fixed element-wise numpy kernel (multiply, add, square root) over a 128 KiB float32 array
that stays in its core's cache, :data:`ITERATIONS` times; numpy releases the GIL inside
each operation, so the threads run at once, as llama.cpp's do. One pass is timed from a
barrier to the last thread's end (:func:`pytest_llmperf.machine.limits.barrier_passes`,
as the read-bandwidth probe). A burst is a warm-up pass and :data:`PASSES` timed ones,
its figure their median, as element operations per microsecond across the threads; a probe
is :data:`BURSTS` bursts, each after a :data:`GAP_S` pause (the first lets the threads
of a llama.cpp run that just ended stop polling: right after one, the probe scored about 8%
lower), its score their median, ``low``/``high``
their range (about 0.5 s in all). How much it scatters, and how it follows llama.cpp's
rate, is printed by ``benchmarks/speed_probe.py``.

The probe runs only where its figure is used (it costs half a second): when a test is
accepted into its baseline (``machine_speed`` in the baseline file, beside the session's
values), and when a test's measurement regressed against a baseline that has one (its
``resolved["machine_speed"]`` in results.json). The gate compares the two
(:func:`pytest_llmperf.verdict.judge.slower_machine`).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pytest_llmperf.machine import limits

#: the probe's identity: figures of different probes are never compared
PROBE = "elementwise-v1"
#: float32 elements per thread (128 KiB: in any core's L2)
ELEMENTS = 1 << 15
ITERATIONS = 600
PASSES = 5
#: bursts of passes a probe takes, :data:`GAP_S` apart: the machine's speed moves by tens of
#: percent from one tenth of a second to the next
BURSTS = 3
GAP_S = 0.1
#: element operations per element and iteration (multiply, add, square root)
_OPS = 3


@dataclass(frozen=True)
class Speed:
    """One probe: ``score`` (element operations per microsecond over all threads, the
    median pass) with its passes' range, on ``threads`` threads."""

    score: float
    low: float
    high: float
    threads: int
    probe: str = PROBE

    def to_json(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 1),
            "low": round(self.low, 1),
            "high": round(self.high, 1),
            "threads": self.threads,
            "probe": self.probe,
        }

    @staticmethod
    def from_json(doc: Any) -> Speed | None:
        """A stored probe; None when it is not one this version reads (another probe's
        figures, a hand-edited value): the gate then goes without it."""
        if not isinstance(doc, Mapping):
            return None
        score, threads = doc.get("score"), doc.get("threads")
        if (
            doc.get("probe") != PROBE
            or isinstance(score, bool)
            or not isinstance(score, (int, float))
            or score <= 0
            or isinstance(threads, bool)
            or not isinstance(threads, int)
            or threads < 1
        ):
            return None
        low, high = doc.get("low", score), doc.get("high", score)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
        return Speed(
            float(score),
            float(low) if numbers else float(score),
            float(high) if numbers else float(score),
            threads,
        )


def threads() -> int:
    """The probe's thread count: one per CPU this process may run on."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):  # not Linux
        return max(os.cpu_count() or 1, 1)


def _kernel(pair: tuple[Any, Any]) -> None:
    import numpy as np

    a, out = pair
    for _ in range(ITERATIONS):
        np.multiply(a, a, out=out)
        np.add(out, a, out=out)
        np.sqrt(out, out=out)


def probe(n_threads: int | None = None, passes: int = PASSES, bursts: int = BURSTS) -> Speed:
    """Run the probe now, in this process (see the module docstring)."""
    import numpy as np

    n = n_threads or threads()
    rng = np.random.default_rng(0)
    arrays = [
        (rng.random(ELEMENTS, dtype=np.float32), np.empty(ELEMENTS, np.float32)) for _ in range(n)
    ]
    work = n * ELEMENTS * ITERATIONS * _OPS / 1e6
    medians = []
    for _ in range(max(bursts, 1)):
        time.sleep(GAP_S)  # the first: llama.cpp's threads that just ran stop polling
        # a warm-up pass (threads started, arrays in cache), then the timed ones
        seconds = list(limits.barrier_passes(arrays, _kernel, max(passes, 1) + 1))[1:]
        medians.append(statistics.median(work / s for s in seconds))
    return Speed(statistics.median(medians), min(medians), max(medians), n)


def stored_score(docs: Iterable[Any]) -> float | None:
    """What the gate compares a probe taken now with: the median score of the stored
    probes (a baseline's sessions) of this version's kind and this machine's thread
    count; None without any (a baseline of an older version)."""
    here = (PROBE, threads())
    found = [Speed.from_json(doc) for doc in docs]
    scores = [s.score for s in found if s is not None and (s.probe, s.threads) == here]
    return statistics.median(scores) if scores else None


__all__ = [
    "BURSTS",
    "ELEMENTS",
    "GAP_S",
    "ITERATIONS",
    "PASSES",
    "PROBE",
    "Speed",
    "probe",
    "stored_score",
    "threads",
]
