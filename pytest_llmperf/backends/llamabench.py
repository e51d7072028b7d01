"""A second measurement backend: a llama-bench binary (any fork's) run as a subprocess.

Seed 002's users benchmark ik_llama.cpp builds with flags mainline does not have
(``-mla 3 -fmoe 1 -amb 512 -rtr``); llama-cpp-python cannot load those libraries, but
their llama-bench runs them. A build of kind ``llama_bench`` (``builds: {ik: {llama_bench:
PATH}}``) runs each workload as ``llama-bench -o jsonl`` with the test's load params in
llama-bench's syntax, and the marker's ``bench_args`` passed through untouched.

Mapping: each repetition's ``samples_ns`` is a sample. A prompt test gives ``pp_tps``
(n_prompt / time), a generation test ``tg_tps`` (n_gen / time: llama-bench decodes n_gen
tokens and times all of them, where the engine's tg_tps leaves out the first), both with
``e2e_ms``; a prompt-then-generation workload also asks llama-bench for ``-pg N,1``, whose
time is ``ttft_ms``. Per-token latencies do not exist in llama-bench's output: the ITL
metrics are absent with that reason, never guessed. No load time either (the metrics
and reasons are its :data:`~pytest_llmperf.backends.protocol.LLAMA_BENCH` spec's).

The load params become llama-bench's flags through its knob table (the
:class:`~pytest_llmperf.backends.protocol.Flag` entries); a knob it has no flag for,
set away from its default, is listed in ``resolved["not_applied"]`` with why.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shlex
import subprocess
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pytest_llmperf.backends.answers import check_count, check_measurement, positive_ns
from pytest_llmperf.backends.protocol import LLAMA_BENCH, Flag
from pytest_llmperf.backends.runner import HINTS, signal_name
from pytest_llmperf.errors import BackendCrash, BackendError
from pytest_llmperf.model.metrics import Sample
from pytest_llmperf.model.params import KNOBS, LoadParams
from pytest_llmperf.model.results import Measurement
from pytest_llmperf.model.workloads import Workload

if TYPE_CHECKING:
    from pytest_llmperf.model.workloads import StreamWorkload


def bench_args(params: LoadParams) -> list[str]:
    """``params`` as llama-bench arguments: the flag entries of its knob table, for the
    knobs set away from their defaults (llama-bench's own defaults are llama.cpp's)."""
    out: list[str] = []
    for name, entry in LLAMA_BENCH.entries(Flag).items():
        value = getattr(params, name)
        if KNOBS[name].shown(value):
            out += entry.args(KNOBS[name], value)
    return out


class LlamaBenchRunner:
    """The Runner interface over a llama-bench binary."""

    def __init__(
        self,
        binary: str,
        path: str,
        params: LoadParams,
        model_id: str = "",
        *,
        extra_args: Sequence[str] = (),
        launcher: Sequence[str] = (),
        timeout_s: float = 600.0,
        build: str = "",
    ) -> None:
        self.binary = binary
        self.path = path
        self.params = params
        self.model_id = model_id or os.path.basename(path)
        self.extra = list(extra_args)
        self.launcher = list(launcher)
        self.timeout_s = timeout_s
        self.build = build
        self.load_ms = float("nan")
        self.warnings: list[str] = []
        self.resolved: dict[str, Any] = {"backend_kind": "llama-bench", "binary": binary}
        not_applied = LLAMA_BENCH.not_applied(params)
        if not_applied:
            self.resolved["not_applied"] = not_applied
        self.software = self._identity()
        self.pid: int | None = None  # a llama-bench process per call

    def _identity(self) -> dict[str, Any]:
        out: dict[str, Any] = {"llama_bench": self.binary}
        try:
            with open(self.binary, "rb") as fh:
                out["lib_sha256"] = hashlib.sha256(fh.read()).hexdigest()
        except OSError as exc:
            raise BackendError(
                f"build {self.build!r}: llama-bench binary {self.binary} cannot be read ({exc}); "
                "fix its path in the registry"
            ) from None
        try:
            proc = subprocess.run(
                [self.binary, "--version"], capture_output=True, text=True, timeout=30, check=False
            )
            text = (proc.stdout + proc.stderr).strip()
            if text:
                out["llama_bench_version"] = text.splitlines()[0][:200]
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackendError(
                f"build {self.build!r}: {self.binary} does not run ({exc})"
            ) from None
        return out

    def command(self, workload: Workload, repetitions: int, warmup: int) -> list[str]:
        args = [*self.launcher, self.binary, "-m", self.path, "-o", "jsonl", "-r", str(repetitions)]
        if warmup == 0:
            args.append("--no-warmup")
        args += bench_args(self.params) + self.extra
        if workload.n_prompt and workload.n_gen:
            args += ["-p", "0", "-n", "0", "-pg", f"{workload.n_prompt},{workload.n_gen}"]
            if workload.n_gen > 1:  # its time to the first token: ttft_ms
                args += ["-pg", f"{workload.n_prompt},1"]
        else:
            args += ["-p", str(workload.n_prompt), "-n", str(workload.n_gen)]
        args += ["-d", str(workload.n_depth)]
        return args

    def _run(self, cmd: list[str]) -> list[dict[str, Any]]:
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=self.timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            raise BackendCrash(
                f"llama-bench for {self.model_id} did not finish within {self.timeout_s:.0f} s "
                "and was killed; raise --perf-timeout if it is legitimately this slow",
                signal_name="timeout",
            ) from None
        except OSError as exc:
            raise BackendError(f"cannot run {cmd[0]}: {exc}") from None
        if proc.returncode != 0:
            name = signal_name(proc.returncode)
            tail = "\n".join(f"  | {ln}" for ln in proc.stderr.strip().splitlines()[-12:])
            raise BackendCrash(
                f"llama-bench ({self.binary}) failed on {self.model_id}: {name}\n"
                f"hint: {HINTS.get(name, 'see its output below (an unknown flag?)')}\n"
                f"command: {shlex.join(cmd)}\n{tail}",
                signal_name=name,
            )
        rows: list[dict[str, Any]] = []
        for line in proc.stdout.splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and {"samples_ns", "n_prompt", "n_gen"} & set(row):
                rows.append(row)
        if not rows:
            raise BackendError(
                f"llama-bench ({self.binary}) printed no result for {self.model_id}; "
                f"command: {shlex.join(cmd)}"
            )
        return rows

    def measure(self, workload: Workload, repetitions: int = 3, warmup: int = 1) -> Measurement:
        if workload.kind == "load":
            return self.measure_load(repetitions)
        started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        cmd = self.command(workload, repetitions, warmup)
        answers = self._answers(self._run(cmd), workload, repetitions, cmd)
        main, ns = answers[(workload.n_prompt, workload.n_gen)]
        values: dict[str, list[float]] = {"e2e_ms": [x / 1e6 for x in ns]}
        if workload.n_gen and not workload.n_prompt:
            values["tg_tps"] = [workload.n_gen / (x / 1e9) for x in ns]
            values["tpot_ms"] = [x / 1e6 / workload.n_gen for x in ns]
        elif workload.n_prompt and not workload.n_gen:
            values["pp_tps"] = [workload.n_prompt / (x / 1e9) for x in ns]
        ttft = answers.get((workload.n_prompt, 1)) if workload.n_gen > 1 else None
        if ttft is not None:
            values["ttft_ms"] = [x / 1e6 for x in ttft[1]]
        absent = dict(LLAMA_BENCH.missing_metrics)
        samples = [
            Sample(workload.n_prompt, workload.n_gen, workload.n_depth, None, [], x, {}) for x in ns
        ]
        resolved = dict(self.resolved, llama_bench=main)
        measured = Measurement(
            model=self.model_id,
            model_path=self.path,
            params=self.params,
            workload=workload,
            samples=samples,
            values=values,
            absent=absent,
            resolved=resolved,
            started_at=started,
            repetitions=repetitions,
            warmup=warmup,
        )
        return check_measurement(
            measured, workload.name, repetitions, f"llama-bench ({self.binary})"
        )

    def _answers(
        self, rows: list[dict[str, Any]], workload: Workload, repetitions: int, cmd: list[str]
    ) -> dict[tuple[int, int], tuple[dict[str, Any], list[int]]]:
        """Each row llama-bench printed, checked against what it was asked: one row per
        test asked for ((n_prompt, n_gen) -> the row and its times), at the depth asked
        for, with one positive time per repetition. Anything else is a BackendError: a
        row of another test is never taken for this one."""
        asked = [(workload.n_prompt, workload.n_gen)]
        if workload.n_prompt and workload.n_gen > 1:
            asked.append((workload.n_prompt, 1))
        who = f"llama-bench ({self.binary}) on {self.model_id}, asked for {workload.name}"
        fix = f"; its numbers were not used\ncommand: {shlex.join(cmd)}"
        out: dict[tuple[int, int], tuple[dict[str, Any], list[int]]] = {}
        for row in rows:
            test = f"the row for n_prompt={row.get('n_prompt')!r}, n_gen={row.get('n_gen')!r}"
            key = (row.get("n_prompt"), row.get("n_gen"))
            typed = all(isinstance(v, int) and not isinstance(v, bool) for v in key)
            if not typed or key not in asked:
                shown = " and ".join(f"n_prompt={a}, n_gen={b}" for a, b in asked)
                raise BackendError(
                    f"{who}: printed {test}, a test it was not asked for ({shown})" + fix
                )
            if key in out:
                raise BackendError(
                    f"{who}: printed {test} twice (a comma list or a repeated flag in "
                    "bench_args runs several tests: give each flag one value)" + fix
                )
            try:
                check_count(row, "n_depth", workload.n_depth, test)
                ns = positive_ns(row.get("samples_ns"), repetitions, test)
            except ValueError as exc:
                raise BackendError(f"{who}: {exc}" + fix) from None
            out[(int(key[0]), int(key[1]))] = (row, ns)
        missing = [f"n_prompt={a}, n_gen={b}" for a, b in asked if (a, b) not in out]
        if missing:
            raise BackendError(f"{who}: printed no row for {' and '.join(missing)}" + fix)
        return out

    def measure_load(self, repetitions: int = 3) -> Measurement:
        raise BackendError(
            f"build {self.build!r} runs llama-bench, which does not time model loads; "
            "measure load times with a llama-cpp-python build"
        )

    def measure_stream(
        self, workload: StreamWorkload, repetitions: int = 3, warmup: int = 1
    ) -> Measurement:
        raise BackendError(
            f"build {self.build!r} runs llama-bench, which has no streaming API; measure "
            "streamed requests with a llama-cpp-python build"
        )

    def settle(self) -> None:
        """Nothing to wait for: each call's llama-bench has exited."""

    def close(self) -> None:
        pass
