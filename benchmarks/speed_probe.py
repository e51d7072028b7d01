"""The machine's speed probe (pytest_llmperf/machine/speed.py): how much it scatters, and
how it follows the machine's speed.

    .venv/bin/python benchmarks/speed_probe.py [--probes 20] [--minutes 0]

Prints, in one process, one thing at a time (run it on a quiet machine):

- ``quiet``: ``--probes`` probes back to back: median, min, max and max/min of the scores;
- ``after decode``: a probe right after llama.cpp generated 64 tokens in this process (the
  stored gate probes there), and one a second later, ``--probes`` times each;
- ``busy 1`` / ``busy 2``: with one, then two processes spinning beside it: the median
  score against the quiet one's (how a slower machine shows);
- with ``--minutes M``: every 15 s for M minutes a tg64 rate (tiny MoE q8_0, 2 threads) and a
  probe, side by side, then how the two moved together (Spearman's rank correlation).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from pytest_llmperf.machine import speed, tiny


def _line(name: str, scores: list[float], quiet: float | None = None) -> None:
    med = statistics.median(scores)
    rel = f"  median/quiet {med / quiet:.3f}" if quiet else ""
    print(
        f"{name:<14} n={len(scores):<3} median {med:8.1f}  min {min(scores):8.1f}  "
        f"max {max(scores):8.1f}  max/min {max(scores) / min(scores):.3f}{rel}",
        flush=True,
    )


def _decoder() -> Callable[[], float]:
    import llama_cpp

    path = str(tiny.ensure_variant("tiny-moe-q8_0"))
    llm = llama_cpp.Llama(path, n_ctx=256, n_threads=2, n_threads_batch=2, verbose=False)

    def tg64() -> float:
        llm.reset()
        llm.eval([1])
        t0 = time.perf_counter()
        tok = 1
        for _ in range(64):
            llm.eval([tok])
            tok = (tok * 7 + 3) % 200 + 2
        return 64 / (time.perf_counter() - t0)

    return tg64


def _busy(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--probes", type=int, default=20)
    ap.add_argument("--minutes", type=float, default=0.0)
    args = ap.parse_args()
    print(
        f"probe {speed.PROBE}: {speed.ELEMENTS} elements x {speed.ITERATIONS} iterations, "
        f"median of {speed.PASSES} passes"
    )
    quiet = [speed.probe().score for _ in range(args.probes)]
    _line("quiet", quiet)
    q = statistics.median(quiet)
    tg64 = _decoder()
    after, later = [], []
    for _ in range(args.probes):
        tg64()
        after.append(speed.probe().score)
        time.sleep(1.0)
        later.append(speed.probe().score)
    _line("after decode", after, q)
    _line("a second later", later, q)
    for n in (1, 2):
        procs = _busy(n)
        try:
            time.sleep(0.5)
            _line(f"busy {n}", [speed.probe().score for _ in range(args.probes)], q)
        finally:
            for p in procs:
                p.kill()
                p.wait()
    if args.minutes > 0:
        from scipy.stats import spearmanr

        rates, scores = [], []
        end = time.monotonic() + args.minutes * 60
        while time.monotonic() < end:
            rates.append(statistics.median(tg64() for _ in range(3)))
            scores.append(speed.probe().score)
            print(
                f"  {time.strftime('%H:%M:%S')} tg64 {rates[-1]:7.1f} t/s  probe {scores[-1]:8.1f}",
                flush=True,
            )
            time.sleep(15)
        rho = spearmanr(rates, scores).statistic
        print(
            f"tracking: {len(rates)} pairs; tg64 max/min {max(rates) / min(rates):.2f}, "
            f"probe max/min {max(scores) / min(scores):.2f}, Spearman {rho:.2f}"
        )


if __name__ == "__main__":
    main()
