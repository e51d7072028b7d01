"""The baseline store: round trip, corrupt files, concurrent and crashing writes, keys."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_llmperf import baseline as bl
from pytest_llmperf import judge
from pytest_llmperf.baseline import BaselineStore, baseline_key, fingerprint_diff
from pytest_llmperf.errors import BaselineError, UsageError
from pytest_llmperf.metrics import Sample
from pytest_llmperf.params import LoadParams, Workload
from pytest_llmperf.results import Measurement

FP: dict[str, Any] = {
    "machine": {
        "cpu": "Intel Xeon Platinum 8480+",
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


def measurement(workload: str = "tg32", rate: float = 100.0) -> Measurement:
    samples = []
    for k in range(3):
        gap = 1e9 / (rate + k)
        toks = [int(5e6 + i * gap) for i in range(8)]
        samples.append(
            Sample(
                n_prompt=0,
                n_gen=8,
                n_depth=0,
                prompt_ns=None,
                token_ns=toks,
                end_ns=toks[-1],
                llama={"n_eval": 7.0, "t_eval_ms": 70.0},
            )
        )
    return Measurement.from_samples(
        model="tiny-moe",
        model_path="/m/tiny.gguf",
        params=PARAMS,
        workload=Workload.parse(workload),
        samples=samples,
        run_values={"load_ms": [120.0]},
        absent={"vram_mb": "no NVML"},
        fingerprint=FP,
    )


def doc(workloads: list[str]) -> dict[str, Any]:
    return dict(FP, params=PARAMS.to_dict(), workloads=sorted(workloads))


def entry(*ms: Measurement, when: str = "2025-08-24T10:00:00+00:00") -> dict[str, Any]:
    return {
        "accepted_at": when,
        "git_commit": "f9c7f0d",
        "model": "tiny-moe",
        "fingerprint": doc([m.workload.name for m in ms]),
        "measurements": {m.workload.name: m.to_dict() for m in ms},
    }


KEY = baseline_key(FP, PARAMS, ["tg32"])


def store(tmp_path: Path) -> BaselineStore:
    return BaselineStore(tmp_path / "baselines", "xeon-8480-2c").load()


def tmp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# -- round trip -------------------------------------------------------------------------


def test_round_trip_and_file_format(tmp_path: Path) -> None:
    s = store(tmp_path)
    assert not s.path.exists()
    assert s.lookup("t.py::test_a", KEY) is None
    m = measurement()
    s.queue("t.py::test_a", KEY, entry(m))
    assert s.pending == [("t.py::test_a", KEY)]
    report = s.flush()
    assert report.created == ["t.py::test_a"] and report.written
    assert s.path == tmp_path / "baselines" / "xeon-8480-2c.json"
    text = s.path.read_text()
    data = json.loads(text)
    assert text == json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert data["schema_version"] == 1
    assert data["machine"]["id"] == "xeon-8480-2c"
    assert data["machine"]["cpu"] == FP["machine"]["cpu"]
    assert list(data["entries"]["t.py::test_a"]) == [KEY]

    again = store(tmp_path)
    got = again.lookup("t.py::test_a", KEY)
    assert got is not None
    back = Measurement.from_dict(got["measurements"]["tg32"])
    assert back.values == m.values
    assert back.params == m.params and back.workload == m.workload
    assert back.absent == {"vram_mb": "no NVML"}
    assert again.entries_for("t.py::test_a") == {KEY: got}
    assert again.entries_for("t.py::other") == {}
    assert tmp_files(s.directory) == []


def test_flush_reports_created_updated_unchanged_and_idempotence(tmp_path: Path) -> None:
    s = store(tmp_path)
    assert s.flush().written is False and not s.path.exists()  # nothing queued: no file
    s.queue("t.py::a", KEY, entry(measurement()))
    s.queue("t.py::b", KEY, entry(measurement()))
    s.flush()
    before = s.path.read_bytes()
    s.queue("t.py::a", KEY, entry(measurement(), when="2025-09-01T00:00:00+00:00"))
    s.queue("t.py::b", KEY, entry(measurement(rate=50.0)))
    s.queue("t.py::c", KEY, entry(measurement()))
    r = s.flush()
    assert (r.created, r.updated, r.unchanged) == (["t.py::c"], ["t.py::b"], ["t.py::a"])
    # an unchanged entry keeps its stored acceptance time
    assert store(tmp_path).lookup("t.py::a", KEY)["accepted_at"] == "2025-08-24T10:00:00+00:00"  # type: ignore[index]
    s.queue("t.py::a", KEY, entry(measurement()))
    r2 = s.flush()
    assert r2.unchanged == ["t.py::a"] and not r2.written
    assert before != s.path.read_bytes()


def test_partial_selection_keeps_other_entries(tmp_path: Path) -> None:
    """A -k run accepting one test never drops the entries of the others."""
    first = store(tmp_path)
    for name in ("a", "b", "c"):
        first.queue(f"t.py::test_{name}", KEY, entry(measurement()))
    first.queue("t.py::test_a", "otherkey", entry(measurement("tg64")))
    first.flush()
    second = store(tmp_path)  # a later session selecting only test_b
    second.queue("t.py::test_b", KEY, entry(measurement(rate=60.0)))
    assert second.flush().updated == ["t.py::test_b"]
    data = json.loads(second.path.read_text())
    assert sorted(data["entries"]) == ["t.py::test_a", "t.py::test_b", "t.py::test_c"]
    assert sorted(data["entries"]["t.py::test_a"]) == sorted([KEY, "otherkey"])


def test_flush_merges_what_another_process_wrote_meanwhile(tmp_path: Path) -> None:
    mine = store(tmp_path)
    theirs = store(tmp_path)
    theirs.queue("t.py::theirs", KEY, entry(measurement()))
    theirs.flush()
    mine.queue("t.py::mine", KEY, entry(measurement()))
    mine.flush()
    assert sorted(json.loads(mine.path.read_text())["entries"]) == ["t.py::mine", "t.py::theirs"]
    assert mine.lookup("t.py::theirs", KEY) is not None  # the in-memory view follows the disk


_WORKER = r"""
import json, sys
from pytest_llmperf.baseline import BaselineStore
directory, worker, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
entry = json.loads(sys.stdin.read())
for i in range(rounds):
    s = BaselineStore(directory, "shared")
    s.queue(f"t.py::test_{worker}_{i}", "k" + worker, entry)
    s.queue("t.py::test_shared", "k" + worker, entry)
    s.flush()
