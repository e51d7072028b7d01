#!/usr/bin/env python3
"""The checks behind scripts/gpu-check.sh: pytest-llmperf's GPU code paths on a real GPU.

Everything goes through the project's own code: models from ``tiny.ensure_model``, header
figures from ``gguf_info.inspect`` (and the ``gguf`` reader for tensor bytes), every
configuration in its own ``IsolatedRunner`` worker (the plugin's default) whose
``Measurement`` gives load_ms, pp_tps, tg_tps and vram_mb, device memory through
``devices.nvml()``. Each check is independent: one that fails or crashes becomes a
``fail`` row and the next one runs. After every row the summary is rewritten, so a run
stopped at its time limit still leaves one:

    OUT/gpu-summary.json   every row with its figures, the environment, the raw runs
    OUT/gpu-summary.md     a table to paste into the docs, with the date and the GPU
    OUT/pytest.log         the output of the two pytest runs
    OUT/baseline-*.json    the baseline that ``pytest perf_tests -m gpu`` recorded

``--mode cpu`` (gpu-check.sh --cpu) runs the same flow on a CPU build: every
configuration still runs (on the CPU), so every code path is exercised, and the checks
that need a GPU say ``skipped: no GPU`` instead of failing. ``--quick`` uses the small
built-in tiny models and a short workload (tests/test_gpu_check.py).

Usage (gpu-check.sh puts the repository and the installed bundle on PYTHONPATH):

    python scripts/gpu_checks.py --out DIR --mode cuda|cpu [--deadline EPOCH] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

MB = 1024 * 1024
QUANT = "q8_0"
#: vram_mb against nvidia-smi's per-process figure: relative, plus NVML's granularity
SMI_TOLERANCE = 0.02
SMI_GRANULARITY_MB = 2.0
#: cpu-moe's VRAM saving against the expert tensors' bytes in the GGUF header
SAVING_TOLERANCE = 0.10
#: device memory back at the same level after a configuration closes
RELEASE_TOLERANCE_MB = 16.0
#: vram(ngl=k) - vram(ngl=0) against the header bytes of k layers (+ their KV cache)
SCALING_TOLERANCE = 0.15
SCALING_SLACK_MB = 64.0

#: the MoE model of the full check: 8 layers x 16 experts (FFN 1024) at width 1024; in
#: q8_0 its expert tensors are 408 MiB (51 MiB a layer), far above NVML's granularity
BIG_MOE = {
    "n_layer": 8,
    "n_embd": 1024,
    "n_ff": 1024,
    "n_head": 16,
    "n_head_kv": 4,
    "n_expert": 16,
    "n_expert_used": 4,
}

PASS, FAIL, SKIPPED = "pass", "fail", "skipped"


class Skip(Exception):
    """Raised by a check that cannot apply here; the row becomes ``skipped``."""


@dataclass
class Row:
    name: str
    status: str
    figures: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    seconds: float = 0.0


def rnd(value: Any, digits: int = 1) -> Any:
    return round(float(value), digits) if isinstance(value, (int, float)) else value


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- pure judgements (unit-tested without a GPU) -----------------------------------------


def judge_smi(runs: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any], str]:
    """vram_mb (peak - before the load, in the worker) against nvidia-smi's per-process
    figure read while the model was loaded. A constant offset across configurations is the
    memory the worker held before the load (a CUDA context created earlier)."""
    pairs = {
        k: (r["vram_mb"], r["smi_mb"])
        for k, r in runs.items()
        if r.get("vram_mb") is not None and r.get("smi_mb") is not None
    }
    if not pairs:
        return FAIL, {}, "no configuration had both vram_mb and an nvidia-smi figure"
    diffs = {k: v - s for k, (v, s) in pairs.items()}
    worst = max(pairs, key=lambda k: abs(diffs[k]) / max(pairs[k][1], 1.0))
    figs = {
        "configs": len(pairs),
        "worst": worst,
        "worst_vram_mb": rnd(pairs[worst][0]),
        "worst_smi_mb": rnd(pairs[worst][1]),
        "worst_diff_pct": rnd(100 * diffs[worst] / max(pairs[worst][1], 1.0), 2),
        "diffs_mb": {k: rnd(d) for k, d in diffs.items()},
    }
    within = all(
        abs(diffs[k]) <= SMI_TOLERANCE * s + SMI_GRANULARITY_MB for k, (_, s) in pairs.items()
    )
    if within:
        return PASS, figs, f"all {len(pairs)} within {SMI_TOLERANCE:.0%}"
    spread = max(diffs.values()) - min(diffs.values())
    smallest = min(s for _, s in pairs.values())
    if spread <= SMI_TOLERANCE * smallest + SMI_GRANULARITY_MB and max(diffs.values()) < 0:
        offset = sum(diffs.values()) / len(diffs)
        return (
            PASS,
            dict(figs, constant_offset_mb=rnd(offset)),
            f"constant offset {offset:.0f} MB in every configuration: memory the worker "
            "held before the load (CUDA context), which vram_mb leaves out by design",
        )
    return FAIL, figs, f"vram_mb differs from nvidia-smi by more than {SMI_TOLERANCE:.0%}"


def judge_saving(
    vram_off: float | None, vram_on: float | None, expected_mb: float, allowance_mb: float = 0.0
) -> tuple[str, dict[str, Any], str]:
    """A VRAM saving (cpu-moe off - on) against the bytes of the tensors kept on the CPU.

    ``allowance_mb``: one layer's expert bytes. For large batches llama.cpp offloads the
    expert matmuls of CPU layers to the GPU (op offload), copying a layer's experts into
    the GPU compute buffer, so the saving may fall short of the experts' bytes by that.
    """
    if vram_off is None or vram_on is None:
        return FAIL, {}, "vram_mb absent in one of the two runs"
    saving = vram_off - vram_on
    ratio = saving / expected_mb if expected_mb else float("nan")
    figs = {
        "vram_off_mb": rnd(vram_off),
        "vram_on_mb": rnd(vram_on),
        "saving_mb": rnd(saving),
        "expected_mb": rnd(expected_mb),
        "ratio": rnd(ratio, 3),
    }
    note = f"saving {saving:.0f} MB vs {expected_mb:.0f} MB of expert tensors (x{ratio:.3f})"
    slack = SAVING_TOLERANCE * expected_mb
    if abs(saving - expected_mb) <= slack:
        return PASS, figs, note
    if expected_mb - allowance_mb - slack <= saving < expected_mb:
        figs["op_offload_allowance_mb"] = rnd(allowance_mb)
        return (
            PASS,
            figs,
            f"{note}: short by up to one layer's experts ({allowance_mb:.0f} MB), the "
            "compute buffer where llama.cpp copies CPU experts for large batches (op offload)",
        )
    return FAIL, figs, note


def judge_scaling(
    vram_by_ngl: dict[int, float | None], expected_by_ngl: dict[int, float]
) -> tuple[str, dict[str, Any], str]:
    """vram_mb must grow with n_gpu_layers, by about the offloaded layers' bytes."""
    known = {k: v for k, v in sorted(vram_by_ngl.items()) if v is not None}
    if 0 not in known or len(known) < 2:
        return FAIL, {}, "vram_mb absent for ngl=0 or for every offloaded configuration"
    base = known[0]
    figs: dict[str, Any] = {}
    problems: list[str] = []
    last = base
    for ngl, vram in known.items():
        if ngl == 0:
            continue
        delta, expected = vram - base, expected_by_ngl[ngl]
        figs[f"ngl{ngl}_delta_mb"] = rnd(delta)
        figs[f"ngl{ngl}_expected_mb"] = rnd(expected)
        if vram < last - SMI_GRANULARITY_MB:
            problems.append(f"ngl={ngl} uses less than the previous step")
        if abs(delta - expected) > SCALING_TOLERANCE * expected + SCALING_SLACK_MB:
            problems.append(f"ngl={ngl}: +{delta:.0f} MB, expected ~{expected:.0f} MB")
        last = vram
    if problems:
        return FAIL, figs, "; ".join(problems)
    return PASS, figs, "vram grows with ngl by the offloaded layers' bytes (+ their KV cache)"


