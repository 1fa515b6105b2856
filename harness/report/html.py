"""The HTML report: one self-contained file (inline CSS, JS and SVG) rendered from :class:`RunResults`.

Why self-contained: reports are CI artifacts opened from disk, often offline, so the page loads
nothing (a Content-Security-Policy forbids it).  Why deterministic: the same JSON must give the
same bytes, so a report can be diffed and cached; nothing here reads the clock, and every list is
put in a stable order.  The essentials (summary, failures, stories, timelines, move details) need no
JS (a move's details open by a link to its ``:target``); the small inline script only adds the filter
box and copy buttons.

Each outcome that shows a violation (a failure, or an exploration that found the expected bug) is told
as a story (:mod:`.story`): a plain headline, a generated narrative (:mod:`.narrative`), the timeline
(:mod:`.timeline`) and, for explorations, the nearest passing schedule beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from ..redact import mask_url
from ..results import SCHEMA_VERSION, Outcome, RunResults, load_results
from ..trace import Event, StepResult, WaitEdge
from .narrative import headline, narrative
from .story import Story, build_story
from .timeline import COMPACT, FULL, Timeline, build_timeline

TEMPLATES = Path(__file__).resolve().parent / "templates"
BACKEND_ORDER = ("postgres", "mysql")
#: failing outcomes shown expanded per scenario x backend; the rest start collapsed (big runs)
OPEN_FAILURES = 3
#: rows of a result set shown in tables and tooltips
MAX_ROWS = 20


def ms(t: float) -> str:
    return f"{t * 1000:.1f} ms"


def describe_result(result: StepResult | None) -> str:
    """One short plain-text account of a step's result."""
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


# -- page model --------------------------------------------------------------------------------------

@dataclass
class StoryView:
    """One schedule told: its story, narrative and timeline."""

    story: Story
    timeline: Timeline
    narrative: list[str]
    schedule: list[str]


def _story_view(trace_owner: Outcome, id: str, *, compact: bool = False, beside: Story | None = None,
                nearest: bool = False) -> StoryView | None:
    trace = trace_owner.nearest_trace if nearest else trace_owner.trace
    if trace is None:
        return None
    story = build_story(trace)
    other = [m.session for m in beside.moves] if beside is not None else None
    tl = build_timeline(story, id, COMPACT if compact else FULL, other)
    return StoryView(story, tl, narrative(story), trace_owner.nearest_passing if nearest else trace_owner.schedule)


@dataclass
class OutcomeView:
    outcome: Outcome
    id: str
    main: StoryView | None = None
    passing: StoryView | None = None  # the nearest passing schedule, beside the failing one
    open: bool = False

    @property
    def timeline(self) -> Timeline | None:
        return self.main.timeline if self.main else None

    @property
    def headline(self) -> str:
        return headline(self.outcome, self.main.story if self.main else None)

    @property
    def checks(self) -> list[Event]:
        return self.outcome.trace.checks() if self.outcome.trace else []


def told(o: Outcome, id: str, open: bool) -> OutcomeView:
    """An outcome told as a story, with the nearest passing schedule beside it when there is one."""
    v = OutcomeView(o, id, _story_view(o, id), open=open)
    if v.main is not None and o.nearest_trace is not None:
        v.passing = _story_view(o, id + "p", beside=v.main.story, nearest=True)
        v.main = _story_view(o, id, beside=v.passing.story if v.passing else None)
    return v


def shows_bug(o: Outcome) -> bool:
    """A passing outcome that shows the expected violation: told in full, as failures are."""
    return o.passed and bool(o.violated) and o.trace is not None


@dataclass
class BackendGroup:
    backend: str
    server: str
    outcomes: list[Outcome]
    failing: list[OutcomeView]
    bugs: list[OutcomeView]  # passing, showing the expected violation
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
    def expand(self) -> bool:
        """Start open: something failed, or a bug is shown (told in full)."""
        return any(g.failing or g.bugs for g in self.backends.values())

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
            bugs: list[OutcomeView] = []
            passing: list[OutcomeView] = []
            for o in outs:
                n += 1
                if not o.passed:
                    view = told(o, f"o{n}", open=len(failing) < OPEN_FAILURES)
                    failing.append(view)
                    failures.append((sg, view))
                elif shows_bug(o) and len(bugs) < OPEN_FAILURES:
                    bugs.append(told(o, f"o{n}", open=True))
                else:
                    passing.append(OutcomeView(o, f"o{n}"))
            rep = None
            candidates = [v for v in passing if v.outcome.trace is not None]
            if candidates:
                best = min(candidates, key=lambda v: _interest(v.outcome))  # min is stable: first of equals
                rep = OutcomeView(best.outcome, best.id + "r", _story_view(best.outcome, best.id + "r", compact=True))
            server = results.servers.get(backend) or next((o.trace.server for o in outs if o.trace), "")
            sg.backends[backend] = BackendGroup(backend, server, outs, failing, bugs, passing, rep)
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


def render_file(json_path: Path, out_html: Path) -> Path:
    """``harness report RESULTS.json -o OUT.html``: re-render a report from its JSON results file."""
    html = render_html(load_results(json_path))
    out_html = Path(out_html)
    if out_html.parent != Path(""):
        out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text(html, encoding="utf-8")
    return out_html
