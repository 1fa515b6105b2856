"""The HTML report: one self-contained file (inline CSS, JS and SVG) rendered from :class:`RunResults`.

Why self-contained: reports are CI artifacts opened from disk, often offline, so the page loads
nothing (a Content-Security-Policy forbids it).  Why deterministic: the same JSON must give the
same bytes, so a report can be diffed and cached; nothing here reads the clock, and every list is
put in a stable order.  The essentials (summary, failures, timelines, step tables) need no JS; the
small inline script only adds the filter box and copy buttons.

Layout of a timeline: one lane per session (``Trace.sessions``), one box per step in launch order
(x is the order of events, not time: quick steps would vanish on a time axis; the launch time is
printed above each column).  A step the server reported as blocked gets a wait bar up to the column
where it completed and an arrow from the waiter's lane to the holder's lane.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from ..errors import HarnessError
from ..redact import mask_url
from ..results import SCHEMA_VERSION, Outcome, RunResults
from ..trace import Event, StepResult, Trace, WaitEdge

TEMPLATES = Path(__file__).resolve().parent / "templates"
BACKEND_ORDER = ("postgres", "mysql")
#: failing outcomes shown expanded per scenario x backend; the rest start collapsed (big runs)
OPEN_FAILURES = 3
#: rows of a result set shown in tables and tooltips
MAX_ROWS = 20


# -- timeline geometry -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Geometry:
    """Pixel sizes of a timeline; ``COMPACT`` is the small one used for passing outcomes."""

    label_w: int = 84
    col_w: int = 108
    box_w: int = 96
    lane_h: int = 38
    box_h: int = 24
    top: int = 20  # the time axis above the lanes
    char_w: float = 6.7  # monospace 11px
    compact: bool = False


FULL = Geometry()
COMPACT = Geometry(label_w=64, col_w=76, box_w=68, lane_h=26, box_h=18, top=16, char_w=6.1, compact=True)


@dataclass
class Lane:
    name: str
    y: float
    h: float
    kind: str = "session"  # "session" | "checks"


@dataclass
class Box:
    x: float
    y: float
    w: float
    h: float
    label: str
    title: str
    cls: str  # ok | point | error | blocked | done | cancelled | unfinished | check-ok | check-bad
    notices: int = 0


@dataclass
class Bar:
    x: float
    y: float
    w: float
    h: float
    label: str
    title: str


@dataclass
class Arrow:
    """A wait-for edge drawn vertically from the waiter's lane to the holder's lane."""

    x: float
    y1: float
    y2: float
    title: str
    cls: str  # "wait" | "wait unknown" | "wait hang" | "wait annotation"

    @property
    def head(self) -> str:
        d = 1 if self.y2 >= self.y1 else -1
        return f"{self.x:g},{self.y2:g} {self.x - 4:g},{self.y2 - 7 * d:g} {self.x + 4:g},{self.y2 - 7 * d:g}"

    @property
    def line_end(self) -> float:
        return self.y2 - 6 * (1 if self.y2 >= self.y1 else -1)


@dataclass
class Mark:
    x: float
    y: float
    symbol: str
    title: str
    cls: str  # fault | cancel


@dataclass
class VLine:
    x: float
    y1: float
    y2: float
    label: str
    title: str
    cls: str  # hang | fault


@dataclass
class Tick:
    x: float
    text: str


@dataclass
class Timeline:
    width: float
    height: float
    compact: bool
    lanes: list[Lane] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    arrows: list[Arrow] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    vlines: list[VLine] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    label_w: float = 0
    summary: str = ""  # the accessible description


def fit(text: str, width: float, char_w: float) -> str:
    """Cut ``text`` to what fits in ``width`` pixels of monospace (the full text is in the tooltip)."""
    n = max(1, int((width - 8) // char_w))
    return text if len(text) <= n else text[: max(1, n - 1)] + "…"


def ms(t: float) -> str:
    return f"{t * 1000:.1f} ms"


def describe_result(result: StepResult | None) -> str:
    """One short plain-text account of a step's result, for tooltips."""
    if result is None:
        return "no result"
    if result.error is not None:
        return f"{result.error.severity} {result.error.code or ''}: {result.error.message}".replace("  ", " ")
    parts = []
    for rs in result.results:
        if rs.rows is not None:
            head = " | ".join(rs.columns or [])
            rows = ["  " + " | ".join("NULL" if v is None else v for v in row) for row in rs.rows[:MAX_ROWS]]
            more = [f"  … {len(rs.rows) - MAX_ROWS} more rows"] if len(rs.rows) > MAX_ROWS else []
            parts.append("\n".join([f"{rs.command or 'rows'}: {head}", *rows, *more]))
        elif rs.command:
            parts.append(rs.command)
    return "\n".join(parts) or "ok"


