#!/usr/bin/env python3
"""The checks behind scripts/gpu-check.sh (docs/GPU.md): pytest-llmperf's GPU code paths on
a real GPU, as a driver over the package's own code.

``llmperf tiny-model`` builds the models (in a child process); every configuration runs in
its own ``IsolatedRunner`` worker, whose load reply says what llama.cpp offers (ggml
devices, GPU offload) and whose ``Measurement`` gives load_ms, pp_tps, tg_tps and vram_mb;
device memory comes from ``devices.device_used_mb()`` (NVML), the verdicts from
``pytest_llmperf.verdict.gpu``. This process never loads llama.cpp (no CUDA context here;
a native crash costs one check). A check that fails or crashes becomes a ``fail`` row and
the next one runs; the summary is rewritten after every row, so a run stopped at its
deadline still leaves one: OUT/gpu-summary.json (every row, the environment, the raw
runs), OUT/gpu-summary.md (the table for the docs), OUT/pytest.log and OUT/baseline-*.json
(from the two ``pytest -m gpu`` runs).

``--mode cpu`` runs the same flow on a CPU build (every configuration on the CPU; the
checks that need a GPU say ``skipped: no GPU``); ``--quick`` uses the small built-in tiny
models and a short workload (tests/e2e/test_gpu_check.py). gpu-check.sh puts the repository
and the installed bundle on PYTHONPATH:

    python scripts/gpu_checks.py --out DIR --mode cuda|cpu [--deadline EPOCH] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
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
from dataclasses import asdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pytest_llmperf.backends.runner import IsolatedRunner  # noqa: E402
from pytest_llmperf.fileio import write_atomic  # noqa: E402
from pytest_llmperf.machine import devices, gguf_info  # noqa: E402
from pytest_llmperf.model.params import LoadParams  # noqa: E402
from pytest_llmperf.model.workloads import Workload  # noqa: E402
from pytest_llmperf.verdict import gpu as verdicts  # noqa: E402
from pytest_llmperf.verdict.gpu import FAIL, PASS, SKIPPED, Row  # noqa: E402
from pytest_llmperf.verdict.gpu_bytes import MB, ModelBytes, rnd  # noqa: E402

QUANT = "q8_0"
#: the MoE model of the full check: 8 layers x 16 experts (FFN 1024) at width 1024; in
#: q8_0 its expert tensors are 408 MiB (51 MiB a layer), far above NVML's granularity
BIG_MOE = {
    "n_layer": 8, "n_embd": 1024, "n_ff": 1024, "n_head": 16, "n_head_kv": 4, "n_expert": 16,
    "n_expert_used": 4,
}  # fmt: skip


class Skip(Exception):
    """Raised by a check that cannot apply here; the row becomes ``skipped``."""


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def smi(*args: str) -> tuple[str, str]:
    """nvidia-smi's output, or ("", why not)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return "", "nvidia-smi not found"
    try:
        proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "", f"nvidia-smi failed: {exc}"
    return proc.stdout, f"rc {proc.returncode}"


