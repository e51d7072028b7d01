"""llmperf bisect, the parts that measure nothing: the search over positions, the state
document and its refusals, release ranges, and commits of a real git repository (their
first-parent order, the worktree they are built in, bad revisions), ccache's counters.

Split by tier: pure parts in tests/unit/test_bisect.py and pytest sessions and child
processes in tests/e2e/test_bisect.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_llmperf.errors import UsageError
from pytest_llmperf.machine import revisions
from pytest_llmperf.model import ownership
from pytest_llmperf.verdict import bisect, bisect_state
from pytest_llmperf.verdict.bisect import Step
from tests.gitrepo import git


def _search(n: int, verdict_of: dict[int, str] | int) -> tuple[list[int], bisect.Answer]:
    """Run the search where position p's verdict is ``verdict_of[p]`` (a dict) or,
    given an int, regressed from that position on and pass before it."""
    steps: list[Step] = []
    while (p := bisect.next_position(n, steps)) is not None:
        if isinstance(verdict_of, int):
            verdict = "regressed" if p >= verdict_of else "pass"
        else:
            verdict = verdict_of[p]
        steps.append(Step(p, f"c{p}", verdict))
    return [s.position for s in steps], bisect.answer(n, steps)


@pytest.mark.parametrize("n", [2, 3, 5, 8, 17, 64])
def test_the_search_finds_every_first_bad_position_in_about_log2_steps(n: int) -> None:
    for first_bad in range(1, n):
        measured, result = _search(n, first_bad)
        assert result.status == bisect.FOUND
        assert (result.last_good, result.first_bad) == (first_bad - 1, first_bad)
        assert len(measured) == len(set(measured))  # nothing measured twice
        assert measured[0] == n - 1  # the bad end first
        assert len(measured) <= (n - 1).bit_length() + 1
        assert bisect.exit_status(result) == 0


def test_a_bad_end_that_is_not_slower_stops_the_search() -> None:
    measured, result = _search(8, {7: "pass"})
    assert measured == [7]
    assert result.status == bisect.NOT_SLOWER and bisect.exit_status(result) == 1
    measured, result = _search(8, {7: "improved"})
    assert result.status == bisect.NOT_SLOWER
    measured, result = _search(8, {7: "inconclusive"})
    assert measured == [7] and result.status == bisect.UNDECIDED
    assert result.candidates == tuple(range(1, 8)) and bisect.exit_status(result) == 3


def test_an_undecided_position_is_gone_round_never_guessed() -> None:
    # position 3 (the first bad one) stays inconclusive: the answer is the range 3..4
    truth = {7: "regressed", 3: "inconclusive", 4: "regressed", 2: "pass", 1: "pass"}
    measured, result = _search(8, truth)
    assert measured == [7, 3, 4, 2]
    assert result.status == bisect.UNDECIDED
    assert (result.last_good, result.first_bad, result.undecided) == (2, 4, (3,))
    assert result.candidates == (3, 4)
    # every position between undecided (a slope, not a step): the range is all of them
    truth = {7: "regressed", 6: "regressed", **{p: "inconclusive" for p in range(1, 6)}}
    measured, result = _search(8, truth)
    assert sorted(measured) == list(range(1, 8))
    assert (result.last_good, result.first_bad) == (0, 6)
    assert result.undecided == (1, 2, 3, 4, 5)
    # a failed build is undecided too
    truth = {7: "regressed", 3: "failed", 4: "pass", 2: "pass", 5: "pass", 6: "regressed"}
    measured, result = _search(8, truth)
    assert result.status == bisect.FOUND and result.first_bad == 6


def test_an_aa_check_that_finds_a_difference_stops_everything() -> None:
    steps = [Step(0, "c0", "regressed")]
    assert bisect.next_position(8, steps) is None
    assert bisect.answer(8, steps).status == bisect.UNDECIDED
    steps = [Step(0, "c0", "pass")]
    assert bisect.next_position(8, steps) == 7


def test_step_verdicts_and_escalation() -> None:
    assert bisect.step_verdict(["pass", "regressed"]) == "regressed"
    assert bisect.step_verdict(["pass", "improved"]) == "pass"
    assert bisect.step_verdict(["improved"]) == "improved"
    assert bisect.step_verdict(["pass", "inconclusive"]) == "inconclusive"
    assert bisect.step_verdict([]) == "inconclusive"
    assert [bisect.scaled(30, 100, a) for a in range(4)] == [30, 60, 100, 100]
    assert bisect.scaled(30, 10, 2) == 30  # a cap below the first attempt: the first


QUESTION = {
    "kind": "models",
    "configs": ["m0", "m1", "m2"],
    "base": {"args": "-t 1"},
    "workloads": ["tg16"],
    "metric": "tg_tps",
    "threshold": 25.0,
    "source": None,
}


def test_the_state_document_round_trips_and_is_refused_when_it_is_not_one(tmp_path: Path) -> None:
    state = bisect_state.State(dict(QUESTION), labels={"m1": "one"})
    state.record(Step(2, "m2", "regressed", "tg_tps", 0.5, 0.45, 0.55, seconds=3.0, rounds=10))
    state.builds["m2"] = {"name": "x", "build": "built", "seconds": 1.0}
    doc = json.loads(state.to_json())
    back = bisect_state.from_document(doc, QUESTION)
    assert back.steps == state.steps and back.labels == state.labels
    assert back.builds == state.builds and back.key == state.key
    # the file is recognized as ours, and described as such
    path = tmp_path / "state.json"
    path.write_text(state.to_json())
    assert ownership.is_ours(path, "bisect-state")
    assert ownership.appears_to_be(path) == "an llmperf bisect state (JSON)"
    (tmp_path / "other.json").write_text('{"tests": []}')
    assert not ownership.is_ours(tmp_path / "other.json", "bisect-state")
    # another question, edited keys, a step that does not fit: each named
    other = dict(QUESTION, threshold=5.0)
    with pytest.raises(ValueError, match=r"another bisect: threshold 25\.0 there, 5\.0 here"):
        bisect_state.from_document(doc, other)
    bad = [
        ({**doc, "llmperf_bisect": 2}, "this version reads 1"),
        ({**doc, "key": "0" * 16}, "does not match its question"),
        ({**doc, "steps": [dict(doc["steps"][0], position=5)]}, "beyond the list"),
        ({**doc, "steps": [dict(doc["steps"][0], config="m1")]}, "is m2, not m1"),
        ({**doc, "steps": doc["steps"] * 2}, "measured twice"),
        ({**doc, "steps": [dict(doc["steps"][0], verdict="maybe")]}, "verdict 'maybe'"),
        ({**doc, "steps": [dict(doc["steps"][0], ratio=-1)]}, "ratio must be"),
        ({**doc, "steps": [dict(doc["steps"][0], extra=1)]}, "unknown key"),
        ({"tests": []}, "not an llmperf bisect state"),
    ]
    for data, message in bad:
        with pytest.raises(ValueError, match=message):
            bisect_state.from_document(data)
    for question, message in [
        (dict(QUESTION, configs=["m0"]), "1 configuration"),
        (dict(QUESTION, configs=["m0", "m0"]), "more than once"),
        (dict(QUESTION, kind="tags"), "kind 'tags'"),
        (dict(QUESTION, workloads=[]), "workloads"),
    ]:
        with pytest.raises(ValueError, match=message):
            bisect_state.check_question(question)


RELEASES = ["0.3.28", "0.3.29", "0.3.30", "0.3.31", "0.3.36"]


def test_release_ranges_follow_the_index_order() -> None:
    assert revisions.release_range("0.3.29..0.3.31", RELEASES) == ["0.3.29", "0.3.30", "0.3.31"]
    assert revisions.release_range("0.3.30..0.3.36", RELEASES) == ["0.3.30", "0.3.31", "0.3.36"]
    assert revisions.release_range("0.3.36, 0.3.28", None) == ["0.3.36", "0.3.28"]
    for spec, message in [
        ("0.3.31..0.3.29", "not newer than"),
        ("0.3.29..0.3.99", "0.3.99 is not a release"),
        ("0.3.29..", "FIRST..LAST"),
        ("0.3.28,latest", "'latest' is not a version"),
    ]:
        with pytest.raises(UsageError, match=message):
            revisions.release_range(spec, RELEASES)


def _commit(repo: Path, name: str, text: str) -> str:
    (repo / name).write_text(text)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", f"{name}: {text.strip()}")
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """c0 - c1 - merge(side) - c3 on main, a side branch s1 from c0."""
    repo = tmp_path / "llama.cpp"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    _commit(repo, "a.txt", "0\n")
    git(repo, "checkout", "-q", "-b", "side")
    _commit(repo, "b.txt", "side\n")
    git(repo, "checkout", "-q", "main")
    _commit(repo, "a.txt", "1\n")
    git(repo, "merge", "-q", "--no-ff", "-m", "merge side", "side")
    _commit(repo, "a.txt", "3\n")
    return repo


def test_commits_are_listed_along_first_parents_and_bad_revisions_named(repo: Path) -> None:
    root = revisions.checkout_root(repo / ".")
    assert root == repo
    commits = revisions.first_parent_commits(root, "HEAD~3", "HEAD")
    assert [s for _h, s in commits] == ["a.txt: 0", "a.txt: 1", "merge side", "a.txt: 3"]
    assert commits[-1][0] == git(repo, "rev-parse", "HEAD")
    for good, bad, message in [
        ("nope", "HEAD", "--good nope: no such commit"),
        ("HEAD~1", "v9", "--bad v9: no such commit"),
        ("HEAD", "HEAD", "the same commit"),
        ("HEAD", "HEAD~2", "not on the first-parent history"),
        ("side", "HEAD", "not on the first-parent history"),
        ("--all", "HEAD", "name a revision"),
    ]:
        with pytest.raises(UsageError, match=message):
            revisions.first_parent_commits(root, good, bad)
    with pytest.raises(UsageError, match="not a git checkout"):
        revisions.checkout_root(repo.parent)
    with pytest.raises(UsageError, match="no such folder"):
        revisions.checkout_root(repo / "missing")


def test_commits_are_checked_out_in_a_worktree_the_checkout_never_sees(
    repo: Path, tmp_path: Path
) -> None:
    head = git(repo, "rev-parse", "HEAD")
    commits = revisions.first_parent_commits(repo, "HEAD~3", "HEAD")
    where = tmp_path / "cache" / "wt"
    revisions.worktree(repo, where, commits[1][0])
    assert (where / "a.txt").read_text() == "1\n" and not (where / "b.txt").exists()
    (where / "a.txt").write_text("left by a stopped checkout\n")
    (where / "junk.o").write_text("x")
    revisions.worktree(repo, where, commits[3][0])  # kept, switched, cleaned
    assert (where / "a.txt").read_text() == "3\n" and (where / "b.txt").is_file()
    assert not (where / "junk.o").exists()
    # the user's checkout: same HEAD, same branch, nothing changed
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    _commit(other, "x", "x\n")
    with pytest.raises(UsageError, match="worktree of another repository"):
        revisions.worktree(other, where, git(other, "rev-parse", "HEAD"))


def test_ccache_launcher_and_its_stats_log(tmp_path: Path) -> None:
    args = revisions.ccache_launcher(tmp_path, tmp_path / "log")
    assert "-DCMAKE_C_COMPILER_LAUNCHER=env;CCACHE_BASEDIR=" in args
    assert "-DCMAKE_CXX_COMPILER_LAUNCHER=" in args
    log = tmp_path / "log"
    assert revisions.ccache_log_counts(log) == {}
    log.write_text(
        "# a.c\ncache_miss\ndirect_cache_miss\n# b.c\ndirect_cache_hit\n# c.c\n"
        "preprocessed_cache_hit\n# d.c\ndirect_cache_hit\n"
    )
    assert revisions.ccache_log_counts(log) == {"hits": 3, "misses": 1, "hit_rate": 0.75}


def test_the_table_shows_every_measured_step_and_the_answer() -> None:
    from pytest_llmperf.outputs import bisect as out

    question = dict(QUESTION, kind="commits", configs=["a" * 40, "b" * 40, "c" * 40, "d" * 40])
    state = bisect_state.State(question, labels={"c" * 40: "ggml: slower"})
    state.builds = {"a" * 40: {"build": "built", "seconds": 300.0, "ccache": {"hit_rate": 0.1}}}
    for step in (
        Step(3, "d" * 40, "regressed", "tg_tps", 0.7, 0.68, 0.72, seconds=20),
        Step(1, "b" * 40, "pass", "tg_tps", 1.0, 0.98, 1.02, seconds=30),
        Step(2, "c" * 40, "regressed", "tg_tps", 0.71, 0.69, 0.73, seconds=20),
    ):
        state.record(step)
    result = bisect.answer(4, state.steps)
    text = out.table(state, result)
    assert "| 0 | aaaaaaaaaaaa | 1 | - | good end | - | - | built 5.0 min, ccache 10% |" in text
    rows = [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| ")]
    assert rows[2:] == ["| 0", "| 1", "| 2", "| 3"]  # by position, the good end first
    assert "first_bad: [2] cccccccccccc (ggml: slower)" in text
    assert "last_good: [1] bbbbbbbbbbbb" in text
    doc = out.document(state, result, None)
    assert doc["first_bad"] == "c" * 40 and doc["last_good"] == "b" * 40
