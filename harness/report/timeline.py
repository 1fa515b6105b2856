"""A story laid out as a timeline: one column (lane) per session, one row per move, time going down.

Why vertical: every move gets a readable label (``SELECT count rule``, ``lock r1``) at any schedule
length, a schedule of 40 moves is 40 rows, never wider than the window, and two schedules side by side
fit a 1400 px window.  On each lane, thin bars left of the boxes are the spans: the session's
transaction (BEGIN to COMMIT/ROLLBACK; a server rollback ends it with ✗) and each lock it holds
(acquire to release; a lease expiry ends it with ⊘); a bar at the lane's right edge marks a server lock
another session waited for.  A wait is a dashed bar under the waiting move and an arrow to the holder's
lane.  Checks come after the last move.  Only positions are computed here; the template draws them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .labels import short_key
from .story import Move, Span, Story


@dataclass(frozen=True)
class Geometry:
    num_w: int = 58  # the move number / time column
    row_h: int = 26
    box_h: int = 20
    char_w: float = 6.6  # monospace 11px
    compact: bool = False

    def lane_w(self, lanes: int) -> int:
        full = 280 if lanes <= 2 else 200 if lanes <= 4 else 150
        return int(full * 0.72) if self.compact else full


FULL = Geometry()
COMPACT = Geometry(num_w=44, row_h=20, box_h=16, char_w=6.0, compact=True)
SPAN_W = 7


@dataclass
class Lane:
    name: str
    x: float
    w: float


@dataclass
class Box:
    n: int
    x: float
    y: float
    w: float
    h: float
    label: str
    title: str
    cls: str  # move kind and status, e.g. "sql ok", "lock ok", "commit ok", "sql error", "lock-wait blocked"
    href: str = ""
    notices: int = 0


@dataclass
class SpanShape:
    x: float
    y: float
    w: float
    h: float
    cls: str  # "tx commit", "tx server-rollback", "lock release", "lock expired", "waited held", ...
    title: str
    end_mark: str = ""  # ✗ server rollback, ⌛ lease expired, … still open at the end


@dataclass
class Arrow:
    """A wait-for edge drawn across from the waiter's move to the holder's lane."""

    x1: float
    x2: float
    y: float
    title: str
    cls: str  # "wait" | "wait unknown" | "wait hang"

    @property
    def head(self) -> str:
        d = 1 if self.x2 >= self.x1 else -1
        return f"{self.x2:g},{self.y:g} {self.x2 - 7 * d:g},{self.y - 4:g} {self.x2 - 7 * d:g},{self.y + 4:g}"

    @property
    def line_end(self) -> float:
        return self.x2 - 6 * (1 if self.x2 >= self.x1 else -1)


@dataclass
class Rule:
    """A global move (a fault on no session, a hang): a line across every lane."""

    y: float
    label: str
    title: str
    cls: str


@dataclass
class RowLabel:
    y: float
    n: int
    t: str
    differs: bool = False  # another session moves here in the schedule shown beside it


@dataclass
class Timeline:
    id: str
    width: float
    height: float
    compact: bool
    lanes: list[Lane] = field(default_factory=list)
    rows: list[RowLabel] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    spans: list[SpanShape] = field(default_factory=list)
    bars: list[SpanShape] = field(default_factory=list)
    arrows: list[Arrow] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    checks: list[Box] = field(default_factory=list)
    checks_y: float = 0
    summary: str = ""  # the accessible description


def fit(text: str, width: float, char_w: float) -> str:
    """Cut ``text`` to what fits in ``width`` pixels of monospace (the full text is one click away)."""
    n = max(1, int((width - 8) // char_w))
    return text if len(text) <= n else text[: max(1, n - 1)] + "…"


def move_title(m: Move) -> str:
    lines = [f"move {m.n}: {m.session or 'harness'} {m.step} — {m.label}", (m.sql or "").strip()]
    if m.params:
        lines.append(f"params: {m.params}")
    if m.rows:
        lines.append("rows: " + "; ".join(" | ".join("NULL" if v is None else v for v in r) for r in m.rows[:5]))
    if m.error:
        lines.append(m.error)
    for w in m.waits:
        lines.append(f"waits for {w.holder or 'a session outside this run'}: {w.lock}")
    return "\n".join([x for x in lines if x] + m.notes)


_END_MARK = {"server rollback": "✗", "expired": "⊘", "open": "…", "held": "…", "connection lost": "✗"}


def span_title(s: Span) -> str:
    moves = f"moves {s.start}–{s.end}" if s.start != s.end else f"move {s.start}"
    if s.kind == "tx":
        ends = {"commit": f"committed at move {s.end}", "rollback": f"rolled back at move {s.end}",
                "server rollback": f"rolled back by the server at move {s.end}",
                "connection lost": f"connection lost at move {s.end}", "open": "never committed"}[s.how]
        return f"{s.session}'s transaction, {moves}: {ends}"
    if s.kind == "lock":
        ends = {"release": f"released at move {s.end}", "expired": f"lease expired at move {s.end}",
                "lost": f"released at move {s.end}, no longer held", "held": "still held at the end"}[s.how]
        return f"{s.session} holds lock {s.name}, {moves}: {ends}"
    return f"{s.session} holds a {s.name} another session waited for, {moves}"


def build_timeline(story: Story, id: str, geo: Geometry = FULL, other: list[str | None] | None = None) -> Timeline:
    """Positions for ``story``; ``other``: the sessions of the schedule shown beside it, move by move
    (rows where they differ are marked)."""
    sessions = story.sessions
    lane_w = geo.lane_w(len(sessions))
    lanes = [Lane(s, geo.num_w + i * lane_w, lane_w) for i, s in enumerate(sessions)]
    lane_of = {lane.name: lane for lane in lanes}
    right = geo.num_w + len(sessions) * lane_w
    keys: dict[str, list[str]] = {}
    for s in story.spans:
        if s.kind == "lock" and s.name not in keys.setdefault(s.session, []):
            keys[s.session].append(s.name)
    tl = Timeline(id, right + 8, 0, geo.compact, lanes=lanes)

    def row_y(n: int) -> float:
        return 4 + (n - 1) * geo.row_h

    def box_x(lane: Lane) -> float:
        return lane.x + 10 + SPAN_W * (1 + min(2, len(keys.get(lane.name, [])))) + 4

    def box_w(lane: Lane) -> float:
        return lane.x + lane.w - 16 - box_x(lane)

    for m in story.moves:
        y = row_y(m.n)
        differs = other is not None and (m.n > len(other) or other[m.n - 1] != m.session)
        tl.rows.append(RowLabel(y + geo.row_h / 2 + 4, m.n, f"{m.t * 1000:.1f}", differs))
        lane = lane_of.get(m.session or "")
        if lane is None:
            tl.rules.append(Rule(y + geo.row_h / 2, fit(m.label, right - geo.num_w, geo.char_w), move_title(m),
                                 m.kind))
            continue
        label = ("✓ " if m.kind == "resume" and m.status == "ok" else "") + m.label
        room = int((box_w(lane) - 8) // geo.char_w)
        if m.lock_key and m.lock_key in label and len(label) > room:  # cut the key, keep verb and key's end
            label = label.replace(m.lock_key, short_key(m.lock_key, max(6, room - len(label) + len(m.lock_key))))
        b = Box(m.n, box_x(lane), y + (geo.row_h - geo.box_h) / 2, box_w(lane), geo.box_h,
                fit(label, box_w(lane), geo.char_w), move_title(m), f"{m.kind} {m.status}", f"#{id}-m{m.n}",
                sum(1 for x in m.notes if x.startswith(("NOTICE", "WARNING", "INFO"))))
        tl.boxes.append(b)
        if m.waits and m.status in ("blocked", "ok", "cancelled", "error"):
            mid = y + geo.row_h / 2
            for i, w in enumerate(m.waits):
                holder = lane_of.get(w.holder or "")
                title = f"{m.session} waits for {w.holder or 'a session outside this run'}: {w.lock}"
                if holder is None or holder is lane:
                    tl.arrows.append(Arrow(b.x + b.w, b.x + b.w + 14, mid - 3 + 6 * i, title, "wait unknown"))
                    continue
                to_right = holder.x > lane.x
                x1 = b.x + b.w if to_right else b.x
                x2 = box_x(holder) + 2 if to_right else holder.x + holder.w - 14
                tl.arrows.append(Arrow(x1, x2, mid - 3 + 6 * i, title, "wait"))
    resumed = {m.resumes: m.n for m in story.moves if m.resumes}
    last = len(story.moves)
    for m in story.moves:  # a wait: a dashed bar from the waiting move to where it went on
        if m.status in ("blocked", "ok", "cancelled") and m.waits and m.session in lane_of and (
                m.n in resumed or m.status == "blocked"):
            end = resumed.get(m.n, last + 1)
            bx = box_x(lane_of[m.session]) + 10
            y1 = row_y(m.n) + (geo.row_h + geo.box_h) / 2
            y2 = row_y(end) + (geo.row_h - geo.box_h) / 2
            if y2 > y1:
                tl.bars.append(SpanShape(bx, y1, 8, y2 - y1, "wait", f"{m.session} waits (move {m.n} to {end})"))
    for s in story.spans:
        lane = lane_of.get(s.session)
        if lane is None:
            continue
        if s.kind == "tx":
            x = lane.x + 8
        elif s.kind == "lock":
            x = lane.x + 10 + SPAN_W * (1 + min(2, keys[s.session].index(s.name)))
        else:
            x = lane.x + lane.w - 12
        y1 = row_y(s.start) + 3
        y2 = row_y(s.end) + geo.row_h - 3
        tl.spans.append(SpanShape(x, y1, SPAN_W - 1, y2 - y1, f"{s.kind} {s.how.replace(' ', '-')}", span_title(s),
                                  _END_MARK.get(s.how, "")))
    tl.checks_y = row_y(last + 1) + 6
    y = tl.checks_y + 8
    for c in story.checks:
        label = ("✓ " if c.ok else "✗ ") + c.sentence
        cw = right - geo.num_w - 16
        tl.checks.append(Box(0, geo.num_w + 8, y, cw, geo.box_h + 2, fit(label, cw, geo.char_w),
                             f"{c.sentence}\n{c.sql or ''}".strip(), "check-ok" if c.ok else "check-bad"))
        y += geo.box_h + 8
    tl.height = y + 6
    locks = sorted({short_key(s.name) for s in story.spans if s.kind == "lock"})
    tl.summary = (f"Timeline of {len(sessions)} sessions ({', '.join(sessions)}), {last} moves, "
                  f"{sum(1 for s in story.spans if s.kind == 'tx')} transactions"
                  + (f", locks {', '.join(locks)}" if locks else "")
                  + f", {sum(1 for m in story.moves if m.waits)} waits")
    return tl
