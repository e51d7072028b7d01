"""The baseline store: one file per test, history, upgrades from schema 1, corrupt and hand-
edited files, concurrent and crashing writes, keys, and merging in git.

Split by tier: pure parts in tests/unit/test_baseline.py and pytest sessions and child
processes in tests/e2e/test_baseline.py."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf import baseline as bl
from pytest_llmperf.baseline import (
    BaselineStore,
    Pending,
    SessionRecord,
    baseline_key,
    entry_relpath,
    fingerprint_diff,
)
from pytest_llmperf.baseline.history import rounded
from pytest_llmperf.errors import BaselineError, UsageError
from pytest_llmperf.model.knobs import Int, knob
from pytest_llmperf.model.params import LoadParams
from pytest_llmperf.model.workloads import Workload
from pytest_llmperf.verdict import judge
from tests.gitrepo import git

FP: dict[str, Any] = {
    "machine": {
        "cpu": "Intel Xeon Platinum 8480+",
        "cpu_family": "6",
        "cpu_model": "143",
        "isa": "x86-64-v4+amx_tile",
        "cores": 2,
        "ram_gb": 8.0,
        "gpu": None,
        "gpu_driver": None,
        "vram_total_mb": None,
        "os": "Linux-6.8",
        "arch": "x86_64",
    },
    "software": {
        "python": "3.11.7",
        "llama_cpp": "0.3.16",
        "llama_system_info": "AVX2 = 1",
        "pytest_llmperf": "0.1.0",
    },
    "model": {
        "id": "tiny-moe-mxfp4",
        "sha256": "ab" * 32,
        "file_size": 1234567,
        "quant": "MXFP4_MOE",
        "name": "tiny-moe",
    },
}
PARAMS = LoadParams(n_threads=2, n_batch=256, n_ubatch=128)
MACHINE = "xeon-8480-2c"


def doc(workloads: list[str], fp: dict[str, Any] | None = None) -> dict[str, Any]:
    return dict(fp or FP, params=PARAMS.non_default(), workloads=sorted(workloads))


def session(
    rate: float = 100.0, when: str = "2025-08-24T10:00:00+00:00", wl: str = "tg32"
) -> SessionRecord:
    rates = [rate * f for f in (0.99, 1.0, 1.01)]
    return SessionRecord(
        accepted_at=when,
        git_commit="f9c7f0d",
        repetitions=3,
        warmup=1,
        values={wl: {"tg_tps": rates, "tpot_ms": [1000 / r for r in rates], "load_ms": [120.0]}},
        absent={wl: {"vram_mb": "no NVML"}},
    )


def pending(rate: float = 100.0, when: str = "2025-08-24T10:00:00+00:00", **kw: Any) -> Pending:
    fp = kw.pop("fp", None)
    wl = kw.pop("wl", "tg32")
    return Pending("tiny-moe", doc([wl], fp), session(rate, when, wl), **kw)


KEY = baseline_key(FP, PARAMS, ["tg32"])


def store(tmp_path: Path, **kw: Any) -> BaselineStore:
    return BaselineStore(tmp_path / "baselines", MACHINE, **kw).load()


def file_of(tmp_path: Path, nodeid: str) -> Path:
    return tmp_path / "baselines" / MACHINE / entry_relpath(nodeid)


def tmp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.name.endswith(".tmp"))


# -- one file per test -----------------------------------------------------------------


def test_round_trip_and_file_format(tmp_path: Path) -> None:
    s = store(tmp_path)
    assert s.lookup("t.py::test_a", KEY) is None
    s.queue("t.py::test_a", KEY, pending())
    assert s.pending == [("t.py::test_a", KEY)]
    report = s.flush()
    assert report.created == ["t.py::test_a"] and report.written
    path = file_of(tmp_path, "t.py::test_a")
    assert path == tmp_path / "baselines" / MACHINE / "t" / "test_a.json"
    text = path.read_text()
    data = json.loads(text)
    assert data["schema_version"] == 2 and data["nodeid"] == "t.py::test_a"
    entry = data["entries"][KEY]
    assert entry["fingerprint"]["params"] == {"n_batch": 256, "n_threads": 2, "n_ubatch": 128}
    values = entry["sessions"][0]["values"]["tg32"]
    # derived metrics are not stored; values keep 4 significant digits, one line each
    assert "tpot_ms" not in values
    assert values["tg_tps"] == [99, 100, 101]
    assert '"tg_tps": [99, 100, 101]' in text
    assert '"load_ms": [120]' in text
    # the manifest tells older versions to stay away
    manifest = json.loads(s.path.read_text())
    assert manifest["schema_version"] == 2 and manifest["machine"]["id"] == MACHINE

    again = store(tmp_path)
    got = again.lookup("t.py::test_a", KEY)
    assert got is not None and len(got.sessions) == 1
    ref = got.reference("tg32")
    assert ref is not None and ref.sessions[0]["tg_tps"] == [99.0, 100.0, 101.0]
    assert ref.sessions[0]["tpot_ms"] == pytest.approx([1000 / 99, 10.0, 1000 / 101])
    assert ref.absent == {"vram_mb": "no NVML"}
    assert set(again.entries_for("t.py::test_a")) == {KEY}
    assert again.entries_for("t.py::other") == {}
    assert tmp_files(tmp_path) == []


def test_rounding_keeps_four_significant_digits() -> None:
    assert rounded(754.3149) == 754.3
    assert rounded(1.234567) == 1.235
    assert rounded(0.00123456) == 0.001235
    assert rounded(123456.7) == 123500.0


@pytest.mark.parametrize(
    ("nodeid", "expected"),
    [
        (
            "perf_tests/test_q.py::test_quant[tiny-moe-t2]",
            "perf_tests/test_q/test_quant[tiny-moe-t2].json",
        ),
        ("t.py::TestX::test_y", "t/TestX.test_y.json"),
    ],
)
def test_entry_paths(nodeid: str, expected: str) -> None:
    assert entry_relpath(nodeid).as_posix() == expected


def test_entry_paths_of_odd_ids_are_safe_and_distinct() -> None:
    a = entry_relpath("t.py::test_x[a b/c:d]")
    b = entry_relpath("t.py::test_x[a_b_c_d]")
    assert a != b and "/" not in a.name and " " not in a.name and ":" not in a.name


# -- history ---------------------------------------------------------------------------


def test_history_keeps_the_last_k_sessions_and_reset_replaces_it(tmp_path: Path) -> None:
    s = store(tmp_path, history=3)
    for day in range(1, 6):
        s.queue("t.py::a", KEY, pending(100.0 + day, f"2025-09-0{day}T00:00:00+00:00"))
        assert s.flush().written
    entry = store(tmp_path).lookup("t.py::a", KEY)
    assert entry is not None
    assert [x.accepted_at[:10] for x in entry.sessions] == [
        "2025-09-03",
        "2025-09-04",
        "2025-09-05",
    ]
    s.queue("t.py::a", KEY, pending(50.0, "2025-09-09T00:00:00+00:00", reset=True))
    assert s.flush().updated == ["t.py::a"]
    entry = store(tmp_path).lookup("t.py::a", KEY)
    assert entry is not None and len(entry.sessions) == 1


def test_an_identical_session_is_not_added(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.queue("t.py::a", KEY, pending())
    s.flush()
    before = file_of(tmp_path, "t.py::a").read_bytes()
    s.queue("t.py::a", KEY, pending(when="2026-01-01T00:00:00+00:00"))
    r = s.flush()
    assert r.unchanged == ["t.py::a"] and not r.written
    assert file_of(tmp_path, "t.py::a").read_bytes() == before


def test_older_sessions_keep_what_they_ran_on(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.queue("t.py::a", KEY, pending())
    s.flush()
    newer = json.loads(json.dumps(FP))
    newer["software"]["llama_cpp"] = "0.3.36"
    s.queue("t.py::a", KEY, pending(101.0, "2025-09-01T00:00:00+00:00", fp=newer))
    s.flush()
    data = json.loads(file_of(tmp_path, "t.py::a").read_text())["entries"][KEY]
    assert data["fingerprint"]["software"]["llama_cpp"] == "0.3.36"
    assert data["sessions"][0]["fingerprint"] == {"software.llama_cpp": "0.3.16"}
    assert "fingerprint" not in data["sessions"][1]


@pytest.mark.parametrize("k", [0, -1, 101])
def test_absurd_history_length_is_a_usage_error(tmp_path: Path, k: int) -> None:
    with pytest.raises(UsageError, match="llmperf_history"):
        BaselineStore(tmp_path, MACHINE, history=k)


# -- merging with other tests and processes ---------------------------------------------


def test_partial_selection_keeps_other_entries(tmp_path: Path) -> None:
    first = store(tmp_path)
    for name in ("a", "b", "c"):
        first.queue(f"t.py::test_{name}", KEY, pending())
    other_key = baseline_key(FP, PARAMS, ["tg64"])
    first.queue("t.py::test_a", other_key, pending(wl="tg64"))
    first.flush()
    second = store(tmp_path)  # a later session selecting only test_b
    second.queue("t.py::test_b", KEY, pending(60.0, "2025-09-01T00:00:00+00:00"))
    assert second.flush().updated == ["t.py::test_b"]
    third = store(tmp_path)
    assert sorted({e.nodeid for e in third.list_entries()}) == [
        "t.py::test_a",
        "t.py::test_b",
        "t.py::test_c",
    ]
    assert set(third.entries_for("t.py::test_a")) == {KEY, other_key}


def test_flush_merges_what_another_process_wrote_meanwhile(tmp_path: Path) -> None:
    mine = store(tmp_path)
    theirs = store(tmp_path)
    theirs.queue("t.py::theirs", KEY, pending())
    theirs.flush()
    mine.queue("t.py::mine", KEY, pending())
    mine.flush()
    assert mine.lookup("t.py::theirs", KEY) is not None  # the in-memory view follows the disk


# -- crashes ----------------------------------------------------------------------------


def _seeded(tmp_path: Path) -> tuple[BaselineStore, bytes]:
    s = store(tmp_path)
    s.queue("t.py::old", KEY, pending())
    s.flush()
    return s, file_of(tmp_path, "t.py::old").read_bytes()


def test_crash_in_os_replace_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, before = _seeded(tmp_path)

    def boom(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    s.queue("t.py::old", KEY, pending(50.0, "2026-01-01T00:00:00+00:00"))
    with pytest.raises(
        BaselineError, match=r"could not write the baselines.*old files are unchanged"
    ):
        s.flush()
    assert file_of(tmp_path, "t.py::old").read_bytes() == before
    assert tmp_files(tmp_path) == []
    assert s.pending == [("t.py::old", KEY)]  # still queued: a retry may succeed
    monkeypatch.undo()
    assert s.flush().updated == ["t.py::old"]


def test_crash_while_writing_the_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s, before = _seeded(tmp_path)
    s.queue("t.py::old", KEY, pending(50.0, "2026-01-01T00:00:00+00:00"))

    def write_bytes(self: Path, data: bytes) -> int:
        raise KeyboardInterrupt  # Ctrl-C while the temporary file is being written

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    with pytest.raises(KeyboardInterrupt):
        s.flush()
    assert file_of(tmp_path, "t.py::old").read_bytes() == before
    assert tmp_files(tmp_path) == []


def test_unwritable_directory_is_named_and_nothing_changes(tmp_path: Path) -> None:
    s, before = _seeded(tmp_path)
    machine_dir = tmp_path / "baselines" / MACHINE
    blocker = machine_dir / "u"
    blocker.write_text("a file where the module's folder must go")
    s.queue("u.py::test_new", KEY, pending())
    s.queue("t.py::other", KEY, pending())
    report = s.flush()  # the blocked test is named and not written; the others are
    [refused] = report.refused
    assert refused.startswith("u.py::test_new: ")
    assert "is a file where a folder of baselines must be" in refused
    assert report.created == ["t.py::other"]
    assert file_of(tmp_path, "t.py::old").read_bytes() == before
    assert blocker.read_text() == "a file where the module's folder must go"


def _legacy_entry(rate: float = 100.0, when: str = "2025-08-24T10:00:00+00:00") -> dict[str, Any]:
    """An entry as pytest-llmperf 0.1 wrote it (schema 1)."""
    rates = [rate * f for f in (0.99, 1.0, 1.01)]
    metrics = {
        "tg_tps": {"unit": "t/s", "better": "higher", "values": rates, "summary": {}},
        "load_ms": {"unit": "ms", "better": "lower", "values": [120.0], "summary": {}},
    }
    fp = dict(
        FP,
        machine={
            k: v for k, v in FP["machine"].items() if k not in ("cpu_family", "cpu_model", "isa")
        },
    )
    return {
        "accepted_at": when,
        "git_commit": "f9c7f0d",
        "model": "tiny-moe",
        "fingerprint": dict(
            fp, params=dict(LoadParams(n_threads=2).to_dict(), n_ubatch=512), workloads=["tg32"]
        ),
        "measurements": {
            "tg32": {
                "workload": {
                    "n_prompt": 0,
                    "n_gen": 32,
                    "n_depth": 0,
                    "seed": 1234,
                    "name": "tg32",
                },
                "metrics": metrics,
                "absent": {"vram_mb": "no NVML"},
                "repetitions": 3,
                "warmup": 1,
            }
        },
    }


CORRUPT: dict[str, tuple[str, str]] = {
    "empty": ("", "is empty"),
    "whitespace": ("  \n", "is empty"),
    "truncated": (
        '{"schema_version": 1, "entries": {"t.py::a": {"k": {"accepted_at"',
        "is not valid JSON",
    ),
    "conflict": (
        '<<<<<<< HEAD\n{"schema_version": 1}\n=======\n{}\n>>>>>>> x\n',
        "merge conflict markers",
    ),
    "list": ("[1, 2, 3]", "the top level is a list, expected an object"),
    "string": ('"baselines"', "the top level is a str"),
    "no_version": ('{"entries": {}}', "schema_version is None"),
    "version_str": ('{"schema_version": "1", "entries": {}}', "schema_version is '1'"),
    "version_zero": ('{"schema_version": 0, "entries": {}}', "schema_version 0"),
    "entries_list": ('{"schema_version": 1, "entries": []}', "'entries' is a list"),
    "machine_list": ('{"schema_version": 1, "machine": [], "entries": {}}', "'machine' is a"),
    "by_key_list": (
        '{"schema_version": 1, "entries": {"t.py::a": []}}',
        "entries['t.py::a'] is a list",
    ),
    "entry_str": (
        '{"schema_version": 1, "entries": {"t.py::a": {"k": "x"}}}',
        "entries['t.py::a']['k'] is a str",
    ),
    "no_measurements": (
        json.dumps(
            {
                "schema_version": 1,
                "entries": {
                    "t.py::a": {
                        "k": {k: v for k, v in _legacy_entry().items() if k != "measurements"}
                    }
                },
            }
        ),
        "has no 'measurements'",
    ),
    "bad_measurement": (
        json.dumps(
            {
                "schema_version": 1,
                "entries": {
                    "t.py::a": {"k": dict(_legacy_entry(), measurements={"tg32": {"metrics": 3}})}
                },
            }
        ),
        "measurements['tg32'] is not a measurement",
    ),
    "bad_commit": (
        json.dumps(
            {
                "schema_version": 1,
                "entries": {"t.py::a": {"k": dict(_legacy_entry(), git_commit=7)}},
            }
        ),
        "git_commit is 7",
    ),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_machine_files_raise_and_stay_byte_identical(tmp_path: Path, case: str) -> None:
    text, expected = CORRUPT[case]
    directory = tmp_path / "baselines"
    directory.mkdir()
    path = directory / "m.json"
    path.write_text(text)
    before = path.read_bytes()
    s = BaselineStore(directory, "m")
    with pytest.raises(BaselineError) as exc:
        s.load()
    msg = str(exc.value)
    assert str(path) in msg and expected in msg
    assert "not modified" in msg
    s.queue("t.py::a", KEY, pending())
    with pytest.raises(BaselineError):
        s.flush()
    with pytest.raises(BaselineError):
        s.prune(keep_nodeids=[])
    assert path.read_bytes() == before
    assert tmp_files(directory) == []


def test_a_corrupt_test_file_fails_only_its_test(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.queue("t.py::a", KEY, pending())
    s.queue("t.py::b", KEY, pending())
    s.flush()
    bad = file_of(tmp_path, "t.py::a")
    bad.write_text(
        '{"schema_version": 2, "nodeid": "t.py::a", "entries": {"k": {"fingerprint": {}}}}'
    )
    before = bad.read_bytes()
    again = store(tmp_path)
    with pytest.raises(BaselineError, match=r"sessions must be a non-empty list.*not modified"):
        again.lookup("t.py::a", KEY)
    assert again.lookup("t.py::b", KEY) is not None
    again.queue("t.py::b", KEY, pending(50.0, "2026-01-01T00:00:00+00:00"))
    assert again.flush().updated == ["t.py::b"]
    again.queue("t.py::a", KEY, pending())
    [refused] = again.flush().refused  # not written over, named with its file
    assert refused.startswith("t.py::a: ") and str(bad) in refused
    assert bad.read_bytes() == before


def test_a_file_holding_another_tests_entries_is_named_and_never_written(
    tmp_path: Path,
) -> None:
    """A renamed test whose file was moved (git mv): the file still names the old test.
    It is not read as anyone's entries, its test is told why and how to fix it, and a
    session queued for that test (--perf-accept, or a "new" test recorded) leaves it byte
    for byte while the other tests are written."""
    s = store(tmp_path)
    s.queue("t.py::test_a", KEY, pending())
    s.flush()
    moved = file_of(tmp_path, "t.py::test_c")
    moved.parent.mkdir(parents=True, exist_ok=True)
    os.rename(file_of(tmp_path, "t.py::test_a"), moved)
    before = moved.read_bytes()
    again = store(tmp_path)
    with pytest.raises(BaselineError) as exc:
        again.lookup("t.py::test_c", KEY)
    msg = str(exc.value)
    assert f"baseline file {moved} holds the entries of test 't.py::test_a'" in msg
    assert "Edit its \"nodeid\" field to 't.py::test_c', or move the file back to" in msg
    assert str(file_of(tmp_path, "t.py::test_a")) in msg
    assert again.lookup("t.py::test_a", KEY) is None  # its entries are not read for anyone
    again.queue("t.py::test_c", KEY, pending())
    again.queue("t.py::test_d", KEY, pending())
    report = again.flush()
    assert report.created == ["t.py::test_d"]
    [refused] = report.refused
    assert refused.startswith(f"t.py::test_c: baseline file {moved} holds the entries")
    assert moved.read_bytes() == before
    assert list(store(tmp_path).broken_files) == [moved]


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ([float("nan"), 100.0, 101.0], "is not a finite number"),
        ([float("inf"), 100.0, 101.0], "is not a finite number"),
        ([-1.0, -2.0, -3.0], "is not positive"),
        (["fast", 1.0, 2.0], "is not a number"),
        ([], "is not a list of numbers"),
    ],
)
def test_bad_numbers_refuse_the_entry_and_never_block_the_others(
    tmp_path: Path, values: list[Any], problem: str
) -> None:
    s = store(tmp_path)
    s.queue("t.py::a", KEY, pending())
    s.queue("t.py::b", KEY, pending())
    s.flush()
    path = file_of(tmp_path, "t.py::a")
    data = json.loads(path.read_text())
    data["entries"][KEY]["sessions"][0]["values"]["tg32"]["tg_tps"] = values
    path.write_text(json.dumps(data, allow_nan=True))
    again = store(tmp_path)
    assert any(problem in n and "t.py::a" in n for n in again.notices)
    with pytest.raises(BaselineError) as exc:
        again.lookup("t.py::a", KEY)
    msg = str(exc.value)
    assert str(path) in msg and "t.py::a" in msg and problem in msg and "--perf-accept=reset" in msg
    # another test's accept is written, and the bad entry is kept as it was
    again.queue("t.py::b", KEY, pending(50.0, "2026-01-01T00:00:00+00:00"))
    assert again.flush().updated == ["t.py::b"]
    reread = json.loads(path.read_text())
    stored = reread["entries"][KEY]["sessions"][0]["values"]["tg32"]["tg_tps"]
    assert len(stored) == len(values)
    # a reset re-records it
    again.queue("t.py::a", KEY, pending(reset=True))
    again.flush()
    assert store(tmp_path).lookup("t.py::a", KEY) is not None


def test_a_bad_session_is_skipped_and_the_rest_used(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.queue("t.py::a", KEY, pending(100.0, "2025-09-01T00:00:00+00:00"))
    s.flush()
    s.queue("t.py::a", KEY, pending(101.0, "2025-09-02T00:00:00+00:00"))
    s.flush()
    path = file_of(tmp_path, "t.py::a")
    data = json.loads(path.read_text())
    del data["entries"][KEY]["sessions"][0]["values"]
    path.write_text(json.dumps(data))
    again = store(tmp_path)
    entry = again.lookup("t.py::a", KEY)
    assert entry is not None and len(entry.usable) == 1 and len(entry.sessions) == 2
    assert any("2025-09-01" in n and "skipped" in n for n in again.notices)


def test_a_session_of_another_machine_is_skipped_with_a_notice(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.queue("t.py::a", KEY, pending(100.0, "2025-09-01T00:00:00+00:00"))
    s.flush()
    s.queue("t.py::a", KEY, pending(101.0, "2025-09-02T00:00:00+00:00"))
    s.flush()
    path = file_of(tmp_path, "t.py::a")
    data = json.loads(path.read_text())
    data["entries"][KEY]["sessions"][0]["fingerprint"] = {"machine.cpu": "AMD EPYC 7B13"}
    path.write_text(json.dumps(data))
    again = store(tmp_path)
    entry = again.lookup("t.py::a", KEY)
    assert entry is not None and len(entry.usable) == 1
    assert any("recorded on another machine" in n and "AMD EPYC 7B13" in n for n in again.notices)


def test_a_session_an_earlier_version_spelled_otherwise_is_still_used(tmp_path: Path) -> None:
    """Upgrading never orphans a session: one written when n_ubatch's default was 512 left
    it out, where this version writes the same effective 512; the same configuration. A
    session that really ran other params is still skipped."""
    s = store(tmp_path)
    for day, rate in (("01", 100.0), ("02", 101.0), ("03", 102.0)):
        s.queue("t.py::a", KEY, pending(rate, f"2025-09-{day}T00:00:00+00:00"))
        s.flush()
    path = file_of(tmp_path, "t.py::a")
    data = json.loads(path.read_text())
    entry = data["entries"][KEY]
    entry["fingerprint"]["params"] = {"n_threads": 2, "n_ubatch": 512}
    entry["sessions"][0]["fingerprint"] = {"params.n_ubatch": None}
    entry["sessions"][1]["fingerprint"] = {"params.n_threads": 1}
    path.write_text(json.dumps(data))
    again = store(tmp_path)
    (found,) = again.entries_for("t.py::a").values()
    assert len(found.usable) == 2 and len(found.sessions) == 3
    assert [n for n in again.notices if "recorded on another" in n] == [
        n for n in again.notices if "params.n_threads: 1" in n
    ]


def test_future_schema_names_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"schema_version": 3, "entries": {"x": 1}}))
    with pytest.raises(BaselineError) as exc:
        BaselineStore(tmp_path, "m").load()
    assert str(exc.value) == (
        f"baseline file {path} was written by a newer pytest-llmperf (schema 3 > 2): "
        "upgrade, or move the file away (the file was not modified)"
    )


def test_keys_we_do_not_own_are_kept(tmp_path: Path) -> None:
    directory = tmp_path / "baselines"
    directory.mkdir()
    (directory / f"{MACHINE}.json").write_text(
        json.dumps(
            {
                "schema_version": 1,
                "comment": "reviewed by Ana",
                "machine": {},
                "entries": {"t.py::a": {"k": _legacy_entry()}},
            }
        )
    )
    s = store(tmp_path)
    s.queue("t.py::b", KEY, pending())
    s.flush()
    assert json.loads((directory / f"{MACHINE}.json").read_text())["comment"] == "reviewed by Ana"
    path = file_of(tmp_path, "t.py::b")
    data = json.loads(path.read_text())
    data["note"] = "slow on purpose"
    data["entries"][KEY]["why"] = "pinned"
    path.write_text(json.dumps(data))
    s = store(tmp_path)
    s.queue("t.py::b", KEY, pending(50.0, "2026-01-01T00:00:00+00:00"))
    s.flush()
    data = json.loads(path.read_text())
    assert data["note"] == "slow on purpose" and data["entries"][KEY]["why"] == "pinned"


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "..", "a b", "x" * 200, "bat\n"])
def test_machine_id_must_be_a_file_name(tmp_path: Path, bad: str) -> None:
    with pytest.raises(UsageError, match="machine id"):
        BaselineStore(tmp_path, bad)


def test_queue_rejects_unserializable_and_bad_sessions(tmp_path: Path) -> None:
    s = store(tmp_path)
    with pytest.raises(BaselineError, match="not JSON-serializable"):
        s.queue("t.py::a", KEY, Pending("m", dict(doc(["tg32"]), extra={1, 2}), session()))
    nan = session()
    nan.values["tg32"]["tg_tps"] = [float("nan")] * 3
    with pytest.raises(BaselineError, match="not JSON-serializable"):
        s.queue("t.py::a", KEY, Pending("m", doc(["tg32"]), nan))
    with pytest.raises(UsageError):
        s.queue("", KEY, pending())


# -- upgrading from schema 1 ------------------------------------------------------------


def _legacy_file(directory: Path, mid: str, entries: dict[str, dict[str, Any]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{mid}.json"
    path.write_text(
        json.dumps({"schema_version": 1, "machine": {"id": mid}, "entries": entries}, indent=2)
    )
    return path


def test_schema_1_files_are_read_and_moved_on_the_first_write(tmp_path: Path) -> None:
    directory = tmp_path / "baselines"
    old = _legacy_file(
        directory,
        MACHINE,
        {"t.py::a": {"oldkey1": _legacy_entry()}, "t.py::b": {"oldkey2": _legacy_entry(90.0)}},
    )
    s = BaselineStore(directory, MACHINE).load()
    infos = s.list_entries()
    assert [(i.nodeid, i.sessions) for i in infos] == [("t.py::a", 1), ("t.py::b", 1)]
    # keys are re-made from the stored fingerprints: the legacy n_ubatch=512 default and the
    # explicit default params key like today's params
    legacy_fp = _legacy_entry()["fingerprint"]
    key = baseline_key(legacy_fp, LoadParams(n_threads=2), ["tg32"])
    entry = s.lookup("t.py::a", key)
    assert entry is not None and entry.fingerprint["params"] == {"n_threads": 2}
    # the first accept (of one test) moves every entry, and adds to the history
    s.queue(
        "t.py::a",
        key,
        Pending(
            "tiny-moe",
            dict(legacy_fp, params={"n_threads": 2}),
            session(101.0, "2025-09-01T00:00:00+00:00"),
        ),
    )
    report = s.flush()
    assert report.updated == ["t.py::a"] and report.migrated == 2
    manifest = json.loads(old.read_text())
    assert manifest["schema_version"] == 2 and "entries" not in manifest
    again = BaselineStore(directory, MACHINE).load()
    a = again.lookup("t.py::a", key)
    assert a is not None and len(a.sessions) == 2
    assert {i.nodeid for i in again.list_entries()} == {"t.py::a", "t.py::b"}
    # an older pytest-llmperf refuses the new layout with its clear message
    from pytest_llmperf.baseline.documents import check_version

    assert check_version(manifest, old) == 2
    with pytest.raises(BaselineError, match="written by a newer pytest-llmperf"):
        _older_version_reads(old)


def _older_version_reads(path: Path) -> None:
    """What pytest-llmperf 0.1 did with a baseline file: refuse a schema above 1."""
    data = json.loads(path.read_text())
    if data["schema_version"] > 1:
        raise BaselineError(
            f"baseline file {path} was written by a newer pytest-llmperf (schema "
            f"{data['schema_version']} > 1): upgrade, or move the file away"
        )


def test_the_old_machine_id_is_read_and_adopted(tmp_path: Path) -> None:
    """0.1 called every 2-core KVM EPYC "amd-epyc-2c"; now Zen 4 is "amd-epyc-f25m17-2c".
    Its committed file keeps working on the machine it fits, and moves on the first write."""
    directory = tmp_path / "baselines"
    machine = {
        "cpu": "AMD EPYC",
        "cpu_family": "25",
        "cpu_model": "17",
        "isa": "x86-64-v4+avx512_bf16",
        "cores": 2,
        "arch": "x86_64",
        "gpu": None,
    }
    legacy = _legacy_entry()
    legacy["fingerprint"]["machine"] = {
        "cpu": "AMD EPYC",
        "cores": 2,
        "arch": "x86_64",
        "gpu": None,
    }
    legacy["fingerprint"]["software"]["llama_system_info"] = "AVX2 = 1 | AVX512 = 1"
    old = _legacy_file(directory, "amd-epyc-2c", {"t.py::a": {"k": legacy}})
    s = BaselineStore(directory, "amd-epyc-f25m17-2c", machine, aliases=["amd-epyc-2c"]).load()
    now = dict(legacy["fingerprint"], machine=machine)
    key = baseline_key(now, LoadParams(n_threads=2), ["tg32"])
    assert s.lookup("t.py::a", key) is not None  # adopted: same name, cores, ISA
    s.queue("t.py::new", KEY, pending())
    s.flush()
    assert json.loads(old.read_text())["moved_to"].startswith("amd-epyc-f25m17-2c/")
    assert BaselineStore(directory, "amd-epyc-f25m17-2c").load().lookup("t.py::a", key) is not None
    # a Zen 2 machine (no AVX-512) with the same model name does not adopt them
    zen2 = dict(machine, cpu_family="23", cpu_model="49", isa="x86-64-v3")
    legacy_only = _legacy_file(
        tmp_path / "other", "amd-epyc-2c", {"t.py::a": {"k": _legacy_with(legacy)}}
    )
    s2 = BaselineStore(
        legacy_only.parent, "amd-epyc-f23m49-2c", zen2, aliases=["amd-epyc-2c"]
    ).load()
    key2 = baseline_key(
        dict(legacy["fingerprint"], machine=zen2), LoadParams(n_threads=2), ["tg32"]
    )
    assert s2.lookup("t.py::a", key2) is None and s2.entries_for("t.py::a")  # a mismatch


def _legacy_with(entry: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(entry))


# -- listing and pruning ----------------------------------------------------------------


def _three(tmp_path: Path) -> BaselineStore:
    s = store(tmp_path)
    s.queue("t.py::a", KEY, pending(when="2025-01-01T00:00:00+00:00"))
    s.queue("t.py::b", KEY, pending(when="2025-08-01T00:00:00Z"))
    k2 = baseline_key(FP, PARAMS, ["pp64"])
    s.queue("t.py::c", k2, pending(when="2999-01-01T00:00:00+00:00", wl="pp64"))
    s.flush()
    return s


def test_list_and_unused_entries(tmp_path: Path) -> None:
    s = _three(tmp_path)
    k2 = baseline_key(FP, PARAMS, ["pp64"])
    infos = s.list_entries()
    assert [(i.nodeid, i.key, i.workloads, i.model) for i in infos] == [
        ("t.py::a", KEY, ("tg32",), "tiny-moe"),
        ("t.py::b", KEY, ("tg32",), "tiny-moe"),
        ("t.py::c", k2, ("pp64",), "tiny-moe"),
    ]
    assert infos[0].git_commit == "f9c7f0d"
    assert s.unused_entries({("t.py::a", KEY)}) == [("t.py::b", KEY), ("t.py::c", k2)]


def test_prune(tmp_path: Path) -> None:
    s = _three(tmp_path)
    k2 = baseline_key(FP, PARAMS, ["pp64"])
    assert s.prune() == []
    assert s.prune(keep_nodeids=["t.py::a"], dry_run=True) == [("t.py::b", KEY), ("t.py::c", k2)]
    assert len(store(tmp_path).list_entries()) == 3
    cutoff = dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc)
    assert s.prune(older_than=cutoff) == [("t.py::a", KEY)]
    assert not file_of(tmp_path, "t.py::a").exists()
    assert s.prune(entries=[("t.py::c", k2)]) == [("t.py::c", k2)]
    assert s.prune(older_than=dt.timedelta(days=1)) == [("t.py::b", KEY)]
    assert store(tmp_path).list_entries() == []
    assert BaselineStore(tmp_path / "nowhere", "m").prune(keep_nodeids=[]) == []


# -- keys and fingerprints ----------------------------------------------------------------


def test_strict_and_warn_fields_are_documented() -> None:
    assert set(bl.STRICT_FIELDS) >= {
        "model.id",
        "model.quant",
        "params",
        "workloads",
        "machine.cpu",
        "machine.cpu_family",
        "machine.cpu_model",
        "machine.isa",
        "machine.cores",
        "machine.gpu",
    }
    assert set(bl.WARN_FIELDS) == {
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
    }
    assert {"build", "launcher"} <= set(bl.STRICT_FIELDS)
    assert not set(bl.STRICT_FIELDS) & set(bl.WARN_FIELDS)


def test_baseline_key_is_stable() -> None:
    key = baseline_key(FP, PARAMS, [Workload.parse("tg32"), Workload.parse("pp64")])
    assert len(key) == 16 and int(key, 16) >= 0
    # pinned: the store re-keys what it reads, but a change here re-keys every entry
    assert baseline_key(FP, {"n_threads": 2, "n_batch": 256}, ["tg32", "pp64"]) == (
        baseline_key(FP, LoadParams(n_threads=2, n_batch=256), ["pp64", "tg32"])
    )
    assert baseline_key(FP, PARAMS.to_dict(), ["pp64", "tg32"]) == key  # dict, str, order
    assert baseline_key(json.loads(json.dumps(FP)), PARAMS, ["tg32", "pp64"]) == key
    # llama.cpp's default micro-batch, written or not, is the same test
    assert baseline_key(FP, LoadParams(n_ubatch=512), ["tg32"]) == baseline_key(
        FP, LoadParams(), ["tg32"]
    )


def test_a_load_parameter_added_later_keeps_old_keys() -> None:
    @dataclasses.dataclass(frozen=True)
    class Later(LoadParams):
        n_future: int = knob(7, Int(0), "--future", prefix="fut")

    assert baseline_key(FP, Later(n_threads=2), ["tg32"]) == baseline_key(
        FP, LoadParams(n_threads=2), ["tg32"]
    )
    assert baseline_key(FP, Later(n_threads=2, n_future=8), ["tg32"]) != baseline_key(
        FP, LoadParams(n_threads=2), ["tg32"]
    )


def test_a_strict_field_added_later_keeps_old_keys() -> None:
    older = json.loads(json.dumps(FP))
    for name in ("cpu_family", "cpu_model", "isa"):
        del older["machine"][name]
    assert baseline_key(older, PARAMS, ["tg32"]) != KEY  # now known: another CPU maybe
    assert baseline_key(older, PARAMS, ["tg32"]) == baseline_key(older, PARAMS.to_dict(), ["tg32"])


@pytest.mark.parametrize(
    ("path", "value", "strict"),
    [
        ("machine.cpu", "AMD EPYC 9654", True),
        ("machine.cpu_family", "25", True),
        ("machine.isa", "x86-64-v3", True),
        ("machine.cores", 4, True),
        ("machine.gpu", "NVIDIA H200", True),
        ("model.id", "another-model", True),
        ("model.quant", "Q8_0", True),
        ("model.sha256", "cd" * 32, False),
        ("machine.gpu_driver", "570.86", False),
        ("machine.ram_gb", 16.0, False),
        ("machine.os", "Linux-6.9", False),
        ("software.llama_cpp", "0.3.36", False),
        ("software.llama_system_info", "AVX512 = 1", False),
        ("software.python", "3.12.1", False),
        ("software.pytest_llmperf", "0.2.0", False),
        ("model.name", "renamed", False),
    ],
)
def test_key_and_diff_per_field(path: str, value: Any, strict: bool) -> None:
    changed = json.loads(json.dumps(FP))
    section, name = path.split(".")
    old = changed[section][name]
    changed[section][name] = value
    assert (baseline_key(changed, PARAMS, ["tg32"]) != KEY) is strict
    s, w = fingerprint_diff(
        doc(["tg32"]), dict(changed, params=PARAMS.non_default(), workloads=["tg32"])
    )
    line = f"{path}: {old!r} (baseline) vs {value!r} (now)"
    if strict:
        assert s == [line] and w == []
    else:
        assert s == [] and w == [line]


def test_params_and_workloads_are_strict() -> None:
    other = PARAMS.replace(n_threads=4)
    assert baseline_key(FP, other, ["tg32"]) != KEY
    assert baseline_key(FP, PARAMS, ["tg64"]) != KEY
    now = dict(FP, params=other.non_default(), workloads=["tg64", "tg32"])
    strict, warns = fingerprint_diff(doc(["tg32"]), now)
    assert strict == [
        "params.n_threads: 2 (baseline) vs 4 (now)",
        "workloads: ['tg32'] (baseline) vs ['tg32', 'tg64'] (now)",
    ]
    assert warns == []
    assert fingerprint_diff(doc(["tg32"]), doc(["tg32"])) == ([], [])
    old = json.loads(json.dumps(doc(["tg32"])))
    del old["machine"]["gpu_driver"]
    _s, w = fingerprint_diff(old, doc(["tg32"]))
    assert w == ["machine.gpu_driver: <absent> (baseline) vs None (now)"]


# -- accept modes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "verdict", "has_entry", "expected"),
    [
        ("all", "pass", True, True),
        ("all", "regressed", True, True),
        ("all", "new", False, True),
        ("all", "error", False, False),
        ("reset", "pass", True, True),
        ("new", "new", False, True),
        ("new", "mismatch", False, True),
        ("new", "pass", True, False),
        ("new", "regressed", True, False),
        ("failed", "regressed", True, True),
        ("failed", "new", False, True),
        ("failed", "mismatch", False, True),
        ("failed", "pass", True, False),
        ("failed", "improved", True, False),
        ("failed", "inconclusive", True, False),
    ],
)
def test_should_accept(mode: str, verdict: str, has_entry: bool, expected: bool) -> None:
    assert judge.should_accept(mode, verdict, has_entry) is expected  # type: ignore[arg-type]


def test_should_accept_unknown_mode() -> None:
    with pytest.raises(UsageError, match="accept mode 'some'"):
        judge.should_accept("some", "pass", True)  # type: ignore[arg-type]


# -- git ------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_two_branches_accepting_different_tests_merge_without_conflict(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    s = BaselineStore(repo / "baselines", MACHINE).load()
    s.queue("t.py::test_a", KEY, pending())
    s.queue("t.py::test_b", KEY, pending())
    s.flush()
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "baselines")
    # one branch re-accepts test_a and adds test_new1 (same module)...
    git(repo, "checkout", "-qb", "one")
    one = BaselineStore(repo / "baselines", MACHINE).load()
    one.queue("t.py::test_a", KEY, pending(90.0, "2025-09-01T00:00:00+00:00"))
    one.queue("t.py::test_new1", KEY, pending())
    one.flush()
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "one")
    # ...the other re-accepts test_b and adds test_new2
    git(repo, "checkout", "-q", "main")
    git(repo, "checkout", "-qb", "two")
    two = BaselineStore(repo / "baselines", MACHINE).load()
    two.queue("t.py::test_b", KEY, pending(80.0, "2025-09-02T00:00:00+00:00"))
    two.queue("t.py::test_new2", KEY, pending())
    two.flush()
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "two")
    git(repo, "merge", "-q", "--no-edit", "one")
    merged = BaselineStore(repo / "baselines", MACHINE).load()
    assert {e.nodeid for e in merged.list_entries()} == {
        "t.py::test_a",
        "t.py::test_b",
        "t.py::test_new1",
        "t.py::test_new2",
    }
    a, b = merged.lookup("t.py::test_a", KEY), merged.lookup("t.py::test_b", KEY)
    assert a is not None and b is not None and len(a.sessions) == 2 and len(b.sessions) == 2
    assert math.isclose(a.sessions[-1].values["tg32"]["tg_tps"][1], 90.0)