def judge_release(
    levels: list[tuple[str, float | None, float | None]],
) -> tuple[str, dict[str, Any], str]:
    """(config, device used before it started, after it closed): all at one level."""
    pairs = [(k, b, a) for k, b, a in levels if b is not None and a is not None]
    if not pairs:
        return FAIL, {}, "no device memory readings"
    start = pairs[0][1]
    worst_before = max(abs(b - start) for _, b, _ in pairs)
    worst_after = max(abs(a - start) for _, _, a in pairs)
    figs = {
        "configs": len(pairs),
        "start_level_mb": rnd(start),
        "max_before_drift_mb": rnd(worst_before),
        "max_after_drift_mb": rnd(worst_after),
    }
    ok = max(worst_before, worst_after) <= RELEASE_TOLERANCE_MB
    note = (
        f"device memory back within {RELEASE_TOLERANCE_MB:.0f} MB after each of "
        f"{len(pairs)} configurations"
        if ok
        else "device memory did not return to its level after a configuration closed"
    )
    return (PASS if ok else FAIL), figs, note


def parse_smi_apps(text: str) -> dict[int, float]:
    """``nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits``."""
    out: dict[int, float] = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[0].isdigit():
            with contextlib.suppress(ValueError):
                out[int(parts[0])] = out.get(int(parts[0]), 0.0) + float(parts[1])
    return out


def parse_pytest_counts(text: str) -> dict[str, int]:
    """Counts from pytest's last summary line ("4 passed, 1 skipped in 3.2s")."""
    lines = [
        ln
        for ln in text.splitlines()
        if re.search(r"\d+ (passed|failed|skipped|deselected|error)", ln)
    ]
    counts: dict[str, int] = {}
    if lines:
        for n, what in re.findall(r"(\d+) (\w+)", lines[-1]):
            counts[what.rstrip("s") if what in ("errors", "warnings") else what] = int(n)
    return counts


# -- the checks ------------------------------------------------------------------------