def waits_text(waits: list[WaitEdge]) -> str:
    return "; ".join(f"{w.waiter} waits for {w.holder or 'a session outside this run'}: {w.lock}"
                     + (f" ({w.detail})" if w.detail else "") for w in waits)


def detail_text(detail: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(detail[k], sort_keys=True, default=str)}" for k in sorted(detail))


@dataclass
class _Open:
    """A launched step not yet completed: where its box is and whether it waited."""

    box: Box
    col: int
    launched: Event
    blocked: Event | None = None


def build_timeline(trace: Trace, geo: Geometry = FULL) -> Timeline:
    """Turn a trace into positioned shapes (the template only draws them)."""
    step_kinds = ("launch", "blocked", "complete", "notice", "cancel", "fault", "done")
    sessions = list(trace.sessions)
    for e in trace.events:
        if e.session and e.kind in step_kinds and e.session not in sessions:
            sessions.append(e.session)
    checks = trace.checks()
    lanes = [Lane(s, geo.top + i * geo.lane_h, geo.lane_h) for i, s in enumerate(sessions)]
    if checks:
        lanes.append(Lane("checks", geo.top + len(sessions) * geo.lane_h, geo.lane_h, "checks"))
    lane_of = {lane.name: lane for lane in lanes if lane.kind == "session"}
    session_of_step = {e.step: e.session for e in trace.events if e.kind == "launch" and e.step and e.session}
    tl = Timeline(0, 0, geo.compact, lanes=lanes, label_w=geo.label_w)
    pad = (geo.col_w - geo.box_w) / 2

    def box_x(col: int) -> float:
        return geo.label_w + (col - 1) * geo.col_w + pad

    def mid(session: str | None) -> float:
        lane = lane_of.get(session or "")
        return lane.y + lane.h / 2 if lane else geo.top

    def box_y(session: str | None) -> float:
        return mid(session) - geo.box_h / 2

    def arrow(x: float, waiter: str, holder: str | None, title: str, cls: str) -> None:
        y1 = mid(waiter)
        if holder is None or holder not in lane_of:
            tl.arrows.append(Arrow(x, y1 - geo.box_h / 2, max(2.0, y1 - geo.lane_h * 0.9), title, cls + " unknown"))
            return
        y2 = mid(holder)
        d = 1 if y2 > y1 else -1
        tl.arrows.append(Arrow(x, y1, y2 - d * (geo.box_h / 2 - 2), title, cls))

    def bar(o: _Open, end_col: int, end_x: float | None = None) -> None:
        x1 = o.box.x + o.box.w + 1
        x2 = end_x if end_x is not None else box_x(end_col) - 1
        h = geo.box_h * 0.5
        who = ", ".join(sorted({w.holder or "?" for w in o.blocked.waits})) if o.blocked else ""
        label = f"waits for {who}" if who else "waits"
        title = f"{o.box.label} waits" + (f": {waits_text(o.blocked.waits)}" if o.blocked and o.blocked.waits else "")
        tl.bars.append(Bar(x1, mid(o.launched.session) - h / 2, max(4.0, x2 - x1), h,
                           fit(label, x2 - x1 - 10, geo.char_w * 0.9), title))

    col = 0
    open_steps: dict[tuple[str | None, str | None], _Open] = {}
    last_box: dict[str | None, Box] = {}
    for e in trace.events:
        key = (e.session, e.step)
        if e.kind == "launch":
            for k, prev in list(open_steps.items()):  # a scheduling point the actor moved past
                if k[0] == e.session and prev.blocked is None and prev.box.cls == "unfinished":
                    prev.box.cls = "point"
                    del open_steps[k]
            col += 1
            title = f"{e.step} (session {e.session}), launched at {ms(e.t)}\n{(e.sql or '').strip()}"
            if e.detail.get("action"):
                title += f"\naction: {e.detail['action']}"
            b = Box(box_x(col), box_y(e.session), geo.box_w, geo.box_h,
                    fit(e.step or "?", geo.box_w, geo.char_w), title, "unfinished")
            tl.boxes.append(b)
            tl.ticks.append(Tick(b.x + b.w / 2, f"{e.t * 1000:.1f}"))
            open_steps[key] = _Open(b, col, e)
            last_box[e.session] = b
        elif e.kind == "blocked":
            o = open_steps.get(key)
            if o is None:
                continue
            o.blocked = e
            o.box.cls = "blocked"
            o.box.title += f"\nBLOCKED at {ms(e.t)}" + (f": {waits_text(e.waits)}" if e.waits else "")
            x0 = o.box.x + o.box.w + 6
            if e.waits:
                for i, w in enumerate(e.waits):
                    arrow(x0 + 8 * i, w.waiter, w.holder, waits_text([w]), "wait")
            elif e.detail.get("held_by_step"):
                held = e.detail["held_by_step"]
                o.box.title += f" (held by step {held}, by annotation)"
                arrow(x0, e.session or "", session_of_step.get(held), f"{e.step} waits for step {held} (annotation)",
                      "wait annotation")
        elif e.kind == "complete":
            o = open_steps.pop(key, None)
            text = describe_result(e.result)
            bad = e.result is not None and e.result.error is not None
            if o is None:  # completed without a recorded launch: still show it
                col += 1
                b = Box(box_x(col), box_y(e.session), geo.box_w, geo.box_h, fit(e.step or "?", geo.box_w, geo.char_w),
                        f"{e.step} (session {e.session})\n{(e.sql or '').strip()}\n→ {text}", "error" if bad else "ok")
                tl.boxes.append(b)
                last_box[e.session] = b
            elif o.blocked is not None or e.detail.get("after_wait"):
                col += 1
                bar(o, col)
                mark = "✗ " if bad else "✓ "
                b = Box(box_x(col), box_y(e.session), geo.box_w, geo.box_h,
                        fit(mark + (e.step or "?"), geo.box_w, geo.char_w),
                        f"{e.step} (session {e.session}) completed after waiting, at {ms(e.t)}\n"
                        f"{(e.sql or '').strip()}\n→ {text}", "error" if bad else "done")
                tl.boxes.append(b)
                tl.ticks.append(Tick(b.x + b.w / 2, f"{e.t * 1000:.1f}"))
                o.box.title += f"\ncompleted at {ms(e.t)} → {text}"
                last_box[e.session] = b
            else:
                o.box.cls = "error" if bad else "ok"
                o.box.title += f"\n→ {text}"
            if e.detail.get("connection_lost"):
                last_box[e.session].title += "\n(connection lost)"
        elif e.kind == "done":  # an exploration actor finished: its open point is not a hang
            for k, prev in list(open_steps.items()):
                if k[0] == e.session and prev.blocked is None:
                    prev.box.cls = "point"
                    prev.box.title += f"\nactor finished at {ms(e.t)}"
                    del open_steps[k]
        elif e.kind == "notice":
            nb = open_steps[key].box if key in open_steps else last_box.get(e.session)
            if nb is not None:
                nb.notices += 1
                nb.title += f"\n{e.detail.get('severity', 'NOTICE')}: {e.detail.get('message', '')}"
        elif e.kind == "fault":
            col += 1
            title = " ".join(x for x in (f"fault at {ms(e.t)}:", e.session or "", e.step or "", e.sql or "",
                                         detail_text(e.detail)) if x)
            x = box_x(col) + geo.box_w / 2
            if e.session in lane_of:
                tl.marks.append(Mark(x, mid(e.session), "⚡", title, "fault"))
            else:
                tl.vlines.append(VLine(x, geo.top, geo.top + len(sessions) * geo.lane_h, "fault", title, "fault"))
            tl.ticks.append(Tick(x, f"{e.t * 1000:.1f}"))
        elif e.kind == "hang":
            col += 1
            x = box_x(col) + geo.box_w / 2
            title = f"HANG at {ms(e.t)}: {e.detail.get('reason', '')}" + (f"\n{waits_text(e.waits)}" if e.waits else "")
            tl.vlines.append(VLine(x, geo.top, geo.top + len(sessions) * geo.lane_h, "hang", title, "hang"))
            for i, w in enumerate(e.waits):
                arrow(x + 8 * (i + 1), w.waiter, w.holder, waits_text([w]), "wait hang")
            tl.ticks.append(Tick(x, f"{e.t * 1000:.1f}"))
        elif e.kind == "cancel":
            o = open_steps.pop(key, None)
            x = box_x(max(col, 1)) + geo.box_w / 2
            title = f"{e.step} cancelled at {ms(e.t)}" + (f" ({detail_text(e.detail)})" if e.detail else "")
            if o is not None:
                o.box.cls = "cancelled"
                o.box.title += f"\n{title}"
                if o.blocked is not None and o.col < col:
                    bar(o, col, x - 8)
            tl.marks.append(Mark(x, mid(e.session), "✕", title, "cancel"))
    for o in open_steps.values():  # never completed (a hang without cancel, or a truncated trace)
        if o.blocked is not None:
            bar(o, col + 1)
        o.box.title += "\n(never completed)"

    x = 0.0
    if checks:
        lane = lanes[-1]
        x = geo.label_w + pad
        for c in checks:
            ok = bool(c.detail.get("ok"))
            label = ("✓ " if ok else "✗ ") + (c.step or "check")
            check_w = min(max(geo.box_w, len(label) * geo.char_w + 12), 4 * geo.col_w - 2 * pad)
            title = (f"check {c.step}: {'ok' if ok else 'VIOLATED'}\nexpected {c.detail.get('expected')}, "
                     f"actual {c.detail.get('actual')}\n{(c.sql or '').strip()}")
            tl.boxes.append(Box(x, lane.y + (lane.h - geo.box_h) / 2, check_w, geo.box_h,
                                fit(label, check_w, geo.char_w), title, "check-ok" if ok else "check-bad"))
            x += check_w + 2 * pad
    tl.width = max(geo.label_w + max(col, 1) * geo.col_w, x) + 24
    tl.height = geo.top + len(lanes) * geo.lane_h + 4
    n_blocked = sum(1 for e in trace.events if e.kind == "blocked")
    tl.summary = (f"Timeline of {len(sessions)} sessions ({', '.join(sessions)}), "
                  f"{len(session_of_step)} steps, {n_blocked} blocked")
    return tl


