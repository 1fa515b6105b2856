"""Stories from typed trace records (harness/report/story.py, labels.py, narrative.py, timeline.py)."""

from __future__ import annotations

import pytest

from harness.report.labels import short_key, sql_label
from harness.report.narrative import narrative
from harness.report.story import build_story
from harness.report.timeline import FULL, build_timeline
from harness.trace import ErrorInfo, Event, ResultSet, StepResult, Trace, WaitEdge


@pytest.mark.parametrize("sql, label", [
    ("SELECT COUNT(*) FROM sharding_routing_rule WHERE a = %s", "SELECT count sharding_routing_rule"),
    ("select n from public.counter where id = 1 for update", "SELECT counter FOR UPDATE"),
    ("SELECT n FROM counter LOCK IN SHARE MODE", "SELECT counter FOR SHARE"),
    ("INSERT INTO `rule` (a) VALUES (1)", "INSERT rule"),
    ("UPDATE counter SET n = n + 1", "UPDATE counter"),
    ("DELETE FROM t WHERE id = 2", "DELETE t"),
    ("start transaction isolation level serializable", "BEGIN"),
    ("COMMIT", "COMMIT"), ("rollback", "ROLLBACK"),
    ("SET lock_timeout = 100", "SET lock_timeout"),
    ("SELECT pg_advisory_lock(1)", "SELECT pg_advisory_lock(…)"),
])
def test_statement_labels_are_verb_and_table(sql: str, label: str) -> None:
    assert sql_label(sql) == label


def test_long_keys_are_cut_in_the_middle() -> None:
    assert short_key("short") == "short"
    cut = short_key("SHARDING_ROUTING_RULE:c1:PROCESS:DB:r1:add", 20)
    assert len(cut) == 20 and cut.startswith("SHARDING") and cut.endswith("r1:add")


def _ok(rows: list[list[str | None]] | None = None) -> StepResult:
    return StepResult([ResultSet(["n"], rows, "SELECT 1")] if rows else [])


def _lock_trace() -> Trace:
    """A takes a Redis lock and begins, the lease expires, B takes it; B's update waits for A's row
    lock; A is rolled back by the server (deadlock)."""
    lock = {"lock": "redis lock", "key": "ns:k1", "name": "k1"}
    return Trace("s", "mysql", [], sessions=["A", "B"], events=[
        Event(0.0, "launch", "A", "A1", "redis:acquire:ns:k1"),
        Event(0.1, "lock", "A", "A1", detail={"op": "acquire", "ok": True, **lock}),
        Event(0.2, "launch", "A", "A2", "BEGIN"),
        Event(0.3, "complete", "A", "A2", "BEGIN", _ok()),
        Event(0.4, "launch", "A", "A3", "UPDATE t SET n = 1"),
        Event(0.5, "complete", "A", "A3", "UPDATE t SET n = 1", _ok()),
        Event(0.6, "fault", None, detail={"fault": "lease expiry", "key": "k1", "holder": "A:123"}),
        Event(0.7, "launch", "B", "B1", "redis:acquire:ns:k1"),
        Event(0.8, "lock", "B", "B1", detail={"op": "acquire", "ok": True, **lock}),
        Event(0.9, "launch", "B", "B2", "UPDATE t SET n = 2"),
        Event(1.0, "blocked", "B", "B2", "UPDATE t SET n = 2", waits=[WaitEdge("B", "A", "row lock")]),
        Event(1.1, "launch", "A", "A4", "SELECT n FROM t"),
        Event(1.2, "complete", "A", "A4", "SELECT n FROM t",
              StepResult(error=ErrorInfo("1213", "Deadlock found"))),
        Event(1.2, "rollback", "A", "A4", detail={"by_server": True, "code": "1213"}),
        Event(1.3, "complete", "B", "B2", "UPDATE t SET n = 2", _ok(), detail={"after_wait": True}),
        Event(1.4, "check", step="one", sql="SELECT 1", detail={"ok": False, "expected": "1", "actual": "2"}),
    ])


