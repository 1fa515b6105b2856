"""Sharded explorations on real servers: the shards try each schedule exactly once, their merged
report is the unsharded one, and shards share Hypothesis's example database through Redis."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from harness.errors import HarnessError
from harness.explore import Race
from harness.explore.exampledb import redis_examples
from harness.explore.scenario import explore_scenario
from harness.explore.shard import Shard
from harness.provision import Server
from harness.results import Outcome, RunResults
from harness.scenario.yaml_loader import load_file

from . import apps
from .conftest import ROOT, run_harness

FIXED = ROOT / "scenarios" / "bkci" / "explore_db_lock_fixed.yaml"  # holds: the space is exhausted
BROKEN = ROOT / "scenarios" / "bkci" / "explore_db_lock.yaml"  # a duplicate, after one preemption


@pytest.mark.backends("postgres")
def test_shards_try_each_schedule_exactly_once(race: Race) -> None:
    race.setup("CREATE TABLE counter (id int PRIMARY KEY, n int)")
    race.setup("INSERT INTO counter VALUES (1, 0)")
    race.teardown("DROP TABLE counter")
    race.actor("A", lambda ctx: apps.increment_for_update(ctx.connect()))
    race.actor("B", lambda ctx: apps.increment_for_update(ctx.connect()))
    race.check_sql("both_counted", "SELECT n FROM counter", equals=2)
    whole = race.explore(strategy="exhaustive", preemption_bound=2, max_schedules=1000)
    assert whole.passed and whole.exhausted and whole.shard is None
    assert len(whole.tried) == whole.schedules_run == len(set(whole.tried)) > 10
    for n in range(1, 6):
        parts = [race.explore(strategy="exhaustive", preemption_bound=2, max_schedules=1000, shard=Shard(k, n))
                 for k in range(1, n + 1)]
        assert Counter(s for p in parts for s in p.tried) == Counter(whole.tried), f"N={n}"
        assert all(p.exhausted and p.passed for p in parts)
        assert all(p.shard == (f"{k}/{n}" if n > 1 else None) for k, p in enumerate(parts, 1))
        assert all(p.probe_runs <= 2 * n for p in parts)  # the shared look at the top of the tree is small


def _explore(server: Server, path: Path, tmp: Path, shard: Shard | None, strategy: str | None) -> RunResults:
    outcome = explore_scenario(load_file(path), "postgres", server, strategy=strategy, shard=shard,
                               database_dir=str(tmp / f"examples-{path.stem}-{shard or 'whole'}".replace("/", "of")))
    return RunResults(outcomes=[outcome], servers={"postgres": f"{server.flavor} {server.version}"})


def _essentials(o: Outcome) -> tuple[object, ...]:
    return (o.scenario, o.backend, o.kind, o.passed, o.expected, o.violated, o.schedule, o.preemptions,
            o.stop_reason, o.exhausted, o.schedules_run if o.exhausted else None, o.shard)


def test_the_merged_report_of_shards_is_the_unsharded_one(pg_server: Server, tmp_path: Path) -> None:
    cases = [(FIXED, "exhaustive"), (BROKEN, None)]  # exhausted and passing; failing (auto: systematic first)
    whole = [_explore(pg_server, path, tmp_path, None, strategy).outcomes[0] for path, strategy in cases]
    assert whole[0].exhausted and whole[0].passed and whole[1].passed and whole[1].schedule  # found, as expected
    for n in (2, 3):
        files = []
        for k in range(1, n + 1):
            shard = RunResults(outcomes=[o for path, strategy in cases
                                         for o in _explore(pg_server, path, tmp_path, Shard(k, n), strategy).outcomes])
            assert all(o.shard == f"{k}/{n}" for o in shard.outcomes)
            files.append(tmp_path / f"shard-{k}-of-{n}.json")
            files[-1].write_text(json.dumps(shard.to_json()))
        done = run_harness("report", *map(str, files), "-o", str(tmp_path / "all.html"),
                           "--json", str(tmp_path / "all.json"), "--junit", str(tmp_path / "all.xml"))
        assert done.returncode == 0, done.stderr
        merged = RunResults.from_json(json.loads((tmp_path / "all.json").read_text()))
        assert [_essentials(o) for o in merged.outcomes] == [_essentials(o) for o in whole], f"N={n}"
        html = (tmp_path / "all.html").read_text()
        assert " ".join(whole[1].schedule) in html or whole[1].schedule[0] in html
        suite = ET.parse(tmp_path / "all.xml").getroot().find("testsuite")
        assert suite is not None and suite.get("tests") == "2" and suite.get("failures") == "0"


def test_a_missing_shard_is_named_and_nothing_claims_exhaustion(pg_server: Server, tmp_path: Path) -> None:
    one = _explore(pg_server, FIXED, tmp_path, Shard(1, 2), "exhaustive")
    assert one.outcomes[0].exhausted  # its own part
    (tmp_path / "one.json").write_text(json.dumps(one.to_json()))
    (tmp_path / "again.json").write_text(json.dumps(one.to_json()))
    done = run_harness("report", str(tmp_path / "one.json"), "-o", str(tmp_path / "r.html"),
                       "--json", str(tmp_path / "m.json"))
    assert done.returncode == 0 and "shard(s) 2/2 missing" in done.stderr
    (merged,) = RunResults.from_json(json.loads((tmp_path / "m.json").read_text())).outcomes
    assert not merged.exhausted and merged.stop_reason == "budget spent"
    done = run_harness("report", str(tmp_path / "one.json"), str(tmp_path / "again.json"), "-o", str(tmp_path / "r.html"))
    assert done.returncode == 0 and "were not merged" in done.stderr  # the same shard twice is not two halves


def test_shards_share_failures_through_redis(pg_server: Server, redis_server: Server, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    url = redis_server.info.with_db("5").dsn
    client = redis_examples(url).redis
    before = set(client.scan_iter(match=b"hypothesis-example:*"))
    monkeypatch.setenv("HARNESS_EXAMPLES_URL", url)
    first = _explore(pg_server, BROKEN, tmp_path, Shard(1, 2), "hypothesis").outcomes[0]
    assert first.passed and first.found_key and first.found_key[0] == 2  # found by Hypothesis's generation
    assert set(client.scan_iter(match=b"hypothesis-example:*")) - before, "nothing was stored in Redis"
    # another shard (a fresh local folder, so only Redis can tell it) meets the stored failure first
    other = _explore(pg_server, BROKEN, tmp_path / "elsewhere", Shard(2, 2), None).outcomes[0]
    assert other.found_key is not None and other.found_key[0] == 0 and other.schedules_run == 1
    assert other.schedule == first.schedule


def test_an_unreachable_examples_redis_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(HarnessError, match=r"HARNESS_EXAMPLES_URL: cannot reach Redis at redis://u:\*\*\*@127.0.0.1:1/"):
        redis_examples("redis://u:secret@127.0.0.1:1/0")
    with pytest.raises(HarnessError, match="is not a Redis URL"):
        redis_examples("http://example.invalid/")


@pytest.mark.parametrize("how", [["--shard", "3/2"], ["--shard", "two"]])
def test_a_bad_shard_is_a_usage_error_before_any_server_starts(how: list[str]) -> None:
    done = run_harness("explore", str(FIXED), "--backend", "postgres", *how)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("harness: error: --shard ") and "expected K/N with 1 <= K <= N" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_the_shard_from_the_environment_reaches_the_json_results(tmp_path: Path) -> None:
    done = run_harness("explore", str(FIXED), "--backend", "postgres", "--strategy", "exhaustive",
                       "--json", str(tmp_path / "r.json"), env={"HARNESS_SHARD": "2/2"})
    assert done.returncode == 0, done.stderr
    (outcome,) = RunResults.from_json(json.loads((tmp_path / "r.json").read_text())).outcomes
    assert outcome.shard == "2/2" and outcome.exhausted and outcome.passed
    bad = run_harness("explore", str(FIXED), "--backend", "postgres", env={"HARNESS_SHARD": "0/3"})
    assert bad.returncode == 2 and "HARNESS_SHARD '0/3': expected K/N" in bad.stderr


def test_the_derandomized_ci_profile_explores_with_and_without_shards(tmp_path: Path) -> None:
    """`ci` is derandomized, which Hypothesis allows only without an example database (it raised
    InvalidArgument before); a shard replaces derandomize by its own seed and keeps the database."""
    for extra in ([], ["--shard", "1/2"]):
        done = run_harness("explore", str(BROKEN), "--backend", "postgres", "--strategy", "hypothesis",
                           "--json", str(tmp_path / "r.json"), *extra, env={"HARNESS_PROFILE": "ci"})
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
        (outcome,) = RunResults.from_json(json.loads((tmp_path / "r.json").read_text())).outcomes
        assert outcome.passed and outcome.schedule and outcome.shard == ("1/2" if extra else None)