# -- page model --------------------------------------------------------------------------------------

@dataclass
class OutcomeView:
    outcome: Outcome
    id: str
    timeline: Timeline | None
    open: bool = False

    @property
    def checks(self) -> list[Event]:
        return self.outcome.trace.checks() if self.outcome.trace else []

    @property
    def blocked_steps(self) -> int:
        t = self.outcome.trace
        return sum(1 for e in t.events if e.kind == "blocked") if t else 0


@dataclass
class BackendGroup:
    backend: str
    server: str
    outcomes: list[Outcome]
    failing: list[OutcomeView]
    passing: list[OutcomeView]
    representative: OutcomeView | None

    @property
    def failed(self) -> int:
        return len(self.failing)

    @property
    def schedules(self) -> int:
        return sum(o.schedules_run for o in self.outcomes)

    @property
    def duration(self) -> float:
        return sum(o.duration for o in self.outcomes)

    @property
    def seeds(self) -> str:
        return ", ".join(str(s) for s in sorted({o.seed for o in self.outcomes if o.seed is not None}))

    @property
    def kinds(self) -> str:
        return "/".join(sorted({o.kind for o in self.outcomes}))


@dataclass
class ScenarioGroup:
    id: str
    name: str
    path: str
    backends: dict[str, BackendGroup]

    @property
    def failed(self) -> int:
        return sum(g.failed for g in self.backends.values())

    @property
    def total(self) -> int:
        return sum(len(g.outcomes) for g in self.backends.values())

    @property
    def search(self) -> str:
        labels = " ".join(o.label for g in self.backends.values() for o in g.outcomes)
        return " ".join([self.name, self.path, *self.backends, labels]).lower()