def test_spans_come_from_lock_rollback_and_fault_records() -> None:
    story = build_story(_lock_trace())
    assert [m.label for m in story.moves] == ["lock k1", "BEGIN", "UPDATE t", "⚡ lease expiry", "lock k1",
                                              "UPDATE t", "SELECT t", "UPDATE t"]
    assert story.moves[-1].kind == "resume" and story.moves[-1].resumes == 6
    spans = {(s.session, s.kind, s.name, s.start, s.end, s.how) for s in story.spans}
    assert spans == {("A", "lock", "k1", 1, 4, "expired"), ("A", "tx", "transaction", 2, 7, "server rollback"),
                     ("B", "lock", "k1", 5, 8, "held"), ("A", "waited", "row lock", 6, 8, "held")}
    text = narrative(story)
    assert text[0] == "Moves 1–3, A: took lock k1 (1), began a transaction (2) and updated t (3)."
    assert text[1] == "Move 4, the harness: fault lease expiry (4)."
    assert text[2] == ("Moves 5–6, B: took lock k1 while A's transaction was still open (5) and updated t "
                       "(6; waited for A (row lock)).")
    assert "failed: ERROR 1213: Deadlock found" in text[3] and "the server rolled the transaction back" in text[3]
    assert text[-1] == "After the last move, check one failed: expected 1, found 2."


def test_forty_moves_fit_half_of_1400_px() -> None:
    events = [Event(i * 0.001, "launch", "AB"[i % 2], f"s{i}", "UPDATE t SET n = n + 1") for i in range(40)]
    tl = build_timeline(build_story(Trace("s", "postgres", [], events=events, sessions=["A", "B"])), "o1", FULL)
    assert len(tl.boxes) == 40 and tl.width <= 1400 / 2 - 24
    assert all(b.label == "UPDATE t" for b in tl.boxes)


def test_a_lock_wait_ends_at_the_retry() -> None:
    lock = {"lock": "redis lock", "key": "ns:k1", "name": "k1"}
    trace = Trace("s", "mysql", [], sessions=["A", "B"], events=[
        Event(0.0, "launch", "A", "A1", "redis:acquire:ns:k1"),
        Event(0.1, "lock", "A", "A1", detail={"op": "acquire", "ok": True, **lock}),
        Event(0.2, "launch", "B", "B1", "redis:acquire:ns:k1"),
        Event(0.3, "blocked", "B", "B1", "retry redis lock ns:k1", waits=[WaitEdge("B", "A", "redis lock", "ns:k1")]),
        Event(0.4, "launch", "A", "A2", "redis:release:ns:k1"),
        Event(0.5, "lock", "A", "A2", detail={"op": "release", "ok": True, **lock}),
        Event(0.6, "launch", "B", "B2", "retry redis lock ns:k1"),
        Event(0.7, "launch", "B", "B3", "redis:acquire:ns:k1"),
        Event(0.8, "lock", "B", "B3", detail={"op": "acquire", "ok": True, **lock}),
    ])
    story = build_story(trace)
    assert [m.label for m in story.moves] == ["lock k1", "lock wait k1", "unlock k1", "retry lock k1", "lock k1"]
    assert story.moves[3].resumes == 2 and all(s.kind == "lock" for s in story.spans)
    assert narrative(story)[1] == "Move 2, B: waited for lock k1 held by A (2)."
    tl = build_timeline(story, "o1")
    assert [a.cls for a in tl.arrows] == ["wait"] and len(tl.bars) == 1


def test_a_transaction_without_begin_starts_at_its_first_statement() -> None:
    events = []
    for i, sql in enumerate(["start", "INSERT INTO t VALUES (1)", "COMMIT", "UPDATE t SET n = 2", "ROLLBACK"]):
        events.append(Event(i, "launch", "A", f"A{i}", sql))
        if sql != "start":
            events.append(Event(i + 0.5, "complete", "A", f"A{i}", sql, _ok()))
    story = build_story(Trace("s", "postgres", [], events=events, sessions=["A"]))
    assert [(s.start, s.end, s.how) for s in story.spans] == [(2, 3, "commit"), (4, 5, "rollback")]
