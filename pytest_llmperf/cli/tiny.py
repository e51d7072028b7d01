"""``llmperf tiny-model``: build (or reuse from the cache) a built-in tiny GGUF model and
print its path; ``--list`` names the variants, ``--prune`` removes cached files of older
specs or generator versions (only names the tiny builder writes).

    llmperf tiny-model --variant moe-mxfp4
    llmperf tiny-model --variant dense-q8_0 --n-layer 4
    llmperf tiny-model --variant moe-q8_0 --n-expert 16 --family my-moe --json
    llmperf tiny-model --list

A spec of your own (any override) is best built under a ``--family`` of its own: the file
is named by it, and ``--prune`` only removes files named by a built-in family.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from typing import Any

#: the spec fields a command line may override
_OVERRIDES = (
    "n_layer",
    "n_embd",
    "n_ff",
    "n_head",
    "n_head_kv",
    "n_expert",
    "n_expert_used",
    "n_vocab",
    "seed",
)


def add_parser(sub: Any) -> None:
    t = sub.add_parser("tiny-model", help="build or reuse a built-in tiny GGUF model")
    t.add_argument(
        "--variant",
        default="moe-mxfp4",
        help="<dense|moe>-<f16|q8_0|q4_k_m|mxfp4> (default moe-mxfp4)",
    )
    t.add_argument("--list", action="store_true", help="list the built-in variants")
    t.add_argument(
        "--prune",
        action="store_true",
        help="remove cached built-in variants of older specs or generator versions",
    )
    t.add_argument("--cache-dir", default=None, help="cache directory (env LLMPERF_CACHE_DIR)")
    t.add_argument(
        "--family",
        default=None,
        help="the name the file starts with (default: the variant's, e.g. tiny-moe)",
    )
    t.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (path, family, quant, built, seconds, spec), not the path",
    )
    for name in _OVERRIDES:
        t.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=int,
            default=None,
            help=f"override the spec's {name}",
        )
    t.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pytest_llmperf.errors import UsageError
    from pytest_llmperf.machine import tiny

    if args.list:
        for name in tiny.variant_names():
            print(name)
        return 0
    if args.prune:
        stale = tiny.stale_files(args.cache_dir)
        for path in stale:
            path.unlink()
            print(f"removed {path}")
        print(f"{len(stale)} stale built-in tiny model file(s) removed", file=sys.stderr)
        return 0
    family, spec, quant = tiny.parse_variant(args.variant)
    if args.family is not None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", args.family):
            raise UsageError(
                f"--family {args.family!r}: letters, digits, '.', '_' and '-' only "
                "(it starts a file name)"
            )
        family = args.family
    overrides = {k: getattr(args, k) for k in _OVERRIDES if getattr(args, k) is not None}
    if overrides:
        spec = dataclasses.replace(spec, **overrides)
    start = time.perf_counter()
    info = tiny.ensure_model(spec, quant, args.cache_dir, family=family)
    size_mb = info.path.stat().st_size / 1e6
    state = f"built in {time.perf_counter() - start:.2f} s" if info.built else "cached"
    print(f"{family}-{quant}: {state}, {size_mb:.1f} MB", file=sys.stderr)
    if args.json:
        doc = {
            "path": str(info.path),
            "family": family,
            "quant": quant,
            "built": info.built,
            "seconds": round(info.seconds, 3),
            "spec": dataclasses.asdict(spec),
        }
        print(json.dumps(doc))
    else:
        print(info.path)
    return 0