def _backend_key(b: str) -> tuple[int, str]:
    return (BACKEND_ORDER.index(b) if b in BACKEND_ORDER else len(BACKEND_ORDER), b)


def _interest(o: Outcome) -> tuple[int, int]:
    """Representative passing schedule: prefer one where something waited, then the first."""
    t = o.trace
    blocked = sum(1 for e in t.events if e.kind == "blocked") if t else 0
    return (0 if t else 1, 0 if blocked else 1)


def page_model(results: RunResults) -> dict[str, Any]:
    by_scenario: dict[tuple[str, str], dict[str, list[Outcome]]] = {}
    for o in results.outcomes:
        by_scenario.setdefault((o.path, o.scenario), {}).setdefault(o.backend, []).append(o)
    groups: list[ScenarioGroup] = []
    failures: list[tuple[ScenarioGroup, OutcomeView]] = []
    n = 0
    for si, (path, name) in enumerate(sorted(by_scenario)):
        sg = ScenarioGroup(f"s{si}", name, path, {})
        for backend in sorted(by_scenario[(path, name)], key=_backend_key):
            outs = by_scenario[(path, name)][backend]
            failing: list[OutcomeView] = []
            passing: list[OutcomeView] = []
            for o in outs:
                n += 1
                if o.passed:
                    passing.append(OutcomeView(o, f"o{n}", None))
                else:
                    view = OutcomeView(o, f"o{n}", build_timeline(o.trace) if o.trace else None,
                                       open=len(failing) < OPEN_FAILURES)
                    failing.append(view)
                    failures.append((sg, view))
            rep = None
            candidates = [v for v in passing if v.outcome.trace is not None]
            if candidates:
                best = min(candidates, key=lambda v: _interest(v.outcome))  # min is stable: first of equals
                assert best.outcome.trace is not None  # candidates have traces
                rep = OutcomeView(best.outcome, best.id + "r", build_timeline(best.outcome.trace, COMPACT))
            server = results.servers.get(backend) or next((o.trace.server for o in outs if o.trace), "")
            sg.backends[backend] = BackendGroup(backend, server, outs, failing, passing, rep)
        groups.append(sg)
    backends = sorted({b for g in groups for b in g.backends}, key=_backend_key)
    outcomes = results.outcomes
    return {
        "r": results, "groups": groups, "backends": backends, "failures": failures,
        "servers": sorted(results.servers.items(), key=lambda kv: _backend_key(kv[0])),
        "total": len(outcomes), "failed": sum(not o.passed for o in outcomes),
        "schedules": sum(o.schedules_run for o in outcomes), "schema": SCHEMA_VERSION,
    }


