"""Input the plugin used to take silently or crash on (issue 26, round three), each closed
as a class, through real files, real pytest sessions (pytester) and the real ``llmperf``
command on the tiny models:

- a key given twice in any JSON or YAML file we read (baselines, results.json, sweep
  records, rankings, the registry, sweep definitions, prompt files) is an error naming the
  file, the key and its lines (pytest_llmperf.fileio);
- a key given twice in our own key:value and comma syntaxes (references, thresholds,
  limits, ini line lists, tensor overrides) is an error naming it;
- every shell-like split of user text (launchers, args=, bench_args=, ab --args, build
  --cmake-args) is one function that names where the text came from
  (pytest_llmperf.options.split_words);
- every user value is checked for type and range before the model sees it (sampling,
  marker keywords, configs(), sweep YAML);
- a model path that is a URL, a hub id or not a regular file says what it is and what to
  do.

Split by tier: pure parts in tests/unit/test_strict_input.py and pytest sessions and child
processes in tests/e2e/test_strict_input.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_llmperf.baseline import BaselineStore, Pending, SessionRecord
from pytest_llmperf.cli.main import main

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``llmperf ARGS`` in this process: exit status, stdout, stderr."""
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def stored(tmp_path: Path, name: str = "a", rate: float = 100.0) -> Path:
    """A machine's baseline store of two tests (t.py::a, t.py::b); its manifest file."""
    store = BaselineStore(tmp_path / name, "box")
    store.load()
    values = {"tg_tps": [rate * s for s in (0.97, 1.0, 1.03, 0.99, 1.01)]}
    for nodeid in ("t.py::a", "t.py::b"):
        session = SessionRecord(
            accepted_at="2026-11-01T00:00:00+00:00",
            git_commit="abc",
            repetitions=5,
            warmup=1,
            values={"tg32": dict(values)},
        )
        store.queue(
            nodeid, "k1", Pending("m", {"params": {"n_threads": 2}, "workloads": ["tg32"]}, session)
        )
    store.flush()
    return store.path


def twice(path: Path, key: str) -> bytes:
    """Give ``key`` twice in the first object of ``path`` that has it (a copy before it,
    with another value); the new content."""
    text = path.read_text()
    at = text.index(f'"{key}":')
    text = text[:at] + f'"{key}": [16.0],\n' + text[at:]
    path.write_text(text)
    return text.encode()


# -- 7. a key given twice in a file we read --------------------------------------------------


def test_a_baseline_file_giving_a_metric_twice_is_named_with_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    base = stored(tmp_path, "a")
    current = stored(tmp_path, "b")
    [per_test] = [p for p in (base.parent / "box").rglob("*.json") if p.stem == "a"]
    before = twice(per_test, "tg_tps")
    for args in (
        ["compare", str(base), str(current)],
        ["baseline", "show", "t.py::a", "--file", str(base)],
        ["history", "--file", str(base)],
    ):
        rc, out, err = cli(capsys, *args)
        assert rc == 2, (args, out, err)
        assert f"baseline file {per_test}" in err and "key 'tg_tps' is given twice" in err, err
        assert "pass" not in out
    assert per_test.read_bytes() == before


def test_results_json_and_sweep_records_giving_a_key_twice_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results.json"
    results.write_text('{"schema_version": 1,\n "tests": [],\n "tests": []}\n')
    rc, _out, err = cli(capsys, "report", str(results), "-o", str(tmp_path / "r"))
    assert rc == 2 and f"{results}: key 'tests' is given twice in one object (lines 2, 3)" in err
    assert not (tmp_path / "r").exists()
    shard = tmp_path / "shard.jsonl"
    shard.write_text('{"id": "a", "sweep": "s"}\n{"id": "b", "sweep": "s", "id": "c"}\n')
    merged = tmp_path / "all.jsonl"
    rc, _out, err = cli(capsys, "merge", str(shard), "-o", str(merged))
    assert rc == 2 and f"{shard}:2: key 'id' is given twice" in err, err
    assert not merged.exists()


def test_a_ranking_or_prompt_file_giving_a_key_twice_is_refused(tmp_path: Path) -> None:
    from pytest_llmperf import load_prompts
    from pytest_llmperf.errors import UsageError
    from pytest_llmperf.sweep.ranking import read_ranking

    ranking = tmp_path / "rank.json"
    ranking.write_text('{"ranking": ["a"], "ranking": ["b"]}')
    with pytest.raises(UsageError, match=r"rank.json: key 'ranking' is given twice"):
        read_ranking(ranking)
    for suffix, text in ((".yaml", "hi: Hello\nhi: Bye\n"), (".json", '{"hi": "a", "hi": "b"}')):
        prompts = tmp_path / f"prompts{suffix}"
        prompts.write_text(text)
        with pytest.raises(UsageError, match=rf"prompts\{suffix}: key 'hi' is given twice"):
            load_prompts(prompts)


