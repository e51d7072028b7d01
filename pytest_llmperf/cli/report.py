"""``llmperf report RESULTS -o DIR``: write a session's report again from its
results.json, in any report format the plugin writes (``--format NAME``, repeatable;
default: the report folder, written to DIR itself; a file format is written into DIR
under its own name, e.g. bmf.json).

    llmperf report perf-report/results.json -o site
    llmperf report results.json -o out --format bmf --format benchmark-json
    llmperf report results.json -o out --baseline accepted/results.json

Every target is checked before anything is read or written: a file there that is not
that format's own is refused, naming it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pytest_llmperf.errors import UsageError
from pytest_llmperf.model import ownership
from pytest_llmperf.outputs.formats import FORMATS, FormatInputs, FormatSpec

#: the format written when ``--format`` is not given
DEFAULT_FORMAT = "report"


def add_parser(sub: Any) -> None:
    r = sub.add_parser(
        "report",
        help="write a report again from results.json (any format: --format)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("results")
    r.add_argument("-o", "--output", required=True, help="output directory")
    r.add_argument(
        "--format",
        dest="formats",
        action="append",
        choices=list(FORMATS),
        metavar="NAME",
        default=None,
        help=f"a format to write: {', '.join(FORMATS)} (repeatable; default {DEFAULT_FORMAT})",
    )
    r.add_argument("--baseline", default=None, help="a results.json to draw as the baseline")
    r.set_defaults(func=run)


def _targets(out: Path, names: list[str]) -> list[tuple[FormatSpec, Path, str]]:
    """(format, its path, how errors name it) of each format asked for, once each."""
    targets = []
    for name in dict.fromkeys(names):
        spec = FORMATS[name]
        path = out / spec.file_name if spec.file_name else out
        what = f"report -o {out}" if name == DEFAULT_FORMAT else f"report --format {name}"
        targets.append((spec, path, what))
    return targets


def run(args: argparse.Namespace) -> int:
    from pytest_llmperf.outputs import load_results

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UsageError(f"report -o {out}: is a file; name a folder for the report files")
    targets = _targets(out, args.formats or [DEFAULT_FORMAT])
    for spec, path, what in targets:  # refused before anything is read or written
        spec.check(path, what)
    ownership.expect(args.results, ["results-json"], "report")
    if args.baseline:
        ownership.expect(args.baseline, ["results-json"], "report --baseline")
    results = load_results(args.results)
    inputs = FormatInputs(baseline_results=load_results(args.baseline) if args.baseline else None)
    for spec, path, what in targets:
        try:
            written = spec.write(results, path, inputs, what)
        except OSError as exc:
            raise UsageError(f"{what}: cannot write there ({exc.strerror or exc})") from None
        for p in written:
            print(p)
    return 0
