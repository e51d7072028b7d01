"""The backends' registry, checked against what it mirrors: every load knob is applied or
declared not applied by every backend, and the backends' code reads those tables; the
metrics and workload kinds a backend names exist; the struct fields, ``Llama`` keywords and
llama-bench flags the tables name exist in the real llama-cpp-python and KNOBS; README's
flags table agrees with KNOBS; and only native/ calls into llama.cpp.

Split by tier: pure parts in tests/unit/test_registries.py and real model runs in
tests/integration/test_registries.py."""

from __future__ import annotations

import inspect

from pytest_llmperf.backends.protocol import (
    BACKENDS,
    STREAM,
    Keyword,
    StructField,
)
from pytest_llmperf.backends.stream_load import llama_kwargs
from pytest_llmperf.native import model as native
from tests.unit.test_registries import EVERY_KNOB


def test_struct_fields_exist_in_llama_cpps_structs() -> None:
    declared = {
        "llama_model_params": native.declared_fields(native.model_params()),
        "llama_context_params": native.declared_fields(native.context_params()),
    }
    for spec in BACKENDS.values():
        for name, entry in spec.entries(StructField).items():
            assert entry.field in declared[entry.struct], f"{spec.name}: {name} -> {entry.how}"


def test_llama_keywords_exist() -> None:
    from llama_cpp import Llama

    accepted = inspect.signature(Llama.__init__).parameters
    for name, entry in STREAM.entries(Keyword).items():
        assert entry.keyword in accepted, f"{name}: Llama has no {entry.keyword}="
    kwargs, _not_applied = llama_kwargs(EVERY_KNOB, {"flash_attn": "on"})
    assert set(kwargs) <= set(accepted)
