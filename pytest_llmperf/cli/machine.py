"""``llmperf machine``: this machine's measured limits (read bandwidth, f32 GEMM rate) per
thread count, as cached; ``--measure`` measures them (on a quiet machine: the probe
saturates memory and cores), which the roofline metrics (tg_roofline_pct,
pp_roofline_pct) need for the thread count of a test.

    llmperf machine                          # what is cached for this machine
    llmperf machine --measure                # the default thread count (physical cores)
    llmperf machine --measure --threads 1,2,4 --passes 7
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pytest_llmperf.errors import UsageError


def _threads(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: thread counts, e.g. 1,2,4") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: thread counts >= 1, e.g. 1,2,4")
    return values


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "machine",
        help="this machine's measured limits (memory bandwidth, f32 GEMM) for the roofline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--measure", action="store_true", help="measure (and cache) the limits")
    p.add_argument(
        "--threads",
        type=_threads,
        action="extend",
        default=None,
        help="thread counts to measure, e.g. 1,2,4 (default: the physical cores)",
    )
    p.add_argument("--passes", type=int, default=5, help="timed passes of each figure")
    p.add_argument(
        "--size-mb",
        type=int,
        default=None,
        help="the read buffer in MiB (default: 4x the last-level cache, at least 256)",
    )
    p.add_argument(
        "--gemm-size",
        type=int,
        default=None,
        help="n of the n x n f32 matrix product (default by thread count; 0: skip it)",
    )
    p.set_defaults(func=run)


def _row(lim: Any) -> str:
    gemm = lim.gflops.text(0) if lim.gflops is not None else f"- ({lim.gflops_absent})"
    busy = "  busy!" if lim.busy else ""
    return (
        f"{lim.threads:>7}  {lim.bandwidth_gbs.text():<24} {gemm:<24} "
        f"{lim.buffer_bytes >> 20:>6} MiB  {lim.measured_at}{busy}"
    )


def run(args: argparse.Namespace) -> int:
    from pytest_llmperf.machine import devices, limits
    from pytest_llmperf.machine import fingerprint as fp_mod

    if args.passes < 1:
        raise UsageError(f"--passes {args.passes}: must be >= 1")
    mid = fp_mod.machine_id()
    llc = limits.last_level_cache()
    mach = fp_mod.machine()
    print(
        f"machine {mid}: {mach.get('cpu')}, {mach.get('cores')} CPUs, last-level cache "
        + (f"{llc >> 20} MiB" if llc else "unknown")
    )
    cache = limits.load()
    if cache.problem:
        raise UsageError(cache.problem)
    header = f"{'threads':>7}  {'read GB/s [min, max]':<24} {'f32 GEMM GFLOP/s':<24} buffer"
    if args.measure:
        measured = []
        for threads in args.threads or [devices.default_threads()]:
            print(f"measuring with {threads} thread(s) ...", file=sys.stderr, flush=True)
            size = None if args.size_mb is None else args.size_mb << 20
            lim = limits.measure(threads, n_bytes=size, passes=args.passes, gemm_n=args.gemm_size)
            limits.save(lim, cache.path)
            measured.append(lim)
        print(f"measured, cached in {cache.path}:")
        print(header)
        for lim in measured:
            print(_row(lim))
            for note in lim.notes:
                print(f"  note: {note}")
            if lim.busy:
                worst = max(lim.contention.values())
                print(
                    f"  warning: other processes competed for the CPU during the probe (up to "
                    f"{worst:.0%}): measure again on a quiet machine"
                )
        return 0
    mine = sorted(
        (v for v in cache.entries.values() if v.machine_id == mid), key=lambda v: v.threads
    )
    if not mine:
        print(
            f"no limits measured for this machine in {cache.path}: run "
            "`llmperf machine --measure [--threads N,...]` on a quiet machine"
        )
        return 0
    print(f"limits cached in {cache.path}:")
    print(header)
    for lim in mine:
        print(_row(lim))
    return 0