def test_yaml_merge_keys_may_still_override() -> None:
    from pytest_llmperf.fileio import loads_yaml

    assert loads_yaml("a: &a {x: 1, y: 2}\nb: {<<: *a, y: 3}\n", "f") == {
        "a": {"x": 1, "y": 2},
        "b": {"x": 1, "y": 3},
    }


def test_a_rule_source_giving_a_threshold_twice_is_refused() -> None:
    from pytest_llmperf.errors import UsageError
    from pytest_llmperf.verdict.thresholds import merge_threshold_sources

    source = {"thresholds": {"tg_tps": "-5%"}, "tg_tps": "-50%"}
    with pytest.raises(UsageError, match="the threshold of tg_tps is given twice"):
        merge_threshold_sources([("rules.yaml", source)])
    with pytest.raises(UsageError, match="both sla and slas are given"):
        merge_threshold_sources([("rules.yaml", {"sla": [], "slas": []})])


# -- 11. shell-like splits of user text -----------------------------------------------------

UNBALANCED = " cannot be split into words (no closing quotation): close the quote"


def test_ab_args_and_build_cmake_args_with_an_unbalanced_quote_name_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LLMPERF_BUILD_DIR", str(tmp_path / "builds"))
    rc, out, err = cli(capsys, "ab", "--model=tiny-moe-q8_0", "--args=-t '2", "-n", "8")
    assert rc == 2 and err.startswith('llmperf: error: ab --args: "-t \'2" cannot'), out + err
    assert UNBALANCED in err and len(err.strip().splitlines()) == 1
    rc, out, err = cli(capsys, "ab", "--model=tiny-moe-q8_0", "--args-b=-t 2 -c '9", "-n", "8")
    assert rc == 2 and 'ab --args-b: "-t 2 -c \'9" cannot' in err, out + err
    rc, out, err = cli(capsys, "build", "x", "--cmake-args=-DGGML_NATIVE='OFF")
    assert rc == 2 and 'build x: --cmake-args: "-DGGML_NATIVE=\'OFF" cannot' in err, out + err
    assert UNBALANCED in err and "Traceback" not in err
    assert not (tmp_path / "builds").exists() or not list((tmp_path / "builds").iterdir())


def test_user_text_is_split_in_one_place() -> None:
    """Every shell-like split of user text goes through options.split_words, which names
    where the text came from: no other module calls shlex.split."""
    import ast

    import pytest_llmperf

    package = Path(pytest_llmperf.__file__).parent
    callers = []
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "split"
                and isinstance(node.value, ast.Name)
                and node.value.id == "shlex"
            ):
                callers.append(str(source.relative_to(package)))
    assert callers == ["options.py"], callers


@pytest.mark.parametrize(
    ("sampling", "expected"),
    [
        ({"top_p": 1.5}, "sampling top_p=1.5: write a number from 0 to 1"),
        ({"min_p": -0.1}, "sampling min_p=-0.1: write a number from 0 to 1"),
        ({"top_k": 2.5}, "sampling top_k=2.5: write an integer"),
        ({"temperature": float("nan")}, "sampling temperature=nan: write a number >= 0"),
        ({"temperature": True}, "sampling temperature=True: write a number >= 0"),
        ({"repeat_penalty": 0}, "sampling repeat_penalty=0: write a number > 0"),
        ({"seed": -5}, "sampling seed=-5: write an integer 0..4294967295"),
        ({"seed": "1"}, "sampling seed='1': write an integer"),
        ({"mirostat_mode": 3}, "sampling mirostat_mode=3: write 0, 1 or 2"),
        ({"stop": 5}, "sampling stop=5: write a string or a list of strings"),
        ({"logit_bias": {13: "x"}}, "sampling logit_bias={13: 'x'}: write token id -> bias"),
        ({"logit_bias": {"a": 1.0}}, "write token id -> bias"),
    ],
)
def test_sampling_values_are_checked_for_type_and_range(
    sampling: dict[str, object], expected: str
) -> None:
    from pytest_llmperf.errors import UsageError
    from pytest_llmperf.model.workloads import stream_workload

    with pytest.raises(UsageError) as info:
        stream_workload("Hi", sampling=sampling)
    assert expected in str(info.value)
    ok = {"temperature": 0, "top_p": 1, "top_k": -1, "seed": 0, "logit_bias": {13: float("-inf")}}
    assert stream_workload("Hi", sampling=ok).sampling


def test_configs_values_are_checked() -> None:
    from pytest_llmperf import configs
    from pytest_llmperf.errors import UsageError

    with pytest.raises(UsageError, match=r"configs\(5, \.\.\.\): name the models"):
        configs(5)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=r"configs\(\[\], \.\.\.\): name the models"):
        configs([])
    with pytest.raises(UsageError, match=r"n_threads=\[\] gives no configuration at all"):
        configs("tiny-moe-q8_0", n_threads=[])
    with pytest.raises(UsageError, match="args=5: write the arguments as one string"):
        configs("tiny-moe-q8_0", 5)  # type: ignore[arg-type]