# -- rendering ---------------------------------------------------------------------------------------

def _masked(value: Any) -> Any:
    """Every ``{{ value }}`` printed: text with DSN passwords masked (macro output is already done)."""
    return mask_url(value) if isinstance(value, str) and not isinstance(value, Markup) else value


def _environment() -> Environment:
    # autoescape: every value is text, never markup; finalize: no password of a DSN reaches the page
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, trim_blocks=True,
                      lstrip_blocks=True, undefined=StrictUndefined, keep_trailing_newline=True,
                      finalize=_masked)
    env.filters.update(ms=ms, describe=describe_result, waits=waits_text, details=detail_text,
                       seconds=lambda s: f"{s:.2f} s" if s >= 1 else f"{s * 1000:.1f} ms")
    env.globals["MAX_ROWS"] = MAX_ROWS
    return env


def render_html(results: RunResults) -> str:
    """The whole report as one HTML string (same results in, same bytes out)."""
    return _environment().get_template("report.html").render(**page_model(results))


def write_report(results: RunResults, folder: Path) -> Path:
    """Write ``report.html`` and the ``results.json`` it was rendered from into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results.to_json(), indent=1), encoding="utf-8")
    out = folder / "report.html"
    out.write_text(render_html(results), encoding="utf-8")
    return out


def load_results(json_path: Path) -> RunResults:
    """Read a results file, with a user-facing error for a missing, malformed or too-new one."""
    try:
        data = json.loads(Path(json_path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise HarnessError(f"cannot read results file {json_path}: {exc.strerror or exc}.") from None
    except ValueError as exc:
        raise HarnessError(f"{json_path} is not JSON ({exc}); pass the file written by "
                           f"`harness run --json` or `--report`.") from None
    if not isinstance(data, dict) or "outcomes" not in data:
        raise HarnessError(f"{json_path} is not a harness results file (no 'outcomes').")
    schema = data.get("schema", SCHEMA_VERSION)
    if not isinstance(schema, int) or schema > SCHEMA_VERSION:
        raise HarnessError(f"{json_path} has results schema {schema!r}, newer than this harness reads "
                           f"({SCHEMA_VERSION}); upgrade race-harness to render it.")
    try:
        return RunResults.from_json(data)
    except (KeyError, TypeError) as exc:
        raise HarnessError(f"{json_path} does not match the results schema: {exc!r}.") from None


def render_file(json_path: Path, out_html: Path) -> Path:
    """``harness report RESULTS.json -o OUT.html``: re-render a report from its JSON results file."""
    html = render_html(load_results(json_path))
    out_html = Path(out_html)
    if out_html.parent != Path(""):
        out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text(html, encoding="utf-8")
    return out_html
