"""Server crash and restart placed by the explorer, durability checks against the operation history,
and indeterminate (unknown) outcomes -- on private PostgreSQL and MariaDB servers started with fsync on."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError, ScenarioError
from harness.explore import Race
from harness.explore.history import FAIL, OK, UNKNOWN, Op, durability_violations
from harness.provision import attach
from harness.scenario.yaml_loader import load_yaml
from scenarios.faults.journal import append_entries

from .expect import assert_searched

UNLOGGED = {"postgres": "CREATE UNLOGGED TABLE journal (entry int, kind varchar(10))",
            "mysql": "CREATE TABLE journal (entry int, kind varchar(10)) ENGINE=MEMORY"}


@pytest.fixture
def crash_race(server_factory, backend):
    server = server_factory(backend, fsync=True)
    with Race(server.create_database(), name=f"crash-{backend}") as race:
        yield race


def journal_race(race: Race, table_sql: str = "CREATE TABLE journal (entry int, kind varchar(10))") -> Race:
    race.setup(table_sql)
    race.teardown("DROP TABLE IF EXISTS journal")
    race.actor("W", lambda ctx: append_entries(ctx, entries=3))
    race.fault("crash", race.crash_server())
    race.check_durable("durable", "SELECT entry FROM journal", rows_per_op=2)
    return race


def statuses(outcome) -> list[str]:
    return [op.status for op in outcome.results["W"].ops]


def test_every_placement_of_a_crash_keeps_acknowledged_entries(crash_race: Race, tmp_path) -> None:
    result = journal_race(crash_race).assert_no_race(max_schedules=100, database_dir=tmp_path)
    assert_searched(result, 100)
    assert result.exhausted  # every distinct placement of the crash (and none) was tried


def test_a_crash_mid_transaction_fails_it_and_the_server_comes_back(crash_race: Race) -> None:
    journal_race(crash_race)
    # W: start, insert, insert, [crash] -> its COMMIT fails; it reconnects for entries 1 and 2
    outcome = crash_race.replay("W W W crash")
    assert outcome.passed, outcome.describe()
    assert statuses(outcome) == [UNKNOWN, OK, OK]  # the COMMIT met a dead connection: unknown to W
    crash = [e for e in outcome.trace.events if e.kind == "fault" and e.detail.get("fault") == "server crash"]
    assert len(crash) == 1 and crash[0].detail["restart_ms"] > 0
    assert outcome.results["W"].value == 2
    rows = crash_race.replay("W W crash").results["W"]  # crash between the two inserts: a failed entry
    assert [op.status for op in rows.ops] == [FAIL, OK, OK]


def test_an_unlogged_table_loses_acknowledged_entries_in_a_crash(crash_race: Race, tmp_path, backend) -> None:
    found = journal_race(crash_race, UNLOGGED[backend]).assert_finds_race(max_schedules=100, database_dir=tmp_path)
    assert "crash" in found.failure.schedule
    assert any("acknowledged append" in v and "has 0 of 2 row(s)" in v for v in found.failure.violations)
    again = crash_race.replay(found.failure.schedule)
    assert again.violations == found.failure.violations


def test_a_lost_ack_is_unknown_and_the_durability_check_accepts_either_outcome(race: Race) -> None:
    race.setup("CREATE TABLE journal (entry int, kind varchar(10))")
    race.teardown("DROP TABLE journal")
    race.actor("W", lambda ctx: append_entries(ctx, entries=1))
    race.fault("ack", race.lose_commit_ack("W"))
    race.check_durable("durable", "SELECT entry FROM journal", rows_per_op=2)
    outcome = race.replay("ack W")
    assert statuses(outcome) == [UNKNOWN]  # committed, but W never heard so
    assert outcome.passed, outcome.describe()
    assert outcome.results["W"].value == 0
    assert [e.detail["status"] for e in outcome.trace.events if e.kind == "op"] == [UNKNOWN]


def test_a_crash_needs_a_server_the_harness_may_kill(pg_server) -> None:
    shared = attach(pg_server.to_json())
    database = shared.create_database()
    try:
        with pytest.raises(HarnessError, match="server_factory"):
            Race(database).crash_server()
    finally:
        database.drop()


def test_durability_rules() -> None:
    ops = [Op("W", "add", 1, OK), Op("W", "add", 2, FAIL), Op("W", "add", 3, UNKNOWN), Op("W", "add", 4, UNKNOWN)]
    assert durability_violations(ops, [(1,), (1,), (3,), (3,)], rows_per_op=2) == []
    problems = durability_violations(ops, [(1,), (2,), (4,), (9,)], rows_per_op=2)
    assert problems == ["acknowledged add 1 of W has 1 of 2 row(s)", "failed add 2 of W left 1 row(s)",
                        "add 4 of W (outcome unknown) is half there: 1 of 2 row(s)",
                        "1 row(s) with value '9' that no operation wrote"]


def test_yaml_durable_checks_and_crash_faults_are_validated() -> None:
    with pytest.raises(ScenarioError, match=r"x\.yaml:4: .*needs `actors:`"):
        load_yaml("sessions: {a: {steps: {a1: SELECT 1}}}\n"
                           "interleavings: [a1]\n"
                           "checks:\n"
                           "  d: {sql: SELECT 1, expect: durable}\n", "x.yaml")
    with pytest.raises(ScenarioError, match=r"x\.yaml:3: .*crash_server: true"):
        load_yaml("actors: {W: {call: 'm:f'}}\n"
                           "faults:\n"
                           "  c: {crash_server: W}\n"
                           "explore: {schedules: 5}\n", "x.yaml")
