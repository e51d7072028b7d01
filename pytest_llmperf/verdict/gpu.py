"""The GPU check's verdicts (scripts/gpu_checks.py, docs/GPU.md): pure rules over figures
measured on a GPU machine (tests/unit/test_gpu_verdicts.py tries each on figures made by hand).

Each check is a :class:`Row` (``pass``, ``fail`` or ``skipped``, its figures, a note); a
judge takes the figures the check read and returns ``(status, figures, note)``. What a
model should move between the CPU and the GPU comes from its GGUF header
(:class:`~pytest_llmperf.verdict.gpu_bytes.ModelBytes`); the tolerances say how far a
reading may be from it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_llmperf.verdict.gpu_bytes import ModelBytes, rnd

PASS, FAIL, SKIPPED = "pass", "fail", "skipped"

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

TOLERANCES: dict[str, float] = {
    "smi": SMI_TOLERANCE,
    "cpu_moe_saving": SAVING_TOLERANCE,
    "release_mb": RELEASE_TOLERANCE_MB,
    "scaling": SCALING_TOLERANCE,
    "scaling_slack_mb": SCALING_SLACK_MB,
}

#: a judge's answer: status, figures, note
Verdict = tuple[str, dict[str, Any], str]


@dataclass
class Row:
    """One check of the summary."""

    name: str
    status: str
    figures: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    seconds: float = 0.0


# -- the judges ------------------------------------------------------------------------


def judge_measured(figures: Mapping[str, Any], n_gpu_layers: int) -> Verdict:
    """A configuration run on a GPU: vram_mb present, and offloaded layers on CUDA."""
    problems = []
    if figures.get("vram_mb") is None:
        problems.append(f"vram_mb absent: {figures.get('vram_absent')}")
    if n_gpu_layers != 0 and "CUDA" not in str(figures.get("backend")):
        problems.append(f"backend {figures.get('backend')!r}: no CUDA device holds layers")
    return (FAIL if problems else PASS), dict(figures), "; ".join(problems)


def judge_smi(runs: Mapping[str, Mapping[str, Any]]) -> Verdict:
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
) -> Verdict:
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


def judge_cpu_moe(
    off: Mapping[str, Any],
    on: Mapping[str, Any],
    model: ModelBytes,
    layers: int | None,
    gpu: bool,
) -> Verdict:
    """cpu-moe (``layers`` None) or n_cpu_moe=layers at full offload against full offload:
    exactly the expected expert tensors overridden to the CPU, and (on a GPU) the VRAM
    saving their bytes. Without a GPU only the tensors are judged (``skipped`` when right)."""
    expected, tensors = model.cpu_experts(layers)
    got = on.get("cpu_moe_tensors")
    tensors_ok = got == tensors
    extra = {"expected_cpu_tensors": tensors, "cpu_moe_tensors": got}
    if not gpu:
        note = (
            f"{got} of {tensors} expected expert tensors kept on the CPU; "
            f"expected saving {expected:.0f} MB"
        )
        return (FAIL if not tensors_ok else SKIPPED), extra, note
    allowance = max(model.expert_mb_by_layer.values(), default=0.0)
    status, figs, note = judge_saving(off.get("vram_mb"), on.get("vram_mb"), expected, allowance)
    figs.update(extra)
    figs["tg_tps_off"], figs["tg_tps_on"] = off.get("tg_tps"), on.get("tg_tps")
    if not tensors_ok:
        status, note = FAIL, f"{note}; {got} tensors overridden, expected {tensors}"
    return status, figs, note


def judge_scaling(
    vram_by_ngl: Mapping[int, float | None], expected_by_ngl: Mapping[int, float]
) -> Verdict:
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


def judge_dense(vram_none: float | None, vram_all: float | None, expected_mb: float) -> Verdict:
    """The dense model fully offloaded against not at all: its layers, output and KV."""
    if vram_none is None or vram_all is None:
        return FAIL, {}, "vram_mb absent"
    delta = vram_all - vram_none
    figs = {"delta_mb": rnd(delta), "expected_mb": rnd(expected_mb)}
    ok = abs(delta - expected_mb) <= SCALING_TOLERANCE * expected_mb + SCALING_SLACK_MB
    return (PASS if ok else FAIL), figs, "all layers + output vs none"


def judge_release(
    levels: list[tuple[str, float | None, float | None]],
) -> Verdict:
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


#: the device memory readings of the load/close cycles in one process, in order
CYCLE_LEVELS = ("before", "loaded", "reloaded", "after")


def judge_release_in_process(
    levels: Mapping[str, float | None], weights_on_gpu_mb: float, cycles: int
) -> Verdict:
    """Load/close cycles in one process: device memory ``before`` the worker started,
    ``loaded`` (the model loaded), ``reloaded`` (after ``cycles`` more loads and closes of
    the model in the same process, loaded again) and ``after`` the worker closed. The
    reloaded level must be the loaded one (closing a model frees what loading it took),
    and closing must free at least 90% of the weights on the GPU."""
    figs: dict[str, Any] = {k: rnd(levels.get(k)) for k in CYCLE_LEVELS}
    before, loaded, reloaded, after = (levels.get(k) for k in CYCLE_LEVELS)
    if before is None or loaded is None or reloaded is None or after is None:
        return FAIL, figs, "device memory readings missing"
    freed = reloaded - after
    figs.update(
        cycle_drift_mb=rnd(reloaded - loaded),
        freed_mb=rnd(freed),
        weights_on_gpu_mb=rnd(weights_on_gpu_mb),
        residual_after_close_mb=rnd(after - before),
    )
    if abs(reloaded - loaded) > RELEASE_TOLERANCE_MB:
        return (
            FAIL,
            figs,
            f"{cycles} load/close cycles in one process left {reloaded - loaded:+.0f} MB: "
            "closing a model did not free what its load took",
        )
    if freed < (1 - SAVING_TOLERANCE) * weights_on_gpu_mb:
        return (
            FAIL,
            figs,
            f"closing freed {freed:.0f} MB, less than the {weights_on_gpu_mb:.0f} MB of "
            "weights on the GPU",
        )
    return (
        PASS,
        figs,
        f"after {cycles} load/close cycles in one process the model takes what its first "
        f"load took ({reloaded - loaded:+.0f} MB); closing frees {freed:.0f} MB, "
        f"{after - before:+.0f} MB left",
    )


def judge_flash_attn(figures: Mapping[str, Any], errors: list[str], fa_built: bool) -> Verdict:
    """Flash attention off and on at full offload, on a GPU: both run and resolve as
    asked; ``skipped`` when the CUDA FA kernels were not built."""
    figs = dict(figures)
    if not fa_built:
        return (
            SKIPPED,
            figs,
            "CUDA FA kernels not built (GGML_CUDA_FA=OFF: they are most of a CUDA "
            "build's compile time): "
            f"fa=on resolved to {figs.get('fa_on_flash_attn')!r} and its attention runs "
            "wherever ggml places it; rerun with GPU_CHECK_FA=on to compare " + "; ".join(errors),
        )
    ok = (
        not errors
        and figs.get("fa_on_flash_attn") == "on"
        and figs.get("fa_off_flash_attn") == "off"
    )
    return (PASS if ok else FAIL), figs, "; ".join(errors)


def judge_pytest(
    rc: int, output: str, target: str, gpu: bool, no_gpu: str, timeout_s: float
) -> Verdict:
    """A ``pytest TARGET -m gpu`` run (rc -1: timed out): on a GPU every test passes and
    none is skipped; without one the run is ``skipped`` with pytest's reasons."""
    counts = parse_pytest_counts(output)
    figs: dict[str, Any] = {"exit": rc, **counts}
    reasons = "; ".join(sorted(set(re.findall(r"SKIPPED \[\d+\] [^:]+:\d+: (.*)", output))))
    if rc == -1:
        return FAIL, figs, f"timed out after {timeout_s:.0f} s (see pytest.log)"
    if rc == 5:
        return SKIPPED, figs, f"no test in {target}/ is marked gpu"
    if rc != 0:
        return FAIL, figs, f"pytest exit {rc}: see pytest.log"
    if not gpu:
        return SKIPPED, figs, f"{no_gpu}: {reasons[:300]}"
    if counts.get("skipped") or not counts.get("passed"):
        return FAIL, figs, f"tests skipped on a GPU: {reasons[:300]}"
    return PASS, figs, ""


# -- parsers ---------------------------------------------------------------------------


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
