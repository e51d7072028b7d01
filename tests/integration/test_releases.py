"""Any two llama-cpp-python releases side by side: a release build is the release in an
environment of its own (its own bindings and library), and the engine runs on every
release from the declared floor up (native/: the fields an older release calls otherwise,
knobs a release lacks refused only when set).

The fast tests run on the installed release; the slow one builds the floor release once
into the cache (minutes) and runs ``llmperf ab`` of it against the installed one.

Split by tier: pure parts in tests/unit/test_releases.py, real model runs in
tests/integration/test_releases.py and pytest sessions and child processes in
tests/e2e/test_releases.py."""

from __future__ import annotations

import ctypes

import pytest

from pytest_llmperf.backends.load import struct_fields
from pytest_llmperf.errors import BackendError, UsageError
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.native import llama_lib
from pytest_llmperf.native import model as native

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


# -- the fields of older releases, on structs of their layout ------------------------------


class llama_model_params(ctypes.Structure):
    """The load fields of llama-cpp-python 0.3.16-0.3.34's llama_model_params."""

    _fields_ = [("use_mmap", ctypes.c_bool), ("use_mlock", ctypes.c_bool)]


class llama_context_params(ctypes.Structure):
    """Fields of llama-cpp-python 0.3.16's llama_context_params (flash_attn on or off)."""

    _fields_ = [("n_ctx", ctypes.c_uint32), ("flash_attn", ctypes.c_bool)]


def test_an_older_release_takes_load_mode_and_flash_attn_by_their_older_names() -> None:
    m = llama_model_params(True, False)
    native.set_fields(m, load_mode=native.LOAD_MODES["none"])
    assert (m.use_mmap, m.use_mlock) == (False, False)
    native.set_fields(m, load_mode=native.LOAD_MODES["mmap+mlock"])
    assert (m.use_mmap, m.use_mlock) == (True, True)
    native.set_fields(m, load_mode=native.LOAD_MODES["auto"])
    assert (m.use_mmap, m.use_mlock) == (True, False)
    c = llama_context_params(512, False)
    native.set_fields(c, flash_attn_type=native.FLASH_ATTN_TYPES["on"])
    assert c.flash_attn is True
    assert native.field_problem(c, "flash_attn_type", native.FLASH_ATTN_TYPES["on"]) == ""
    why = native.field_problem(c, "flash_attn_type", native.FLASH_ATTN_TYPES["auto"])
    assert f"llama-cpp-python {llama_lib.version()}'s llama_context_params" in why
    assert "has flash_attn instead of flash_attn_type" in why and "no auto" in why
    with pytest.raises(BackendError, match="has no field 'no_host'"):
        native.set_fields(m, no_host=True)


def test_a_knob_at_its_default_is_left_to_an_older_release_and_refused_only_when_set() -> None:
    """no_host and flash_attn=auto have no field in 0.3.16: at their defaults they are
    left out (the release's own default holds); set, the knob and the release are named."""
    m, c = llama_model_params(True, False), llama_context_params(512, False)
    assert struct_fields(m, LoadParams()) == {"load_mode": native.LOAD_MODES["auto"]}
    assert struct_fields(c, LoadParams(n_ctx=256)) == {"n_ctx": 256}
    assert struct_fields(m, LoadParams(use_mmap=False))["load_mode"] == native.LOAD_MODES["none"]
    assert struct_fields(c, LoadParams(flash_attn="on"))["flash_attn_type"] == 1
    release = f"llama-cpp-python {llama_lib.version()}"
    with pytest.raises(UsageError) as exc:
        struct_fields(m, LoadParams(no_host=True))
    assert str(exc.value).startswith(f"no_host=1: {release}'s llama_model_params has no field")
    assert "this release cannot apply the knob" in str(exc.value)


def test_the_installed_release_takes_every_field_of_the_table() -> None:
    """On the installed release nothing is left out: every field is its own."""
    every = LoadParams(use_mmap=False, flash_attn="on", no_host=True, repack=False)
    for struct in (native.model_params(), native.context_params()):
        fields = struct_fields(struct, every)
        assert all(native.field_problem(struct, f, v) == "" for f, v in fields.items())
    assert "no_host" in struct_fields(native.model_params(), LoadParams())
    with pytest.raises(BackendError, match=rf"{llama_lib.version()}'s llama_model_params"):
        native.set_fields(native.model_params(), no_such_field=1)
