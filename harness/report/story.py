"""What happened in one trace, move by move: labelled moves, transaction and lock spans, checks.

Every view (HTML timeline, narrative, text trace, JSON ``story``) is drawn from this one model, which is
built from the trace's typed records only: launch/complete/blocked events give moves, their ``sql``
field the label, ``lock`` events lock spans, ``rollback`` events a server rollback, ``check`` events
the checks.  A *move* is one launch (a scheduling decision or a listed step), or a step going on after
it waited, or a fault / hang the harness recorded between moves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..trace import ErrorInfo, Event, Trace, WaitEdge
from .labels import rows_of, sql_label, verb

#: how a move ended: ok | error | blocked (never resumed) | point (a scheduling point) | cancelled | open
STATUSES = ("ok", "error", "blocked", "point", "cancelled", "open")


@dataclass
class Move:
    n: int  # 1-based position in the story
    session: str | None  # None: a global event (a server crash, a hang)
    step: str
    kind: str  # sql | begin | commit | rollback | lock | unlock | lock-wait | resume | start | point | fault | hang | action
    label: str  # what it did, short: "INSERT rule", "lock r1", "COMMIT"
    t: float
    sql: str | None = None
    params: str | None = None
    columns: list[str] | None = None
    rows: list[list[str | None]] = field(default_factory=list)
    error: str | None = None
    status: str = "open"
    waits: list[WaitEdge] = field(default_factory=list)
    lock_key: str | None = None  # lock / unlock / lock-wait: the key as the code named it
    resumes: int | None = None  # resume: the move that waited
    notes: list[str] = field(default_factory=list)  # notices, deadlock victim, op results, ...

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: v for k, v in d.items() if v not in (None, [], "")}


@dataclass
class Span:
    """A transaction or a lock held by one session, from one move to another (inclusive)."""

    session: str
    kind: str  # "tx" | "lock" | "waited" (a server lock another session waited for)
    name: str  # "transaction", the lock key, or the server lock's kind
    start: int
    end: int
    how: str  # tx: commit | rollback | server rollback | connection lost | open; lock: release | expired | lost | held

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckRow:
    name: str
    ok: bool
    expected: str
    actual: str
    sql: str | None

    @property
    def sentence(self) -> str:
        """Expected vs actual in plain words."""
        if self.ok:
            return f"check {self.name} holds: expected {self.expected}, found {self.actual}"
        return f"check {self.name} failed: expected {self.expected}, found {self.actual}"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "sentence": self.sentence}


@dataclass
class Story:
    sessions: list[str]
    moves: list[Move] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    checks: list[CheckRow] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        from .narrative import narrative  # the sentences are derived from the same records

        return {"moves": [m.to_json() for m in self.moves], "spans": [s.to_json() for s in self.spans],
                "checks": [c.to_json() for c in self.checks], "narrative": narrative(self)}

    def span_at(self, session: str, kind: str, move: int) -> Span | None:
        return next((s for s in self.spans if s.session == session and s.kind == kind and s.start <= move <= s.end),
                    None)


def error_text(err: ErrorInfo) -> str:
    return f"{err.severity} {err.code or ''}: {err.message}".replace("  ", " ")


def _launch_label(e: Event) -> tuple[str, str]:
    """(kind, label) of a launched move, before its completion or lock record refines it."""
    action = e.detail.get("action")
    if action:
        return "action", str(action)
    sql = (e.sql or "").strip()
    if sql.startswith("resume after "):  # the scheduler's point for going on after a wait
        return "point", "go on"
    if sql in ("start", ""):
        return ("start", "start") if sql == "start" else ("point", e.step or "?")
    v = verb(sql)
    if v in ("BEGIN", "COMMIT", "ROLLBACK"):
        return v.lower(), v
    if ":" in sql and " " not in sql:  # a lock client's scheduling point: its lock record names it
        return "point", e.step or "?"
    return "sql", sql_label(sql)


class _Builder:
    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.story = Story(list(trace.sessions))
        self.open: dict[tuple[str | None, str | None], Move] = {}  # launched, not yet complete
        self.last: dict[str, Move] = {}
        self.tx: dict[str, int] = {}  # session -> start move of its open transaction
        self.tx_end: dict[str, int] = {}  # session -> where its last transaction ended
        self.locks: dict[tuple[str, str], int] = {}  # (session, key) -> start move
        self.waited: list[tuple[Move, WaitEdge]] = []
        # a lock's own key -> the key as the code named it (``lock`` records carry both)
        self.names = {str(e.detail["key"]): str(e.detail["name"]) for e in trace.events
                      if e.kind == "lock" and e.detail.get("name") and e.detail.get("key")}

    def add(self, e: Event, kind: str, label: str, **kw: Any) -> Move:
        m = Move(len(self.story.moves) + 1, e.session, e.step or "", kind, label, e.t, **kw)
        self.story.moves.append(m)
        if e.session is not None:
            if e.session not in self.story.sessions:
                self.story.sessions.append(e.session)
            self.last[e.session] = m
        return m

    def close_tx(self, session: str, end: int, how: str) -> None:
        self.tx_end[session] = end
        start = self.tx.pop(session, None)
        if start is not None:
            self.story.spans.append(Span(session, "tx", "transaction", start, end, how))

    def close_lock(self, session: str, key: str, end: int, how: str) -> None:
        start = self.locks.pop((session, key), None)
        if start is not None:
            self.story.spans.append(Span(session, "lock", key, start, end, how))

    def transaction_edges(self, m: Move) -> None:
        if m.session is None:
            return
        if m.kind == "begin":  # at its launch: a transaction starts with its BEGIN, even one that waits
            self.close_tx(m.session, m.n - 1, "open")
            self.tx[m.session] = m.n
        elif m.kind in ("commit", "rollback") and m.status != "error":
            if m.session not in self.tx:  # no BEGIN: the transaction began with its first statement
                first = next((x.n for x in self.story.moves if x.session == m.session and x.kind == "sql"
                              and x.n > self.tx_end.get(m.session, 0)), None)
                if first is not None:
                    self.tx[m.session] = first
            self.close_tx(m.session, m.n, m.kind)

    def complete(self, e: Event) -> None:
        key = (e.session, e.step)
        m = self.open.pop(key, None)
        res = e.result
        err = error_text(res.error) if res is not None and res.error is not None else None
        rows = rows_of(res, e.detail.get("rows"))
        cols = next((rs.columns for rs in reversed(res.results) if rs.rows is not None), None) if res else None
        if m is not None and (m.status == "blocked" or e.detail.get("after_wait")):
            what = m.label
            r = self.add(e, "resume", what, sql=m.sql, params=m.params, resumes=m.n)
            m.status = "ok" if m.status == "blocked" else m.status
            m = r
        elif m is None:  # completed without a recorded launch: still show it
            kind, label = _launch_label(e)
            m = self.add(e, kind, label, sql=e.sql)
        m.status = "error" if err else "ok"
        m.error, m.rows, m.columns = err, rows, cols
        if e.detail.get("params"):
            m.params = str(e.detail["params"])
        if m.kind == "action" and res is not None and res.results and res.results[0].command:
            m.label = str(res.results[0].command)  # the action's own tag: "LOCK redis k1", "FAULT ..."
            self.action_span(m, res.results[0].command)
        if e.detail.get("connection_lost"):
            m.notes.append("connection lost")
            if m.session:
                self.close_tx(m.session, m.n, "connection lost")
        if e.detail.get("outside_transaction"):
            m.notes.append("ran outside any transaction: the server had rolled it back")
        if m.kind == "resume":
            origin = self.story.moves[(m.resumes or 1) - 1]
            if origin.kind in ("commit", "rollback"):
                m.kind = origin.kind
        if m.kind in ("commit", "rollback"):
            self.transaction_edges(m)

    def action_span(self, m: Move, command: str) -> None:
        """YAML lock steps: the action's result tag names the key (``LOCK redis k1`` / ``UNLOCK ...``)."""
        words = command.split(" ", 2)
        if m.session is None or len(words) < 3 or m.status != "ok":
            return
        if words[0] == "LOCK":
            m.kind, m.lock_key = "lock", words[2]
            self.locks[(m.session, words[2])] = m.n
        elif words[0] == "UNLOCK":
            m.kind, m.lock_key = "unlock", words[2]
            self.close_lock(m.session, words[2], m.n, "release")

    def lock(self, e: Event) -> None:
        d = e.detail
        name = str(d.get("name") or d.get("key") or "?")
        m = self.open.get((e.session, e.step)) or (self.last.get(e.session) if e.session else None)
        if m is None or e.session is None:
            return
        acquire, ok = d.get("op") == "acquire", bool(d.get("ok"))
        m.kind, m.lock_key, m.status, m.sql = ("lock" if acquire else "unlock"), name, "ok", None
        m.label = ("lock " if acquire else "unlock ") + name + ("" if ok else
                                                                         " (failed)" if acquire else " (not held)")
        m.notes.append(f"{d.get('lock', 'lock')} {d.get('key')}")
        if acquire and ok:
            self.locks[(e.session, name)] = m.n
        elif not acquire:
            self.close_lock(e.session, name, m.n, "release" if ok else "lost")

    def blocked(self, e: Event) -> None:
        m = self.open.get((e.session, e.step))
        if m is None:
            return
        m.status, m.waits = "blocked", list(e.waits)
        for w in e.waits:
            if m.kind == "point":  # a lock client's point that found the lock taken (Redis, GET_LOCK...)
                key = self.names.get(w.detail, w.detail) if w.detail else w.lock
                m.kind, m.lock_key, m.label, m.sql = "lock-wait", key, "lock wait " + key, None
            elif w.holder and w.holder in self.story.sessions:  # a lock wait's holder has its lock span
                self.waited.append((m, w))
        if not e.waits and e.detail.get("held_by_step"):
            m.notes.append(f"held by step {e.detail['held_by_step']} (annotation)")

    def fault(self, e: Event) -> None:
        d = e.detail
        name = str(d.get("fault") or e.step or "fault")
        armed = " armed" if d.get("armed") else ""
        label = f"⚡ {name}{armed}"
        victim = d.get("victim")
        m = self.add(e, "fault", label, sql=e.sql, status="ok")
        m.notes.extend(f"{k}: {d[k]}" for k in sorted(d) if k not in ("fault",))
        holder = d.get("holder")
        if name in ("lease expiry", "expire_lease") and d.get("key"):
            for (session, key) in list(self.locks):
                if key == d["key"] and (holder is None or str(holder).startswith(session)):
                    self.close_lock(session, key, m.n, "expired")
        if victim and isinstance(victim, str):
            m.notes.append(f"victim {victim}")

    def run(self) -> Story:
        for e in self.trace.events:
            key = (e.session, e.step)
            if e.kind == "launch":
                for k, prev in list(self.open.items()):  # a scheduling point the actor moved past
                    if k[0] == e.session and prev.status == "open":
                        prev.status = "point" if prev.kind in ("start", "point") else "ok"
                        del self.open[k]
                prev_move = self.last.get(e.session) if e.session else None
                if prev_move is not None and prev_move.kind == "lock-wait" and prev_move.status == "blocked":
                    # the actor's next move after a lock wait is its retry: the wait ends here
                    prev_move.status = "ok"
                    self.open[key] = self.add(e, "resume", f"retry lock {prev_move.lock_key}",
                                              resumes=prev_move.n, lock_key=prev_move.lock_key)
                    continue
                kind, label = _launch_label(e)
                self.open[key] = self.add(e, kind, label, sql=e.sql)
                self.transaction_edges(self.open[key])
            elif e.kind == "complete":
                self.complete(e)
            elif e.kind == "blocked":
                self.blocked(e)
            elif e.kind == "lock":
                self.lock(e)
            elif e.kind == "rollback" and e.session:
                m = self.last.get(e.session)
                if m is not None:
                    m.notes.append(f"the server rolled the transaction back ({e.detail.get('code')})")
                    self.close_tx(e.session, m.n, "server rollback")
            elif e.kind == "deadlock":
                m = self.open.get(key) or (self.last.get(e.session) if e.session else None)
                if m is not None:
                    m.notes.append(f"deadlock victim: cycle {' -> '.join(e.detail.get('cycle', []))}")
            elif e.kind == "fault":
                self.fault(e)
            elif e.kind == "hang":
                self.add(e, "hang", "HANG", status="error", waits=list(e.waits),
                         notes=[str(e.detail.get("reason", ""))])
            elif e.kind == "cancel":
                m = self.open.pop(key, None)
                if m is not None:
                    m.status = "cancelled"
                    m.notes.append("cancelled by the harness")
            elif e.kind == "notice":
                m = self.open.get(key) or (self.last.get(e.session) if e.session else None)
                if m is not None:
                    m.notes.append(f"{e.detail.get('severity', 'NOTICE')}: {e.detail.get('message', '')}")
            elif e.kind == "op" and e.session:
                m = self.last.get(e.session)
                if m is not None:
                    m.notes.append(f"op {e.detail.get('op')} {e.detail.get('value')} -> {e.detail.get('status')}")
            elif e.kind == "done" and e.session:
                for k, prev in list(self.open.items()):
                    if k[0] == e.session and prev.status == "open":
                        prev.status = "point" if prev.kind in ("start", "point") else "ok"
                        del self.open[k]
            elif e.kind == "check" and e.step:
                self.story.checks.append(CheckRow(e.step, bool(e.detail.get("ok")), str(e.detail.get("expected")),
                                                  str(e.detail.get("actual")), (e.sql or "").strip() or None))
        self.finish()
        return self.story

    def finish(self) -> None:
        last = len(self.story.moves)
        for session in list(self.tx):
            self.close_tx(session, max(self.tx[session], last), "open")
        for session, key in list(self.locks):
            self.close_lock(session, key, last, "held")
        resumed = {m.resumes: m.n for m in self.story.moves if m.resumes}
        for m, w in self.waited:
            assert w.holder is not None  # only waits on a session of the run are kept
            self.story.spans.append(Span(w.holder, "waited", w.lock, m.n, resumed.get(m.n, last), "held"))
        self.story.spans.sort(key=lambda s: (s.start, s.session, s.kind, s.name))


def build_story(trace: Trace) -> Story:
    """The moves, spans and checks of one trace (deterministic: same trace, same story)."""
    return _Builder(trace).run()
