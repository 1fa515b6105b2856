"""The seed systems (Kinto stamps, bk-ci routing rules) on real servers: the replay scenarios show the
bug in the buggy interleaving and hold for the fixed variant; the models' Python code behaves."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psycopg
import pymysql
import pytest
import redis
import yaml

from harness.actions import build_actions
from harness.clock import DbClock, query
from harness.locks import RedisLock, new_token
from harness.provision import Database, Server
from harness.results import Outcome
from harness.runner import run_scenario
from harness.scenario.yaml_loader import load_file
from scenarios.bkci import rules
from scenarios.kinto import storage

from .conftest import ROOT

KINTO = ROOT / "scenarios" / "kinto"
BKCI = ROOT / "scenarios" / "bkci"


def _run(path: Path, database: Database, backend: str, redis_server: Server | None = None) -> dict[str, Outcome]:
    scenario = load_file(path)
    redis_info = (lambda: redis_server.info) if redis_server is not None else None
    outcomes = run_scenario(scenario, backend, database.server, database=database,
                            actions=build_actions(backend, redis_info))
    assert [o.error for o in outcomes if o.error] == []
    return {o.label: o for o in outcomes}


def _waits_of(outcome: Outcome, step: str) -> list[tuple[str | None, str]]:
    assert outcome.trace is not None
    return [(w.holder, w.lock) for e in outcome.trace.events if e.kind == "blocked" and e.step == step
            for w in e.waits]


def test_kinto_replay(database: Database, backend: str) -> None:
    out = _run(KINTO / "replay.yaml", database, backend)
    assert all(o.passed for o in out.values()), {k: o.problems for k, o in out.items()}
    clash = out["clash"]
    assert clash.trace is not None
    err = clash.trace.result_of("b_history_clash").error  # type: ignore[union-attr]
    assert err is not None and err.code == {"postgres": "23505", "mysql": "1062"}[backend]
    assert ("a", "unique key (transaction)" if backend == "postgres" else "row lock") in _waits_of(clash, "b_history_clash")
    # PostgreSQL loses B's record with the whole transaction; MariaDB undoes only the statement
    assert clash.violated == (["b_record_kept"] if backend == "postgres" else ["every_record_has_history"])
    for name in ("a-rolls-back", "a-commits-early", "serial"):
        assert out[name].violated == [] and out[name].expected == "holds"


def test_kinto_locked_variant_holds_on_the_clash_schedule(database: Database, backend: str) -> None:
    out = _run(KINTO / "replay_locked.yaml", database, backend)
    assert all(o.passed for o in out.values()), {k: o.problems for k, o in out.items()}
    waits = _waits_of(out["clash-schedule-locked"], "b_history_wait")
    assert ("a", "advisory lock" if backend == "postgres" else "row lock") in waits


def test_bkci_replay_with_database_locks(database: Database, backend: str) -> None:
    out = _run(BKCI / "replay.yaml", database, backend)
    assert all(o.passed for o in out.values()), {k: o.problems for k, o in out.items()}
    assert out["unlock-before-commit"].violated == ["one_row_per_rule"]
    assert out["commit-inside-lock"].violated == []
    assert ("a", "advisory lock" if backend == "postgres" else "user lock") in \
        _waits_of(out["commit-inside-lock"], "b_lock_wait")


def test_bkci_replay_with_redis_lock(database: Database, backend: str, redis_server: Server) -> None:
    out = _run(BKCI / "replay_redis.yaml", database, backend, redis_server)
    assert all(o.passed for o in out.values()), {k: o.problems for k, o in out.items()}
    assert out["unlock-before-commit"].violated == ["one_row_per_rule"]
    assert out["lease-expires-inside-lock"].violated == ["one_row_per_rule"]
    # the Redis wait is invisible to the database; the lock action reports it, naming the holder session
    waits = _waits_of(out["commit-inside-lock"], "b_lock_wait")
    assert waits and all(w == ("a", "redis lock") for w in waits)
    lease = out["lease-expires-inside-lock"].trace
    assert lease is not None
    assert lease.result_of("f_expire").last_rows == [["expire_lease", "SHARDING_ROUTING_RULE:c1:m1:DB:r1:add", "a"]]  # type: ignore[union-attr]
    assert lease.result_of("a_unlock").last_rows == [["f"]]  # type: ignore[union-attr]  # b's key survives
    assert lease.result_of("b_unlock").last_rows == [["t"]]  # type: ignore[union-attr]


@pytest.mark.parametrize("path,names", [
    (KINTO / "replay.yaml", [("schema_{b}.sql",)]),
    (KINTO / "replay_locked.yaml", [("schema_{b}.sql",), ("schema_{b}_locked.sql",)]),
    (BKCI / "replay.yaml", [("schema_{b}.sql",)]),
    (BKCI / "replay_redis.yaml", [("schema_{b}.sql",)]),
])
def test_scenario_setup_is_the_schema_file(path: Path, names: list[tuple[str]]) -> None:
    """The YAML carries the schema inline (setup is SQL); it must not drift from the .sql files."""
    setup = yaml.safe_load(path.read_text())["setup"]
    blocks = setup if isinstance(setup, list) else [setup]
    assert len(blocks) == len(names)
    for block, (name,) in zip(blocks, names):
        for backend in ("postgres", "mysql"):
            assert block[backend].strip() == (path.parent / name.format(b=backend)).read_text().strip()


# -- the models' Python code ---------------------------------------------------------------------

@pytest.mark.parametrize("variant", storage.VARIANTS)
def test_kinto_create_record_with_frozen_clock_bumps_history(database: Database, backend: str, variant: str) -> None:
    clock = DbClock(backend)
    with database.connect() as admin:
        storage.install_schema(admin, variant=variant)
    with database.connect() as a, database.connect(autocommit=False) as b:
        for conn in (a, b):  # the harness freezes the connections; the model never knows
            clock.freeze(conn, "2024-01-01 00:00:00+00")
        t = 1704067200000
        assert storage.create_record(a, "b", "c1", "r1", {"n": 1}, variant=variant) == t
        assert storage.create_record(b, "b", "c2", "r2", {"n": 2}, variant=variant) == t  # other collection
        stamps = query(a, "SELECT id, last_modified FROM objects WHERE resource_name = 'history' ORDER BY id")
        assert [(i, int(s)) for i, s in stamps] == [("h-r1", t), ("h-r2", t + 1)]  # same ms: bumped


def test_kinto_create_record_rolls_back_on_error(database: Database, backend: str) -> None:
    with database.connect() as conn:
        storage.install_schema(conn)
        storage.create_record(conn, "b", "c1", "r1", {})
        with pytest.raises((psycopg.Error, pymysql.MySQLError)):
            storage.create_record(conn, "b", "c1", "r1", {})  # duplicate id: the whole change is undone
        assert query(conn, "SELECT count(*) FROM objects")[0][0] == 2


@dataclass
class HookedLock:
    """A real lock that runs ``after_release`` right after releasing: a deterministic interleaving
    point (another writer runs exactly when the first has let go of the lock)."""

    inner: Any
    after_release: Callable[[], None] = lambda: None
    releases: list[bool] = field(default_factory=list)

    def acquire(self, timeout: float | None = None) -> bool:
        return self.inner.acquire(timeout)

    def release(self) -> bool:
        released = self.inner.release()
        self.releases.append(released)
        hook, self.after_release = self.after_release, lambda: None
        hook()
        return released


@pytest.mark.parametrize("variant,rows", [("unlock-before-commit", 2), ("commit-inside-lock", 1)])
def test_bkci_save_rule_with_redis_lock(database: Database, backend: str, redis_server: Server,
                                        variant: str, rows: int) -> None:
    client = redis.Redis(host=redis_server.info.host, port=redis_server.info.port,
                         password=redis_server.info.password or None)
    rule = rules.Rule("c1", "m1", "DB", "r1", "rule-x")
    key = f"test:{secrets.token_hex(4)}:{rule.lock_key}"
    with database.connect() as admin:
        query(admin, (BKCI / f"schema_{backend}.sql").read_text())
    try:
        with database.connect() as ca, database.connect() as cb:
            results: list[bool] = []
            lock_b = RedisLock(client, key, token=new_token("b"))
            second = lambda: results.append(rules.save_rule(cb, lock_b, rule, variant=variant, timeout=0))  # noqa: E731
            lock_a = HookedLock(RedisLock(client, key, token=new_token("a")), second)
            results.insert(0, rules.save_rule(ca, lock_a, rule, variant=variant))
            assert results == [True, rows == 2]
            assert query(ca, "SELECT COUNT(*) FROM sharding_routing_rule")[0][0] == rows
            assert client.get(key) is None
    finally:
        client.close()