class GPUChecks:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.rows: list[Row] = []
        self.env: dict[str, Any] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.built: dict[str, dict[str, Any]] | str | None = None
        self.gpu = False
        self.no_gpu = "no GPU (--cpu dry run)" if args.mode == "cpu" else "no GPU"
        self.no_gpu_reason = self.no_gpu
        self.started = time.time()
        self.quick = bool(args.quick)
        self.workload = "pp32+tg8" if self.quick else "pp512+tg128"
        self.repetitions = 1 if self.quick else 3
        self.warmup = 0 if self.quick else 1

    # -- bookkeeping -------------------------------------------------------------------
    def time_left(self) -> float:
        return float(self.args.deadline - time.time()) if self.args.deadline else 1e9

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

    # -- the package's machinery: the tiny-model command, workers, NVML -----------------
    def built_models(self) -> dict[str, dict[str, Any]]:
        """Each model built (or reused) by ``llmperf tiny-model --json`` in a child process
        (llama.cpp quantizes: never in this process). Once; a failure is kept."""
        if isinstance(self.built, str):
            raise RuntimeError(self.built)
        if self.built is None:
            moe = ("tiny-moe", {}) if self.quick else ("gpu-check-moe", BIG_MOE)
            try:
                self.built = {
                    "moe": self.tiny_model("moe", *moe),
                    "dense": self.tiny_model("dense", "tiny-dense", {}),
                }
            except Exception as exc:
                self.built = f"the models were not built: {type(exc).__name__}: {exc}"
                raise
        return self.built

    def tiny_model(self, kind: str, family: str, spec: dict[str, int]) -> dict[str, Any]:
        cmd = [sys.executable, "-m", "pytest_llmperf.cli", "tiny-model", "--json"]
        cmd += ["--variant", f"{kind}-{QUANT}", "--family", family]
        for k, v in spec.items():
            cmd += [f"--{k.replace('_', '-')}", str(v)]
        timeout = max(10.0, min(600.0, self.time_left()))
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-12:])
            raise RuntimeError(f"llmperf tiny-model exited with {proc.returncode}:\n{tail}")
        built: dict[str, Any] = json.loads(lines[-1])
        return built

    def runner(self, model: dict[str, Any], params: LoadParams) -> IsolatedRunner:
        timeout = max(30.0, min(600.0, self.time_left() - 5))
        return IsolatedRunner(model["path"], params, model_id=model["id"], timeout_s=timeout)

    def device_after_mb(self, before: float | None) -> float | None:
        """Device memory after a worker exited: the driver frees it within a moment."""
        value = devices.device_used_mb()
        deadline = time.time() + 5.0
        while (
            value is not None
            and before is not None
            and value > before + verdicts.RELEASE_TOLERANCE_MB
            and time.time() < deadline
        ):
            time.sleep(0.25)
            value = devices.device_used_mb()
        return value

    def smi_process_mb(self, pid: int) -> tuple[float | None, str]:
        text, why = smi("--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits")
        apps = verdicts.parse_smi_apps(text)
        if pid in apps:
            return apps[pid], ""
        if not text and not why.startswith("rc"):
            return None, why
        return None, f"pid {pid} not in nvidia-smi's list {sorted(apps)} ({why})"

    # -- one configuration, the plugin's way --------------------------------------------
    def run_config(self, key: str, model: str, **params: Any) -> dict[str, Any]:
        info = self.need_model(model)
        load_params = LoadParams(**params)
        before = devices.device_used_mb()
        runner = self.runner(info, load_params)
        try:
            workload = Workload.parse(self.workload)
            m = runner.measure(workload, repetitions=self.repetitions, warmup=self.warmup)
            pid = runner.pid or 0
            smi_mb, smi_note = self.smi_process_mb(pid) if self.gpu else (None, self.no_gpu)
            loaded = devices.device_used_mb()
        finally:
            runner.close()
        after = self.device_after_mb(before)
        res = m.resolved
        figs = {
            "model": model,
            "params": load_params.to_args() or "defaults",
            "load_ms": rnd(runner.load_ms),
            **{k: rnd(m.median(k)) for k in ("pp_tps", "tg_tps", "vram_mb")},
            "smi_mb": rnd(smi_mb),
            "device_before_mb": rnd(before),
            "device_loaded_mb": rnd(loaded),
            "device_after_mb": rnd(after),
            "device_delta_mb": rnd(loaded - before)
            if loaded is not None and before is not None
            else None,
            **{k: res.get(k) for k in ("backend", "flash_attn", "cpu_moe_tensors", "n_threads")},
            "vram_mode": res.get("vram_mode"),
            **{k: rnd(m.median(k)) for k in ("llama_tg_tps", "rss_peak_mb")},
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
        return Row(key, *verdicts.judge_measured(figs, params.get("n_gpu_layers", 0)))

    # -- rows --------------------------------------------------------------------------
    def c_environment(self) -> Row:
        gpu, reason = devices.gpu_info()
        query = smi("--query-gpu=name,driver_version,memory.total", "--format=csv,noheader")
        # what llama.cpp offers, from a worker's load reply (the dense model on the CPU)
        runner = self.runner({"id": "tiny-dense", **self.built_models()["dense"]}, LoadParams())
        runner.close()
        devs = runner.resolved["ggml_devices"]
        offload = bool(runner.resolved["supports_gpu_offload"])
        spec = importlib.util.find_spec("llama_cpp")  # found, not imported
        cuda_devices = [d for d in devs if d["type"] in (1, 3)]
        self.env.update(
            python=sys.version.split()[0],
            executable=sys.executable,
            llama_cpp_python=runner.software.get("llama_cpp"),
            llama_cpp_file=str(Path(spec.origin).parent) if spec and spec.origin else None,
            supports_gpu_offload=offload,
            llama_devices=devs,
            system_info=runner.software.get("llama_system_info"),
            gpu=gpu.name if gpu else None,
            gpu_driver=gpu.driver if gpu else None,
            gpu_total_mb=rnd(gpu.total_mb) if gpu else None,
            gpu_absent_reason=reason or None,
            nvidia_smi=query[0].strip() or None,
            nvcc=os.environ.get("GPU_CHECK_NVCC") or None,
            cores=os.cpu_count(),
        )
        self.gpu = bool(gpu and offload and cuda_devices)
        if self.args.mode == "cuda" and not self.gpu:
            why = [reason] if reason else []
            if not offload or not cuda_devices:
                why.append("llama.cpp sees no GPU device (llama_supports_gpu_offload is false)")
            self.no_gpu_reason = "no usable GPU: " + "; ".join(why)
            self.no_gpu = "no GPU (see cuda_backend)"
        figs = {
            "gpu": self.env["gpu"],
            "driver": self.env["gpu_driver"],
            "gpu_total_mb": self.env["gpu_total_mb"],
            "llama_cpp_python": self.env["llama_cpp_python"],
            "llama_devices": [f"{d['name']} ({d['description']})" for d in devs],
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
        figs: dict[str, Any] = {}
        for key, b in self.built_models().items():
            info = gguf_info.inspect(b["path"])
            sizes = {t.name: t.n_bytes or 0 for t in gguf_info.tensor_table(b["path"]).tensors}
            spec = b["spec"]
            n_embd_kv = spec["n_embd"] // spec["n_head"] * spec["n_head_kv"]
            mb = ModelBytes.of(sizes, info.expert_tensors, info.n_layer, n_embd_kv)
            m = self.models[key] = {
                "id": f"{b['family']}-{QUANT}",
                "path": b["path"],
                "n_layer": info.n_layer,
                "n_expert": info.n_expert,
                "file_mb": info.file_size / MB,
                "expert_tensors": mb.expert_tensors,
                "expert_mb": mb.expert_mb,
                "output_mb": mb.output_mb,
                # f16 K and V for the default n_ctx (4096) per layer
                "kv_mb_per_layer": mb.kv_mb_per_layer,
                "built_s": rnd(b["seconds"]),
                "spec": spec,
                "bytes": mb,
            }
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
        mb: ModelBytes = self.need_model("moe")["bytes"]
        ngls = self.moe_ngls()
        vram = {n: self.runs.get(f"moe_ngl{n}", {}).get("vram_mb") for n in ngls}
        return Row(
            "offload_scaling",
            *verdicts.judge_scaling(vram, {n: mb.first_layers_mb(n) for n in ngls}),
        )

    def c_smi(self) -> Row:
        self.need_gpu()
        status, figs, note = verdicts.judge_smi(self.runs)
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
        mb: ModelBytes = self.need_model("moe")["bytes"]
        off, on = self.need_run("moe_ngl_all", run_key)
        status, figs, note = verdicts.judge_cpu_moe(off, on, mb, layers, self.gpu)
        return Row(name, status, figs, self.gpu_note(note) if not self.gpu else note)

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
        return Row("flash_attn", *verdicts.judge_flash_attn(figs, errors, bool(self.args.fa_built)))

    def c_dense(self) -> Row:
        self.need_gpu()
        mb: ModelBytes = self.need_model("dense")["bytes"]
        r0, r_all = self.need_run("dense_ngl0", "dense_ngl_all")
        return Row(
            "dense_offload",
            *verdicts.judge_dense(r0["vram_mb"], r_all["vram_mb"], mb.all_layers_mb),
        )

    def c_release_isolated(self) -> Row:
        self.need_gpu()
        levels = [
            (k, r.get("device_before_mb"), r.get("device_after_mb")) for k, r in self.runs.items()
        ]
        return Row("vram_release_isolated", *verdicts.judge_release(levels))

    def c_release_in_process(self) -> Row:
        m = self.need_model("moe")
        cycles = 2
        levels = {"before": devices.device_used_mb()}
        runner = self.runner(m, LoadParams(n_gpu_layers=-1))
        try:
            runner.measure(Workload.parse("tg8"), repetitions=1, warmup=0)
            levels["loaded"] = devices.device_used_mb()
            # the load workload: the worker closes the model and loads it again, `cycles`
            # times in its one process (the last load stays)
            runner.measure_load(repetitions=cycles - 1)
            levels["reloaded"] = devices.device_used_mb()
        finally:
            runner.close()
        levels["after"] = self.device_after_mb(levels["before"])
        if not self.gpu:
            note = self.gpu_note(f"{cycles} load/close cycles in one worker process")
            return Row(
                "vram_release_in_process", SKIPPED, {k: rnd(v) for k, v in levels.items()}, note
            )
        verdict = verdicts.judge_release_in_process(levels, m["bytes"].weights_on_gpu_mb, cycles)
        return Row("vram_release_in_process", *verdict)

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
        path = self.out / "pytest.log"
        earlier = path.read_text() if path.is_file() else ""
        took = time.perf_counter() - t0
        write_atomic(
            path, f"{earlier}$ {' '.join(cmd)}\n# exit {rc} after {took:.1f} s\n{output}\n"
        )
        status, figs, note = verdicts.judge_pytest(
            rc, output, target, self.gpu, self.no_gpu, timeout
        )
        for f in sorted(base.glob("*.json"))[:1]:
            # only letters, digits, '.', '_' and '-' come back from the device ('+' may
            # be in a machine id)
            dest = self.out / ("baseline-" + re.sub(r"[^A-Za-z0-9._-]", "_", f.name))
            write_atomic(dest, f.read_bytes())
            figs["baseline"] = dest.name
        shutil.rmtree(base, ignore_errors=True)
        return Row(name, status, figs, note)

    # -- the whole run: the order of the checks -------------------------------------------
    def build_row(self) -> Row:
        a = self.args
        how = {0: "built here", 1: "reused a wheel built earlier", 2: "the prebuilt package"}
        figs = {"seconds": a.build_seconds, "cmake_args": a.cmake_args}
        return Row("build", PASS, figs, how.get(a.build_cached, ""))

    def config(
        self, key: str, model: str, gpu_only: bool, need_s: float, tag: str = "", **params: Any
    ) -> None:
        """One configuration's row: measured in its own worker, judged, tagged."""
        self.check(
            key, lambda: tagged(self.measured_row(key, model, gpu_only, **params), tag), need_s
        )

    def run_all(self) -> int:
        self.rows.append(self.build_row())
        # the environment's worker needs a model: it builds them (the models row reports it)
        self.check("environment", self.c_environment, 30)
        self.check("cuda_backend", self.c_cuda_backend, 1)
        self.check("models", self.c_models, 5 if isinstance(self.built, dict) else 30)
        if "moe" in self.models:
            for ngl in self.moe_ngls():
                pct = round(100 * ngl / self.models["moe"]["n_layer"])
                self.config(
                    f"moe_ngl{ngl}", "moe", ngl > 0, 20, f"{pct}% of the layers", n_gpu_layers=ngl
                )
        self.config("moe_ngl_all", "moe", True, 20, "all layers and the output", n_gpu_layers=-1)
        self.check("offload_scaling", self.c_scaling, 1)
        self.config("moe_cpu_moe", "moe", True, 20, n_gpu_layers=-1, cpu_moe=True)
        self.check(
            "cpu_moe_saving", lambda: self.c_saving("cpu_moe_saving", "moe_cpu_moe", None), 1
        )
        half = max(1, int(self.models.get("moe", {}).get("n_layer", 2)) // 2)
        self.config(f"moe_n_cpu_moe{half}", "moe", True, 20, n_gpu_layers=-1, n_cpu_moe=half)
        self.check(
            "n_cpu_moe_saving",
            lambda: self.c_saving("n_cpu_moe_saving", f"moe_n_cpu_moe{half}", half),
            1,
        )
        self.config("dense_ngl0", "dense", False, 15, n_gpu_layers=0)
        self.config("dense_ngl_all", "dense", True, 15, n_gpu_layers=-1)
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
            "tolerances": dict(verdicts.TOLERANCES),
            "environment": self.env,
            "models": {
                k: {kk: vv for kk, vv in v.items() if kk != "bytes"} for k, v in self.models.items()
            },
            "rows": [asdict(r) for r in self.rows],
            "runs": self.runs,
        }

    def markdown(self) -> str:
        env = self.env
        gpu = env.get("gpu") or ("no GPU" if self.args.mode == "cpu" else "GPU not found")
        build = "CUDA" if self.args.mode == "cuda" else "CPU"
        lines = [
            f"### pytest-llmperf GPU check: {gpu}, {dt.date.today().isoformat()}",
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
        summary = json.dumps(self.summary(), indent=1, default=str) + "\n"
        write_atomic(self.out / "gpu-summary.json", summary)
        write_atomic(self.out / "gpu-summary.md", self.markdown())


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


def tagged(row: Row, text: str) -> Row:
    if text:
        row.notes = f"{text}; {row.notes}".rstrip("; ")
    return row


def plugin_installed() -> bool:
    """Is pytest-llmperf installed (its pytest11 entry point), or must pytest get -p?"""
    from importlib import metadata

    return any(ep.name == "llmperf" for ep in metadata.entry_points(group="pytest11"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", required=True, help="where the summary and logs go")
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
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    checks = GPUChecks(args)
    if args.build_failed:
        checks.rows.append(Row("build", FAIL, {"seconds": args.build_seconds}, args.build_failed))
        checks.write()
        print(checks.markdown(), flush=True)
        return 1
    return checks.run_all()


if __name__ == "__main__":
    sys.exit(main())
