"""Merging results files (harness/results_merge.py): shards into one exploration, everything else kept."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from harness.errors import HarnessError
from harness.results import Outcome, RunResults
from harness.results import load_results as load_run
from harness.results_merge import merge_results, write_junit


def exploration(shard: str | None, *, runs: int = 10, found: list[str] | None = None, key: list[int] | None = None,
                exhausted: bool = False, expected: str = "holds") -> Outcome:
    failing = found is not None
    passed = failing == expected.startswith("violates")
    problems = [] if passed else (["check one_rule violated"] if failing else
                                  [f"expected check one_rule to be violated, but {runs} schedules all held"])
    return Outcome("s", "s.yaml", "postgres", "exploration", found or [], passed, expected, problems=problems,
                   kind="exploration", schedules_run=runs, exhausted=exhausted, shard=shard, found_key=key,
                   stop_reason="failure found" if failing else ("space exhausted" if exhausted else "budget spent"))


def test_the_first_failure_in_the_unsharded_order_wins_and_schedules_add_up() -> None:
    shards = [exploration("1/3", runs=7, found=["B", "A"], key=[1, 0, 1]),
              exploration("2/3", runs=4, found=["A", "B"], key=[1, 0, 0, 1]),
              exploration("3/3", runs=9, exhausted=True)]
    result, warnings = merge_results([RunResults(outcomes=[o]) for o in shards])
    (merged,) = result.outcomes
    assert warnings == []
    assert merged.schedule == ["A", "B"] and merged.schedules_run == 20 and merged.shard is None
    assert merged.stop_reason == "failure found" and not merged.exhausted


def test_exhausted_only_when_every_shard_is_there_and_exhausted() -> None:
    (merged,) = merge_results([RunResults(outcomes=[exploration(f"{k}/2", exhausted=True)]) for k in (1, 2)])[0].outcomes
    assert merged.exhausted and merged.stop_reason == "space exhausted" and merged.passed and merged.schedules_run == 20
    result, warnings = merge_results([RunResults(outcomes=[exploration("1/2", exhausted=True)])])
    (merged,) = result.outcomes
    assert not merged.exhausted and merged.stop_reason == "budget spent"
    assert warnings == ["s [postgres]: shard(s) 2/2 missing; the merged exploration covers only the shards given"]


def test_an_expected_violation_nobody_found_counts_every_shard() -> None:
    (merged,) = merge_results([RunResults(outcomes=[exploration(f"{k}/2", expected="violates: one_rule")])
                               for k in (1, 2)])[0].outcomes
    assert not merged.passed
    assert merged.problems == ["expected check one_rule to be violated, but 20 schedules all held"]


def test_what_is_not_one_sharded_exploration_stays_side_by_side() -> None:
    runs = [RunResults(outcomes=[exploration(None)]), RunResults(outcomes=[exploration(None)])]
    merged, warnings = merge_results(runs)
    assert len(merged.outcomes) == 2 and warnings == []
    merged, warnings = merge_results([RunResults(outcomes=[exploration("1/2")]), RunResults(outcomes=[exploration("1/2")])])
    assert len(merged.outcomes) == 2 and "were not merged" in warnings[0]


def test_listed_interleavings_appear_once_a_failing_copy_winning() -> None:
    ok = Outcome("s", "s.yaml", "postgres", "serial", ["a1", "b1"], True, "holds")
    bad = Outcome("s", "s.yaml", "postgres", "serial", ["a1", "b1"], False, "holds", problems=["x"])
    merged, _ = merge_results([RunResults(outcomes=[ok]), RunResults(outcomes=[bad])])
    assert merged.outcomes == [bad]


def test_junit_has_one_case_per_outcome_with_the_replay_in_failures(tmp_path: Path) -> None:
    bad = Outcome("s", "s.yaml", "postgres", "serial", ["a1", "b1"], False, "holds", problems=["x \x1b[31m"],
                  error=None)
    path = write_junit(RunResults(outcomes=[bad, exploration(None)]), tmp_path / "j" / "all.xml")
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "2" and suite.get("failures") == "1"
    failure = suite.find("testcase/failure")
    assert failure is not None and "harness run s.yaml" in (failure.text or "") and "\x1b" not in (failure.text or "")


@pytest.mark.parametrize("text, message", [("{", "is not JSON"), ("[]", "not a harness results file"),
                                           ('{"schema": 99, "outcomes": []}', "newer than this harness reads"),
                                           ('{"outcomes": [{"scenario": 1}]}', "does not match the results schema")])
def test_a_bad_results_file_is_named(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "r.json").write_text(text)
    with pytest.raises(HarnessError, match=message):
        load_run(tmp_path / "r.json")
    with pytest.raises(HarnessError, match="cannot read results file"):
        load_run(tmp_path / "missing.json")