"""


def test_concurrent_flushes_from_processes_lose_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "baselines"
    payload = json.dumps(entry(measurement()))
    workers, rounds = 4, 8
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(directory), str(w), str(rounds)],
            stdin=subprocess.PIPE,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(payload)
        p.stdin.close()
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read() if p.stderr else ""
    s = BaselineStore(directory, "shared").load()
    data = json.loads(s.path.read_text())
    expected = {f"t.py::test_{w}_{i}" for w in range(workers) for i in range(rounds)}
    assert expected <= set(data["entries"])
    assert len(data["entries"]) == workers * rounds + 1
    assert sorted(data["entries"]["t.py::test_shared"]) == [f"k{w}" for w in range(workers)]
    assert tmp_files(directory) == []


# -- crashes ----------------------------------------------------------------------------


def _seeded(tmp_path: Path) -> tuple[BaselineStore, bytes]:
    s = store(tmp_path)
    s.queue("t.py::old", KEY, entry(measurement()))
    s.flush()
    return s, s.path.read_bytes()


def test_crash_in_os_replace_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, before = _seeded(tmp_path)

    def boom(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    s.queue("t.py::new", KEY, entry(measurement()))
    with pytest.raises(
        BaselineError, match=r"could not write the baselines.*old file is unchanged"
    ):
        s.flush()
    assert s.path.read_bytes() == before
    assert tmp_files(s.directory) == []
    assert s.pending == [("t.py::new", KEY)]  # still queued: a retry may succeed
    monkeypatch.undo()
    assert s.flush().created == ["t.py::new"]


def test_crash_while_serializing_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, before = _seeded(tmp_path)
    s.queue("t.py::new", KEY, entry(measurement()))
    real_dumps = json.dumps

    def dumps(obj: Any, **kw: Any) -> str:
        if kw.get("indent") == 2:
            raise RuntimeError("killed mid-write")
        return real_dumps(obj, **kw)

    monkeypatch.setattr(json, "dumps", dumps)
    with pytest.raises(RuntimeError, match="killed mid-write"):
        s.flush()
    assert s.path.read_bytes() == before
    assert tmp_files(s.directory) == []


def test_crash_while_writing_the_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s, before = _seeded(tmp_path)
    s.queue("t.py::new", KEY, entry(measurement()))

    def fsync(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(KeyboardInterrupt):
        s.flush()
    assert s.path.read_bytes() == before
    assert tmp_files(s.directory) == []


# -- corrupt files ----------------------------------------------------------------------

GOOD = json.dumps({"schema_version": 1, "machine": {}, "entries": {}})


def _valid_entry() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(entry(measurement())))
    return data


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
                        "k": {k: v for k, v in _valid_entry().items() if k != "measurements"}
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
                    "t.py::a": {"k": dict(_valid_entry(), measurements={"tg32": {"metrics": 3}})}
                },
            }
        ),
        "measurements['tg32'] is not a measurement",
    ),
    "bad_commit": (
        json.dumps(
            {"schema_version": 1, "entries": {"t.py::a": {"k": dict(_valid_entry(), git_commit=7)}}}
        ),
        "git_commit is 7",
    ),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_files_raise_and_stay_byte_identical(tmp_path: Path, case: str) -> None:
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
    # a flush must not overwrite it either
    s.queue("t.py::a", KEY, entry(measurement()))
    with pytest.raises(BaselineError):
        s.flush()
    with pytest.raises(BaselineError):
        s.prune(keep_nodeids=[])
    assert path.read_bytes() == before
    assert tmp_files(directory) == []


def test_future_schema_names_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"schema_version": 3, "entries": {"x": 1}}))
    with pytest.raises(BaselineError) as exc:
        BaselineStore(tmp_path, "m").load()
    assert str(exc.value) == (
        f"baseline file {path} was written by a newer pytest-llmperf (schema 3 > 1): "
        "upgrade, or move the file away (the file was not modified)"
    )


def test_good_minimal_file_and_missing_keys(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text(GOOD)
    s = BaselineStore(tmp_path, "m").load()
    assert s.list_entries() == [] and s.machine_info == {}
    (tmp_path / "n.json").write_text('{"schema_version": 1}')
    assert BaselineStore(tmp_path, "n").load().list_entries() == []


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "..", "a b", "x" * 200])
def test_machine_id_must_be_a_file_name(tmp_path: Path, bad: str) -> None:
    with pytest.raises(UsageError, match="machine id"):
        BaselineStore(tmp_path, bad)


def test_queue_rejects_unserializable_and_malformed_entries(tmp_path: Path) -> None:
    s = store(tmp_path)
    with pytest.raises(BaselineError, match="not JSON-serializable"):
        s.queue("t.py::a", KEY, dict(entry(measurement()), extra={1, 2}))
    with pytest.raises(BaselineError, match="not JSON-serializable"):
        s.queue("t.py::a", KEY, dict(entry(measurement()), extra=float("nan")))
    with pytest.raises(BaselineError, match="has no 'measurements'"):
        s.queue("t.py::a", KEY, {"accepted_at": "x", "fingerprint": {}})
    with pytest.raises(UsageError):
        s.queue("", KEY, entry(measurement()))
    # the entry is copied at queue time
    e = entry(measurement())
    s.queue("t.py::a", KEY, e)
    e["measurements"].clear()
    s.flush()
    assert store(tmp_path).lookup("t.py::a", KEY)["measurements"]  # type: ignore[index]


# -- listing and pruning ----------------------------------------------------------------


def _three(tmp_path: Path) -> BaselineStore:
    s = store(tmp_path)
    s.queue("t.py::a", KEY, entry(measurement(), when="2025-01-01T00:00:00+00:00"))
    s.queue("t.py::b", KEY, entry(measurement(), when="2025-08-01T00:00:00Z"))
    s.queue("t.py::c", "k2", entry(measurement("pp64"), when="2999-01-01T00:00:00+00:00"))
    s.flush()
    return s


def test_list_and_unused_entries(tmp_path: Path) -> None:
    s = _three(tmp_path)
    infos = s.list_entries()
    assert [(i.nodeid, i.key, i.workloads, i.model) for i in infos] == [
        ("t.py::a", KEY, ("tg32",), "tiny-moe"),
        ("t.py::b", KEY, ("tg32",), "tiny-moe"),
        ("t.py::c", "k2", ("pp64",), "tiny-moe"),
    ]
    assert infos[0].git_commit == "f9c7f0d"
    assert s.unused_entries({("t.py::a", KEY)}) == [("t.py::b", KEY), ("t.py::c", "k2")]


def test_prune(tmp_path: Path) -> None:
    s = _three(tmp_path)
    assert s.prune() == []
    assert s.prune(keep_nodeids=["t.py::a"], dry_run=True) == [("t.py::b", KEY), ("t.py::c", "k2")]
    assert len(store(tmp_path).list_entries()) == 3
    cutoff = dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc)
    assert s.prune(older_than=cutoff) == [("t.py::a", KEY)]
    assert s.prune(entries=[("t.py::c", "k2")]) == [("t.py::c", "k2")]
    assert s.prune(older_than=dt.timedelta(days=1)) == [("t.py::b", KEY)]
    data = json.loads(s.path.read_text())
    assert data["entries"] == {}
    assert BaselineStore(tmp_path / "nowhere", "m").prune(keep_nodeids=[]) == []


# -- fingerprints -----------------------------------------------------------------------


def test_strict_and_warn_fields_are_documented() -> None:
    assert set(bl.STRICT_FIELDS) >= {
        "model.id",
        "model.quant",
        "params",
        "workloads",
        "machine.cpu",
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
    }
    assert not set(bl.STRICT_FIELDS) & set(bl.WARN_FIELDS)


def test_fingerprint_key_is_stable() -> None:
    key = baseline_key(FP, PARAMS, [Workload.parse("tg32"), Workload.parse("pp64")])
    assert len(key) == 16 and int(key, 16) >= 0
    # pinned: changing the canonical form would orphan every stored baseline
    assert baseline_key(FP, {"n_threads": 2, "n_batch": 256}, ["tg32", "pp64"]) == (
        "b60f7f82197b777c"
    )
    assert baseline_key(FP, PARAMS.to_dict(), ["pp64", "tg32"]) == key  # dict, str, order
    assert baseline_key(json.loads(json.dumps(FP)), PARAMS, ["tg32", "pp64"]) == key


@pytest.mark.parametrize(
    ("path", "value", "strict"),
    [
        ("machine.cpu", "AMD EPYC 9654", True),
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
        doc(["tg32"]), dict(changed, params=PARAMS.to_dict(), workloads=["tg32"])
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
    now = dict(FP, params=other.to_dict(), workloads=["tg64", "tg32"])
    strict, warns = fingerprint_diff(doc(["tg32"]), now)
    assert strict == [
        "params.n_threads: 2 (baseline) vs 4 (now)",
        "workloads: ['tg32'] (baseline) vs ['tg32', 'tg64'] (now)",
    ]
    assert warns == []
    assert fingerprint_diff(doc(["tg32"]), doc(["tg32"])) == ([], [])
    # a field missing on one side is shown as absent
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
    assert judge.should_accept(mode, verdict, has_entry) is expected


def test_should_accept_unknown_mode() -> None:
    with pytest.raises(UsageError, match="accept mode 'some'"):
        judge.should_accept("some", "pass", True)