class GPUChecks:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.rows: list[Row] = []
        self.env: dict[str, Any] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.gpu = False
        self.no_gpu = "no GPU (--cpu dry run)" if args.mode == "cpu" else "no GPU"
        self.no_gpu_reason = self.no_gpu
        self.started = time.time()
        self.quick = bool(args.quick)
        self.workload = "pp32+tg8" if self.quick else "pp512+tg128"
        self.repetitions = 1 if self.quick else 3
        self.warmup = 0 if self.quick else 1
        self.baselines: list[str] = []

    # -- bookkeeping -------------------------------------------------------------------
    def time_left(self) -> float:
        return self.args.deadline - time.time() if self.args.deadline else 1e9

    def check(self, name: str, fn: Callable[[], Row], need_s: float = 10.0) -> None:
        if self.time_left() < need_s:
            row = Row(name, SKIPPED, notes=f"out of time ({self.time_left():.0f} s left)")
        else:
            log(f"check {name} ...")
            t0 = time.perf_counter()
            try:
                row = fn()
            except Skip as exc:
                row = Row(name, SKIPPED, notes=str(exc))
            except Exception as exc:
                tail = traceback.format_exc().strip().splitlines()[-6:]
                row = Row(name, FAIL, notes=f"{type(exc).__name__}: {exc}"[:1500])
                row.figures["traceback"] = tail
            row.name = name
            row.seconds = round(time.perf_counter() - t0, 1)
        self.rows.append(row)
        log(f"check {name}: {row.status.upper()} ({row.seconds} s) {row.notes[:300]}")
        self.write()

    def gpu_note(self, note: str) -> str:
        if self.gpu:
            return note
        return f"{self.no_gpu}: ran on the CPU to exercise the path; {note}".rstrip("; ")

    def need_gpu(self) -> None:
        if not self.gpu:
            raise Skip(self.no_gpu)

    def need_run(self, *keys: str) -> list[dict[str, Any]]:
        missing = [k for k in keys if k not in self.runs]
        if missing:
            raise Skip(f"needs the run(s) {', '.join(missing)}, which did not complete")
        return [self.runs[k] for k in keys]

    def need_model(self, key: str) -> dict[str, Any]:
        if key not in self.models:
            raise Skip(f"the {key} model was not built (see the models row)")
        return self.models[key]

    # -- child processes: anything that loads llama.cpp runs outside this process, so
    # this process never holds a CUDA context and a native crash costs one check only
    def child(self, kind: str, payload: dict[str, Any], timeout: float = 300.0) -> Any:
        with tempfile.TemporaryDirectory(prefix="llmperf-gpu-child-") as tmp:
            result = Path(tmp) / "result.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind]
            cmd += ["--child-args", json.dumps(payload), "--child-out", str(result)]
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=max(10.0, min(timeout, self.time_left())),
                cwd=REPO,
            )
            if proc.returncode != 0 or not result.exists():
                tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-12:])
                raise RuntimeError(f"child '{kind}' exited with {proc.returncode}:\n{tail}")
            return json.loads(result.read_text())

    # -- readings ----------------------------------------------------------------------
    def device_used_mb(self) -> float | None:
        from pytest_llmperf.machine import devices

        try:
            mod = devices.nvml()
        except devices.NVMLUnavailable:
            return None
        handles = [mod.nvmlDeviceGetHandleByIndex(i) for i in devices.visible_gpu_indices(mod)]
        return sum(float(mod.nvmlDeviceGetMemoryInfo(h).used) for h in handles) / MB

    def device_after_mb(self, before: float | None) -> float | None:
        """Device memory after a worker exited: the driver frees it within a moment."""
        value = self.device_used_mb()
        deadline = time.time() + 5.0
        while (
            value is not None
            and before is not None
            and value > before + RELEASE_TOLERANCE_MB
            and time.time() < deadline
        ):
            time.sleep(0.25)
            value = self.device_used_mb()
        return value

    def smi_process_mb(self, pid: int) -> tuple[float | None, str]:
        exe = shutil.which("nvidia-smi")
        if not exe:
            return None, "nvidia-smi not found"
        try:
            proc = subprocess.run(
                [exe, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"nvidia-smi failed: {exc}"
        apps = parse_smi_apps(proc.stdout)
        if pid in apps:
            return apps[pid], ""
        return None, f"pid {pid} not in nvidia-smi's list {sorted(apps)} (rc {proc.returncode})"

    # -- one configuration, the plugin's way --------------------------------------------
    def run_config(self, key: str, model: str, **params: Any) -> dict[str, Any]:
        from pytest_llmperf.backends.runner import IsolatedRunner
        from pytest_llmperf.model.params import LoadParams
        from pytest_llmperf.model.workloads import Workload

        info = self.need_model(model)
        load_params = LoadParams(**params)
        workload = Workload.parse(self.workload)
        before = self.device_used_mb()
        runner = IsolatedRunner(
            info["path"],
            load_params,
            model_id=info["id"],
            timeout_s=max(30.0, min(600.0, self.time_left() - 5)),
        )
        try:
            m = runner.measure(workload, repetitions=self.repetitions, warmup=self.warmup)
            smi, smi_note = self.smi_process_mb(runner.pid) if self.gpu else (None, self.no_gpu)
            loaded = self.device_used_mb()
        finally:
            runner.close()
        after = self.device_after_mb(before)
        res = m.resolved
        figs = {
            "model": model,
            "params": load_params.to_args() or "defaults",
            "load_ms": rnd(runner.load_ms),
            "pp_tps": rnd(m.median("pp_tps")),
            "tg_tps": rnd(m.median("tg_tps")),
            "vram_mb": rnd(m.median("vram_mb")),
            "smi_mb": rnd(smi),
            "device_before_mb": rnd(before),
            "device_loaded_mb": rnd(loaded),
            "device_after_mb": rnd(after),
            "device_delta_mb": rnd(loaded - before)
            if loaded is not None and before is not None
            else None,
            "backend": res.get("backend"),
            "flash_attn": res.get("flash_attn"),
            "cpu_moe_tensors": res.get("cpu_moe_tensors"),
            "n_threads": res.get("n_threads"),
            "vram_mode": res.get("vram_mode"),
            "llama_tg_tps": rnd(m.median("llama_tg_tps")),
            "rss_peak_mb": rnd(m.median("rss_peak_mb")),
        }
        if m.absent.get("vram_mb"):
            figs["vram_absent"] = m.absent["vram_mb"]
        if smi_note and self.gpu:
            figs["smi_note"] = smi_note
        self.runs[key] = figs
        return figs

    def measured_row(self, key: str, model: str, gpu_only: bool, **params: Any) -> Row:
        figs = self.run_config(key, model, **params)
        if not self.gpu:
            if gpu_only:
                return Row(key, SKIPPED, figs, self.gpu_note(""))
            return Row(key, PASS, figs, "CPU figures")
        problems = []
        if figs["vram_mb"] is None:
            problems.append(f"vram_mb absent: {figs.get('vram_absent')}")
        ngl = params.get("n_gpu_layers", 0)
        if ngl != 0 and "CUDA" not in str(figs["backend"]):
            problems.append(f"backend {figs['backend']!r}: no CUDA device holds layers")
        return Row(key, FAIL if problems else PASS, figs, "; ".join(problems))

    # -- rows --------------------------------------------------------------------------
    def c_environment(self) -> Row:
        from pytest_llmperf.machine import devices

        gpu, reason = devices.gpu_info()
        child = self.child("env", {}, timeout=120)
        smi = ""
        exe = shutil.which("nvidia-smi")
        if exe:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                smi = subprocess.run(
                    [exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                ).stdout.strip()
        cuda_devices = [d for d in child["devices"] if d["type"] in (1, 3)]
        self.env.update(
            python=sys.version.split()[0],
            executable=sys.executable,
            llama_cpp_python=child["version"],
            llama_cpp_file=child["file"],
            supports_gpu_offload=child["supports_gpu_offload"],
            llama_devices=child["devices"],
            system_info=child["system_info"],
            gpu=gpu.name if gpu else None,
            gpu_driver=gpu.driver if gpu else None,
            gpu_total_mb=rnd(gpu.total_mb) if gpu else None,
            gpu_absent_reason=reason or None,
            nvidia_smi=smi or None,
            nvcc=os.environ.get("GPU_CHECK_NVCC") or None,
            cores=os.cpu_count(),
        )
        self.gpu = bool(gpu and child["supports_gpu_offload"] and cuda_devices)
        if self.args.mode == "cuda" and not self.gpu:
            why = [reason] if reason else []
            if not child["supports_gpu_offload"] or not cuda_devices:
                why.append("llama.cpp sees no GPU device (llama_supports_gpu_offload is false)")
            self.no_gpu_reason = "no usable GPU: " + "; ".join(why)
            self.no_gpu = "no GPU (see cuda_backend)"
        figs = {
            "gpu": self.env["gpu"],
            "driver": self.env["gpu_driver"],
            "gpu_total_mb": self.env["gpu_total_mb"],
            "llama_cpp_python": child["version"],
            "llama_devices": [f"{d['name']} ({d['description']})" for d in child["devices"]],
            "python": self.env["python"],
        }
        return Row("environment", PASS, figs, reason or "")

    def c_cuda_backend(self) -> Row:
        if self.args.mode == "cpu":
            raise Skip(self.no_gpu)
        ok = self.gpu
        figs = {
            "supports_gpu_offload": self.env.get("supports_gpu_offload"),
            "gpu": self.env.get("gpu"),
            "cuda_devices": [
                d["name"] for d in self.env.get("llama_devices", []) if d["type"] in (1, 3)
            ],
        }
        return Row("cuda_backend", PASS if ok else FAIL, figs, "" if ok else self.no_gpu_reason)

    def c_models(self) -> Row:
        from pytest_llmperf.machine import gguf_info, tiny

        specs: dict[str, tuple[str, dict[str, Any]]]
        if self.quick:
            specs = {
                "moe": ("tiny-moe", asdict(tiny.MOE)),
                "dense": ("tiny-dense", asdict(tiny.DENSE)),
            }
        else:
            specs = {
                "moe": ("gpu-check-moe", asdict(tiny.TinySpec(**BIG_MOE))),
                "dense": ("tiny-dense", asdict(tiny.DENSE)),
            }
        built = self.child("build-models", {"models": specs, "quant": QUANT}, timeout=600)
        figs: dict[str, Any] = {}
        for key, b in built.items():
            info = gguf_info.inspect(b["path"])
            sizes = tensor_bytes(b["path"])
            experts = set(info.expert_tensors)
            per_layer: dict[int, int] = {}
            expert_per_layer: dict[int, int] = {}
            for name, n in sizes.items():
                mm = re.match(r"blk\.(\d+)\.", name)
                if mm:
                    i = int(mm.group(1))
                    per_layer[i] = per_layer.get(i, 0) + n
                    if name in experts:
                        expert_per_layer[i] = expert_per_layer.get(i, 0) + n
            spec = specs[key][1]
            n_embd_kv = spec["n_embd"] // spec["n_head"] * spec["n_head_kv"]
            self.models[key] = {
                "id": f"{specs[key][0]}-{QUANT}",
                "path": b["path"],
                "n_layer": info.n_layer,
                "n_expert": info.n_expert,
                "file_mb": info.file_size / MB,
                "expert_tensors": len(experts),
                "expert_mb": sum(expert_per_layer.values()) / MB,
                "expert_mb_by_layer": {i: v / MB for i, v in expert_per_layer.items()},
                "layer_mb": {i: v / MB for i, v in per_layer.items()},
                "output_mb": (sizes.get("output.weight", 0) + sizes.get("output_norm.weight", 0))
                / MB,
                # f16 K and V for the default n_ctx (4096) per layer
                "kv_mb_per_layer": 4096 * n_embd_kv * 2 * 2 / MB,
                "built_s": rnd(b["seconds"]),
                "spec": spec,
            }
            m = self.models[key]
            figs[f"{key}_file_mb"] = rnd(m["file_mb"])
            figs[f"{key}_layers"] = m["n_layer"]
            if m["n_expert"]:
                figs[f"{key}_experts"] = m["n_expert"]
                figs[f"{key}_expert_mb"] = rnd(m["expert_mb"])
                figs[f"{key}_expert_tensors"] = m["expert_tensors"]
            figs[f"{key}_built_s"] = m["built_s"]
        return Row("models", PASS, figs, f"quant {QUANT}; sizes from the GGUF header")

    def moe_ngls(self) -> list[int]:
        """0 / 25 / 50 / 100% of the layers (--quick: none and all)."""
        n = int(self.need_model("moe")["n_layer"])
        return sorted({round(f * n) for f in ((0, 1.0) if self.quick else (0, 0.25, 0.5, 1.0))})

    def c_scaling(self) -> Row:
        self.need_gpu()
        m = self.need_model("moe")
        vram = {}
        expected = {}
        for ngl in self.moe_ngls():
            key = f"moe_ngl{ngl}"
            vram[ngl] = self.runs[key]["vram_mb"] if key in self.runs else None
            expected[ngl] = (
                sum(m["layer_mb"].get(i, 0.0) for i in range(ngl)) + ngl * m["kv_mb_per_layer"]
            )
        status, figs, note = judge_scaling(vram, expected)
        return Row("offload_scaling", status, figs, note)

    def c_smi(self) -> Row:
        self.need_gpu()
        status, figs, note = judge_smi(self.runs)
        context = self.runs.get("moe_ngl0", {}).get("vram_mb")
        if context is not None:
            figs["ngl0_vram_mb"] = context
            note += (
                f"; with no layer offloaded the worker still holds {context:.0f} MB "
                "(CUDA context, compute buffer)"
            )
        missing = {k: r.get("smi_note") for k, r in self.runs.items() if r.get("smi_note")}
        if missing:
            figs["smi_missing"] = missing
        return Row("vram_vs_nvidia_smi", status, figs, note)

    def c_saving(self, name: str, run_key: str, layers: int | None) -> Row:
        m = self.need_model("moe")
        off, on = self.need_run("moe_ngl_all", run_key)
        if layers is None:
            expected = m["expert_mb"]
            tensors = m["expert_tensors"]
        else:
            expected = sum(m["expert_mb_by_layer"].get(i, 0.0) for i in range(layers))
            tensors = m["expert_tensors"] * layers // max(m["n_layer"], 1)
        got_tensors = on.get("cpu_moe_tensors")
        tensors_ok = got_tensors == tensors
        extra = {"expected_cpu_tensors": tensors, "cpu_moe_tensors": got_tensors}
        if not self.gpu:
            note = self.gpu_note(
                f"{got_tensors} of {tensors} expected expert tensors kept on the CPU; "
                f"expected saving {expected:.0f} MB"
            )
            return Row(name, FAIL if not tensors_ok else SKIPPED, extra, note)
        allowance = max(m["expert_mb_by_layer"].values(), default=0.0)
        status, figs, note = judge_saving(
            off.get("vram_mb"), on.get("vram_mb"), expected, allowance
        )
        figs.update(extra)
        figs["tg_tps_off"], figs["tg_tps_on"] = off.get("tg_tps"), on.get("tg_tps")
        if not tensors_ok:
            status, note = FAIL, f"{note}; {got_tensors} tensors overridden, expected {tensors}"
        return Row(name, status, figs, note)

    def c_flash_attn(self) -> Row:
        self.need_model("moe")
        figs: dict[str, Any] = {}
        errors = []
        for fa in ("off", "on"):
            try:
                r = self.run_config(f"moe_fa_{fa}", "moe", n_gpu_layers=-1, flash_attn=fa)
                for k in ("pp_tps", "tg_tps", "vram_mb", "flash_attn", "backend"):
                    figs[f"fa_{fa}_{k}"] = r[k]
            except Exception as exc:
                errors.append(f"fa={fa}: {type(exc).__name__}: {str(exc)[:400]}")
        if not self.gpu:
            return Row("flash_attn", SKIPPED, figs, self.gpu_note("; ".join(errors)))
        if not self.args.fa_built:
            return Row(
                "flash_attn",
                SKIPPED,
                figs,
                "CUDA FA kernels not built (GGML_CUDA_FA=OFF: they are most of a CUDA "
                "build's compile time): "
                f"fa=on resolved to {figs.get('fa_on_flash_attn')!r} and its attention runs "
                "wherever ggml places it; rerun with GPU_CHECK_FA=on to compare "
                + "; ".join(errors),
            )
        ok = (
            not errors
            and figs.get("fa_on_flash_attn") == "on"
            and figs.get("fa_off_flash_attn") == "off"
        )
        return Row("flash_attn", PASS if ok else FAIL, figs, "; ".join(errors))

    def c_dense(self) -> Row:
        self.need_gpu()
        m = self.need_model("dense")
        r0, r_all = self.need_run("dense_ngl0", "dense_ngl_all")
        expected = (
            sum(m["layer_mb"].values()) + m["output_mb"] + m["n_layer"] * m["kv_mb_per_layer"]
        )
        if r0["vram_mb"] is None or r_all["vram_mb"] is None:
            return Row("dense_offload", FAIL, {}, "vram_mb absent")
        delta = r_all["vram_mb"] - r0["vram_mb"]
        figs = {"delta_mb": rnd(delta), "expected_mb": rnd(expected)}
        ok = abs(delta - expected) <= SCALING_TOLERANCE * expected + SCALING_SLACK_MB
        return Row("dense_offload", PASS if ok else FAIL, figs, "all layers + output vs none")

    def c_release_isolated(self) -> Row:
        self.need_gpu()
        levels = [
            (k, r.get("device_before_mb"), r.get("device_after_mb")) for k, r in self.runs.items()
        ]
        status, figs, note = judge_release(levels)
        return Row("vram_release_isolated", status, figs, note)

    def c_release_in_process(self) -> Row:
        m = self.need_model("moe")
        res = self.child(
            "release",
            {"path": m["path"], "params": {"n_gpu_layers": -1}, "cycles": 2},
            timeout=300,
        )
        figs = {k: rnd(v) for k, v in res.items()}
        if not self.gpu:
            return Row(
                "vram_release_in_process",
                SKIPPED,
                figs,
                self.gpu_note("2 load/close cycles in one process"),
            )
        needed = ("before", "loaded1", "after1", "loaded2", "after2")
        if any(res.get(k) is None for k in needed):
            return Row("vram_release_in_process", FAIL, figs, "device memory readings missing")
        freed = res["loaded1"] - res["after1"]
        # what ngl=-1 puts on the GPU: every layer and the output (token_embd stays on
        # the CPU); the KV cache and compute buffers come on top
        on_gpu = sum(m["layer_mb"].values()) + m["output_mb"]
        residual = res["after1"] - res["before"]
        figs.update(
            freed_mb=rnd(freed),
            weights_on_gpu_mb=rnd(on_gpu),
            residual_after_close_mb=rnd(residual),
        )
        ok = (
            abs(res["after2"] - res["after1"]) <= RELEASE_TOLERANCE_MB
            and freed >= (1 - SAVING_TOLERANCE) * on_gpu
        )
        note = (
            f"closing frees {freed:.0f} MB; the process keeps {residual:.0f} MB after close "
            "(its CUDA context), the same after a second load/close"
            if ok
            else "a second load/close in the same process did not return to the first's level"
        )
        return Row("vram_release_in_process", PASS if ok else FAIL, figs, note)

    def c_pytest(self, name: str, target: str) -> Row:
        if self.args.skip_pytest:
            raise Skip("--skip-pytest")
        base = Path(tempfile.mkdtemp(prefix="llmperf-gpu-baselines-"))
        cmd = [sys.executable, "-m", "pytest"]
        if not plugin_installed():
            cmd += ["-p", "pytest_llmperf.plugin.hooks", "-p", "pytest_llmperf.plugin.sweep"]
        cmd += [target, "-m", "gpu", "-p", "no:cacheprovider", "-q", "-rs"]
        cmd += ["--perf-missing=record", f"--perf-baseline-dir={base}"]
        timeout = max(20.0, min(420.0, self.time_left() - 10))
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=os.environ
            )
            output, rc = proc.stdout + proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as exc:
            output = f"{exc.stdout or ''}{exc.stderr or ''}"
            output = output if isinstance(output, str) else ""
            rc = -1
        from pytest_llmperf.fileio import write_atomic

        log = self.out / "pytest.log"
        earlier = log.read_text() if log.is_file() else ""
        took = time.perf_counter() - t0
        write_atomic(log, f"{earlier}$ {' '.join(cmd)}\n# exit {rc} after {took:.1f} s\n{output}\n")
        counts = parse_pytest_counts(output)
        figs: dict[str, Any] = {"exit": rc, **counts}
        for f in sorted(base.glob("*.json"))[:1]:
            # only letters, digits, '.', '_' and '-' come back from the device ('+' may
            # be in a machine id)
            dest = self.out / ("baseline-" + re.sub(r"[^A-Za-z0-9._-]", "_", f.name))
            write_atomic(dest, f.read_bytes())
            figs["baseline"] = dest.name
        shutil.rmtree(base, ignore_errors=True)
        reasons = sorted(set(re.findall(r"SKIPPED \[\d+\] [^:]+:\d+: (.*)", output)))
        if rc == -1:
            return Row(name, FAIL, figs, f"timed out after {timeout:.0f} s (see pytest.log)")
        if rc == 5:
            return Row(name, SKIPPED, figs, f"no test in {target}/ is marked gpu")
        if rc != 0:
            return Row(name, FAIL, figs, f"pytest exit {rc}: see pytest.log")
        if not self.gpu:
            return Row(name, SKIPPED, figs, f"{self.no_gpu}: {'; '.join(reasons)[:300]}")
        if counts.get("skipped") or not counts.get("passed"):
            return Row(name, FAIL, figs, f"tests skipped on a GPU: {'; '.join(reasons)[:300]}")
        return Row(name, PASS, figs, "")

    # -- the whole run -----------------------------------------------------------------
    def build_row(self) -> Row:
        a = self.args
        how = {0: "built here", 1: "reused a wheel built earlier", 2: "the prebuilt package"}
        figs = {"seconds": a.build_seconds, "cmake_args": a.cmake_args}
        return Row("build", PASS, figs, how.get(a.build_cached, ""))

    def run_all(self) -> int:
        self.rows.append(self.build_row())
        self.check("environment", self.c_environment, 5)
        self.check("cuda_backend", self.c_cuda_backend, 1)
        self.check("models", self.c_models, 30)
        if "moe" in self.models:
            for ngl in self.moe_ngls():
                pct = round(100 * ngl / self.models["moe"]["n_layer"])
                self.check(
                    f"moe_ngl{ngl}",
                    lambda ngl=ngl, pct=pct: self.tagged(
                        self.measured_row(f"moe_ngl{ngl}", "moe", ngl > 0, n_gpu_layers=ngl),
                        f"{pct}% of the layers",
                    ),
                    20,
                )
        self.check(
            "moe_ngl_all",
            lambda: self.tagged(
                self.measured_row("moe_ngl_all", "moe", True, n_gpu_layers=-1),
                "all layers and the output",
            ),
            20,
        )
        self.check("offload_scaling", self.c_scaling, 1)
        self.check(
            "moe_cpu_moe",
            lambda: self.measured_row("moe_cpu_moe", "moe", True, n_gpu_layers=-1, cpu_moe=True),
            20,
        )
        self.check(
            "cpu_moe_saving", lambda: self.c_saving("cpu_moe_saving", "moe_cpu_moe", None), 1
        )
        half = max(1, int(self.models.get("moe", {}).get("n_layer", 2)) // 2)
        self.check(
            f"moe_n_cpu_moe{half}",
            lambda: self.measured_row(
                f"moe_n_cpu_moe{half}", "moe", True, n_gpu_layers=-1, n_cpu_moe=half
            ),
            20,
        )
        self.check(
            "n_cpu_moe_saving",
            lambda: self.c_saving("n_cpu_moe_saving", f"moe_n_cpu_moe{half}", half),
            1,
        )
        self.check(
            "dense_ngl0",
            lambda: self.measured_row("dense_ngl0", "dense", False, n_gpu_layers=0),
            15,
        )
        self.check(
            "dense_ngl_all",
            lambda: self.measured_row("dense_ngl_all", "dense", True, n_gpu_layers=-1),
            15,
        )
        self.check("dense_offload", self.c_dense, 1)
        self.check("flash_attn", self.c_flash_attn, 30)
        self.check("vram_vs_nvidia_smi", self.c_smi, 1)
        self.check("vram_release_isolated", self.c_release_isolated, 1)
        self.check("vram_release_in_process", self.c_release_in_process, 20)
        self.check(
            "pytest_perf_tests_gpu",
            lambda: self.c_pytest("pytest_perf_tests_gpu", "perf_tests"),
            45,
        )
        self.check("pytest_tests_gpu", lambda: self.c_pytest("pytest_tests_gpu", "tests"), 30)
        self.write()
        print(self.markdown(), flush=True)
        return 1 if any(r.status == FAIL for r in self.rows) else 0

    @staticmethod
    def tagged(row: Row, text: str) -> Row:
        row.notes = f"{text}; {row.notes}".rstrip("; ")
        return row

    # -- the summary ---------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        out = {PASS: 0, FAIL: 0, SKIPPED: 0}
        for r in self.rows:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "date": now_utc(),
            "mode": self.args.mode,
            "quick": self.quick,
            "ok": not any(r.status == FAIL for r in self.rows),
            "counts": self.counts(),
            "checks_seconds": round(time.time() - self.started, 1),
            "workload": self.workload,
            "repetitions": self.repetitions,
            "warmup": self.warmup,
            "tolerances": {
                "smi": SMI_TOLERANCE,
                "cpu_moe_saving": SAVING_TOLERANCE,
                "release_mb": RELEASE_TOLERANCE_MB,
                "scaling": SCALING_TOLERANCE,
                "scaling_slack_mb": SCALING_SLACK_MB,
            },
            "environment": self.env,
            "models": {
                k: {kk: vv for kk, vv in v.items() if kk not in ("layer_mb", "expert_mb_by_layer")}
                for k, v in self.models.items()
            },
            "rows": [asdict(r) for r in self.rows],
            "runs": self.runs,
        }

    def markdown(self) -> str:
        env = self.env
        gpu = env.get("gpu") or ("no GPU" if self.args.mode == "cpu" else "GPU not found")
        date = dt.date.today().isoformat()
        build = "CUDA" if self.args.mode == "cuda" else "CPU"
        lines = [
            f"### pytest-llmperf GPU check: {gpu}, {date}",
            "",
            f"llama-cpp-python {env.get('llama_cpp_python', '?')} ({build} build"
            + (f", driver {env['gpu_driver']}" if env.get("gpu_driver") else "")
            + f"), Python {env.get('python', '?')}, {env.get('cores', '?')} cores. "
            + f"Workload {self.workload}, {self.repetitions} repetitions after "
            + f"{self.warmup} warm-up, each configuration in its own worker process.",
        ]
        moe = self.models.get("moe")
        if moe:
            s = moe["spec"]
            lines.append(
                f"MoE model: {s['n_layer']} layers x {s['n_expert']} experts (FFN {s['n_ff']}, "
                f"{s['n_expert_used']} used), width {s['n_embd']}, {QUANT}: "
                f"{moe['file_mb']:.0f} MiB file, expert tensors {moe['expert_mb']:.0f} MiB "
                "(GGUF header)."
            )
        lines += [
            "",
            "| check | status | load ms | pp t/s | tg t/s | VRAM MB | details |",
            "| --- | --- | ---: | ---: | ---: | ---: | --- |",
        ]
        shown = ("load_ms", "pp_tps", "tg_tps", "vram_mb")
        for r in self.rows:
            f = r.figures
            cells = [_cell(f.get(k)) for k in shown]
            detail = ", ".join(
                f"{k}={_cell(v)}"
                for k, v in f.items()
                if k not in shown and k not in _HIDDEN and v is not None
            )
            text = "; ".join(x for x in (f.get("params", ""), detail, r.notes) if x)
            text = text.replace("|", "/").replace("\n", " ")
            lines.append(f"| {r.name} | {r.status} | " + " | ".join(cells) + f" | {text[:400]} |")
        c = self.counts()
        lines += [
            "",
            f"{c[PASS]} pass, {c[FAIL]} fail, {c[SKIPPED]} skipped; build "
            f"{self.args.build_seconds:.0f} s{' (reused)' if self.args.build_cached else ''}, "
            f"checks {time.time() - self.started:.0f} s.",
        ]
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        from pytest_llmperf.fileio import write_atomic

        for name, text in (
            ("gpu-summary.json", json.dumps(self.summary(), indent=1, default=str) + "\n"),
            ("gpu-summary.md", self.markdown()),
        ):
            write_atomic(self.out / name, text)


#: figures left out of the table's details column (they stay in the JSON)
_HIDDEN = {
    "traceback", "params", "model", "diffs_mb", "smi_missing", "llama_devices", "cmake_args",
    "device_before_mb", "device_loaded_mb", "device_after_mb", "vram_mode", "vram_absent",
    "smi_note", "llama_tg_tps", "n_threads", "rss_peak_mb",
}  # fmt: skip


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, list):
        return " + ".join(str(v) for v in value)
    return str(value)


def tensor_bytes(path: str) -> dict[str, int]:
    """Tensor name -> bytes, from the GGUF header (the ``gguf`` package's reader)."""
    import gguf

    reader = gguf.GGUFReader(path, "r")
    return {str(t.name): int(t.n_bytes) for t in reader.tensors}


def plugin_installed() -> bool:
    """Is pytest-llmperf installed (its pytest11 entry point), or must pytest get -p?"""
    from importlib import metadata

    return any(ep.name == "llmperf" for ep in metadata.entry_points(group="pytest11"))


# -- the child processes -----------------------------------------------------------------


def child_main(kind: str, payload: dict[str, Any]) -> Any:
    if kind == "env":
        import llama_cpp

        from pytest_llmperf.native import llama_lib

        lc = llama_lib.load()
        return {
            "version": llama_lib.version(),
            "file": str(Path(llama_cpp.__file__).parent),
            "supports_gpu_offload": bool(lc.llama_supports_gpu_offload()),
            "devices": [
                {k: d[k] for k in ("name", "description", "type")} for d in llama_lib.devices()
            ],
            "system_info": llama_lib.system_info(),
        }
    if kind == "build-models":
        from pytest_llmperf.machine import tiny

        out = {}
        for key, (family, spec) in payload["models"].items():
            info = tiny.ensure_model(tiny.TinySpec(**spec), payload["quant"], family=family)
            out[key] = {"path": str(info.path), "built": info.built, "seconds": info.seconds}
        return out
    if kind == "release":
        from pytest_llmperf.backends.engine import LoadedModel
        from pytest_llmperf.machine import devices
        from pytest_llmperf.model.params import LoadParams
        from pytest_llmperf.model.workloads import Workload

        def used() -> float | None:
            try:
                mod = devices.nvml()
            except devices.NVMLUnavailable:
                return None
            idx = devices.visible_gpu_indices(mod)
            return (
                sum(
                    float(mod.nvmlDeviceGetMemoryInfo(mod.nvmlDeviceGetHandleByIndex(i)).used)
                    for i in idx
                )
                / MB
            )

        levels: dict[str, float | None] = {"before": used()}
        for i in range(1, int(payload["cycles"]) + 1):
            model = LoadedModel(payload["path"], LoadParams(**payload["params"]))
            model.run(Workload.parse("tg8"), repetitions=1, warmup=0)
            levels[f"loaded{i}"] = used()
            model.close()
            time.sleep(0.5)
            levels[f"after{i}"] = used()
        return levels
    raise SystemExit(f"unknown child kind {kind!r}")


# -- entry point -----------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", help="where the summary and logs go")
    p.add_argument("--mode", choices=("cuda", "cpu"), default="cuda")
    p.add_argument(
        "--deadline", type=float, default=0.0, help="epoch seconds: skip what would run past it"
    )
    p.add_argument("--quick", action="store_true", help="small models, short workload")
    p.add_argument("--skip-pytest", action="store_true", help="leave out the two pytest runs")
    p.add_argument("--build-seconds", type=float, default=0.0)
    p.add_argument("--build-cached", type=int, default=0, help="1: reused, 2: prebuilt")
    p.add_argument("--cmake-args", default="")
    p.add_argument("--fa-built", type=int, default=0, help="1: CUDA FA kernels were built")
    p.add_argument("--build-failed", default="", help="the build failed: write only that")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    p.add_argument("--child-args", default="{}", help=argparse.SUPPRESS)
    p.add_argument("--child-out", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.child and not args.out:
        p.error("--out is required")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        from pytest_llmperf.fileio import write_atomic

        result = child_main(args.child, json.loads(args.child_args))
        write_atomic(args.child_out, json.dumps(result, default=str))
        return 0
    checks = GPUChecks(args)
    if args.build_failed:
        checks.rows.append(Row("build", FAIL, {"seconds": args.build_seconds}, args.build_failed))
        checks.write()
        print(checks.markdown(), flush=True)
        return 1
    return checks.run_all()


if __name__ == "__main__":
    sys.exit(main())
