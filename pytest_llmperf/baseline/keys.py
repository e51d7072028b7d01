"""What makes two measurements comparable: the strict fingerprint fields and the key.

:data:`STRICT_FIELDS` must be equal for two measurements to be compared at all: they make
up the entry's key (:func:`baseline_key`), so a change of model id or quantization, load
params, workloads, build, CPU (model name, family, ISA level, cores), architecture or GPU
finds no entry under the new key; the caller reports a ``mismatch`` when entries exist
for the test under another key. :data:`WARN_FIELDS` are compared and reported as warnings
but never block the comparison: the driver, llama.cpp build, Python, OS, installed
RAM/VRAM, this plugin's version, and the model *file* (sha256, size, GGUF name). A new
file for the same model id and quantization (re-converted, re-quantized, a new release)
is exactly what the gate should judge.

Keys are made from *effective* values (``LoadParams.identity``): a load parameter added
in a later version, at its default, changes no key; nor does a strict field that an older
version did not record (it is absent on both sides only for entries of that version,
which the store adopts, see :mod:`pytest_llmperf.baseline.legacy`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.workloads import Workload

#: fields that must match for a baseline to be compared (they form the entry key)
STRICT_FIELDS: tuple[str, ...] = (
    "model.id",
    "model.quant",
    "params",
    "workloads",
    "build",
    "launcher",
    "bench_args",
    "machine.cpu",
    "machine.cpu_family",
    "machine.cpu_model",
    "machine.isa",
    "machine.cores",
    "machine.arch",
    "machine.gpu",
)

#: fields whose difference is reported as a warning only
WARN_FIELDS: tuple[str, ...] = (
    "model.sha256",
    "model.file_size",
    "model.name",
    "machine.gpu_driver",
    "machine.ram_gb",
    "machine.vram_total_mb",
    "machine.os",
    "software.python",
    "software.llama_cpp",
    "software.llama_system_info",
    "software.pytest_llmperf",
    "software.ggml_version",
    "software.ggml_commit",
    "software.lib_sha256",
)

ABSENT = object()


def get(doc: Mapping[str, Any], path: str) -> Any:
    """``doc["machine"]["cpu"]`` for ``"machine.cpu"`` (ABSENT when missing); workloads
    from either ``workloads`` or a single ``workload``."""
    if path == "workloads":
        if "workloads" in doc:
            return doc["workloads"]
        if "workload" in doc:
            return [doc["workload"]]
        return ABSENT
    cur: Any = doc
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return ABSENT
        cur = cur[part]
    return cur


def params_identity(params: LoadParams | Mapping[str, Any] | None) -> dict[str, Any]:
    """The params part of a key: non-default effective values (LoadParams.identity), so a
    parameter added later at its default, or a stored dict of every field, keys alike."""
    if params is None:
        return {}
    if not isinstance(params, LoadParams):
        params = LoadParams.from_dict(params)
    return params.identity()


def workload_names(workloads: Iterable[Workload | str] | Workload | str | None) -> list[str]:
    if workloads is None:
        return []
    if isinstance(workloads, (Workload, str)):
        workloads = [workloads]
    return sorted(
        {w.name if isinstance(w, Workload) else Workload.parse(w).name for w in workloads}
    )


def strict_view(
    fingerprint: Mapping[str, Any],
    params: LoadParams | Mapping[str, Any] | None,
    workloads: Iterable[Workload | str] | Workload | str | None,
) -> dict[str, Any]:
    """The strict fields of a fingerprint as a flat dict. A field absent from the
    fingerprint is left out, so adding a strict field to a later version keys the entries
    of earlier versions as before."""
    view: dict[str, Any] = {}
    for path in STRICT_FIELDS:
        if path == "params":
            view[path] = params_identity(params)
        elif path == "workloads":
            view[path] = workload_names(workloads)
        else:
            value = get(fingerprint, path)
            if value is not ABSENT and value is not None:
                view[path] = value
    return view


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def baseline_key(
    fingerprint: Mapping[str, Any],
    params: LoadParams | Mapping[str, Any] | None,
    workloads: Iterable[Workload | str] | Workload | str | None,
) -> str:
    """The one baseline key: 16 hex digits of the sha256 of the strict fields.

    ``fingerprint`` is ``{"machine": ..., "model": ..., "build": ...}`` (other parts are
    ignored); ``params`` the load params; ``workloads`` the workloads of the test (their
    order does not matter). Warn-only fields do not change the key; nor does a load
    parameter at its default.
    """
    digest = hashlib.sha256(
        canonical_json(strict_view(fingerprint, params, workloads)).encode()
    ).hexdigest()
    return digest[:16]


def _show(value: Any) -> str:
    return "<absent>" if value is ABSENT else repr(value)


def _diff_field(path: str, a: Any, b: Any) -> list[str]:
    if a == b:
        return []
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out: list[str] = []
        for key in sorted(set(a) | set(b), key=str):
            out.extend(_diff_field(f"{path}.{key}", a.get(key, ABSENT), b.get(key, ABSENT)))
        return out
    return [f"{path}: {_show(a)} (baseline) vs {_show(b)} (now)"]


def fingerprint_diff(
    baseline: Mapping[str, Any], current: Mapping[str, Any]
) -> tuple[list[str], list[str]]:
    """``(strict_mismatches, warnings)`` between a stored and a current fingerprint doc.

    Docs are ``{"machine", "software", "model", "params", "workloads", ...}`` (missing
    parts are allowed). Lines read ``machine.cpu: 'X' (baseline) vs 'Y' (now)``; a params
    difference is listed per parameter, by effective value
    (``params.n_threads: 4 (baseline) vs 8 (now)``).
    """
    strict: list[str] = []
    for path in STRICT_FIELDS:
        a, b = get(baseline, path), get(current, path)
        if path == "workloads":
            a = ABSENT if a is ABSENT else sorted(map(str, a))
            b = ABSENT if b is ABSENT else sorted(map(str, b))
        elif path == "params":
            a = ABSENT if a is ABSENT else _identity_or_raw(a)
            b = ABSENT if b is ABSENT else _identity_or_raw(b)
        strict.extend(_diff_field(path, a, b))
    warnings: list[str] = []
    for path in WARN_FIELDS:
        warnings.extend(_diff_field(path, get(baseline, path), get(current, path)))
    return strict, warnings


def _identity_or_raw(params: Any) -> Any:
    try:
        return params_identity(params)
    except Exception:  # a params dict this version cannot read: show it as stored
        return params
