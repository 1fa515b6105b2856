"""Terminal output for `harness run`: one line per scenario x backend, details only for failures."""

from __future__ import annotations

from typing import TextIO

from ..redact import sanitize
from ..results import Outcome
from ..trace import Trace
from .narrative import narrative
from .story import build_story
from .timeline import span_title


def story_lines(trace: Trace) -> list[str]:
    """The story of a trace for terminals: the narrative, each move's label, the spans."""
    story = build_story(trace)
    lines = ["  what happened:"] + [f"    {s}" for s in narrative(story)]
    lines.append("  moves: " + "; ".join(f"{m.n} {m.session or '-'} {m.label}" for m in story.moves
                                        if m.kind not in ("start", "point") or m.waits))
    lines += [f"  span: {span_title(s)}" for s in story.spans]
    return lines


def trace_lines(trace: Trace) -> list[str]:
    """A compact step-by-step account: who ran what, who blocked on whom, what failed."""
    lines = []
    for e in trace.events:
        sql = " ".join((e.sql or "").split())
        sql = sql if len(sql) <= 70 else sql[:67] + "..."
        if e.kind == "launch":
            continue
        if e.kind == "blocked":
            on = ", ".join(f"{w.holder or '?'} ({w.lock})" for w in e.waits) or e.detail.get("held_by_step", "annotation")
            lines.append(f"  {e.t * 1000:8.1f} ms  {e.session:>6} {e.step:<8} BLOCKED on {on}: {sql}")
        elif e.kind == "complete":
            res = e.result
            if res is not None and res.error:
                what = f"ERROR {res.error.code}: {res.error.message}"
            elif res is not None and (res.last_rows or e.detail.get("rows")):
                shown = res.last_rows[:3] or e.detail.get("rows", [])
                what = "-> " + "; ".join("|".join("NULL" if v is None else str(v) for v in row) for row in shown)
            else:
                what = "ok"
            after = " (after wait)" if e.detail.get("after_wait") else ""
            if e.detail.get("outside_transaction"):
                after += " (outside any transaction: the server rolled it back)"
            if e.detail.get("params"):
                sql += f" [{e.detail['params']}]"
            lines.append(f"  {e.t * 1000:8.1f} ms  {e.session:>6} {e.step:<8} {sql}  {what}{after}")
        elif e.kind == "notice":
            lines.append(f"  {e.t * 1000:8.1f} ms  {e.session:>6} {'':8} {e.detail.get('severity')}: {e.detail.get('message')}")
        elif e.kind == "check":
            mark = "ok" if e.detail.get("ok") else "VIOLATED"
            lines.append(f"  {'':11}  check {e.step}: {mark} (expected {e.detail.get('expected')}, got {e.detail.get('actual')})")
        elif e.kind in ("hang", "cancel", "fault"):
            graph = ", ".join(f"{w.waiter}->{w.holder or '?'} ({w.lock})" for w in e.waits)
            what = e.detail.get("reason") or e.detail.get("fault") or ""
            lines.append(f"  {e.t * 1000:8.1f} ms  {e.kind.upper()} {e.session or ''} {e.step or ''} "
                         f"{what} {graph}".rstrip())
        elif e.kind == "lock":
            d = e.detail
            what = {("acquire", True): "LOCK", ("acquire", False): "LOCK not acquired",
                    ("release", True): "UNLOCK", ("release", False): "UNLOCK (not held)"}[(str(d.get("op")), bool(d.get("ok")))]
            lines.append(f"  {e.t * 1000:8.1f} ms  {e.session:>6} {e.step or '':<8} {what} {d.get('lock')} {d.get('key')}")
        elif e.kind == "rollback":
            lines.append(f"  {e.t * 1000:8.1f} ms  {e.session:>6} {'':8} ROLLBACK by the server after "
                         f"{e.step} ({e.detail.get('code')}): the transaction is gone, later steps autocommit")
        elif e.kind == "setup" and e.session:
            lines.append(f"  {e.t * 1000:8.1f} ms  {e.session:>6} {'setup':<8} {sql}")
        elif e.kind == "deadlock":
            lines.append(f"  {e.t * 1000:8.1f} ms  DEADLOCK {' -> '.join(e.detail.get('cycle', []))}: victim "
                         f"{e.detail.get('victim')} (cycle broken by the harness)")
        elif e.kind == "op":
            lines.append(f"  {e.t * 1000:8.1f} ms  {e.session:>6} {'':8} op {e.detail.get('op')} "
                         f"{e.detail.get('value')} -> {e.detail.get('status')}")
    return lines


def _exploration_summary(o: Outcome) -> str:
    if o.schedule:  # a failing schedule was found
        after = f" after {o.found_after} schedule(s)" if o.found_after else ""
        verdict = "as expected" if o.passed else "NOT expected"
        if o.replayed:
            return f"violation of {', '.join(o.violated) or 'an invariant'} in the replayed schedule, {verdict}"
        return f"violation of {', '.join(o.violated) or 'an invariant'} found{after}, {verdict}"
    if o.passed:
        every = f", stopped: {o.stop_reason}" if o.stop_reason else (", every distinct schedule" if o.exhausted else "")
        return f"{o.schedules_run} schedules passed{every} ({o.expected}, as expected)"
    return f"{o.schedules_run} schedules passed, but a violation was expected ({o.expected})"


class _Sanitized:
    """A terminal stream that neutralises control characters and masks DSN passwords in all it gets."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, text: str) -> None:
        self.out.write(sanitize(text))


def print_outcomes(outcomes: list[Outcome], stream: TextIO, *, verbose: bool = False, summary: bool = True) -> None:
    """Names, SQL and server messages come from files and servers: printed sanitised."""
    out = _Sanitized(stream)
    groups: dict[tuple[str, str], list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault((o.path, o.backend), []).append(o)
    for (path, backend), group in groups.items():
        failed = [o for o in group if not o.passed]
        bugs = [o for o in group if o.passed and o.expected.startswith("violates")]
        kinds = {o.kind for o in group}
        noun = "exploration" if kinds == {"exploration"} else "interleaving"
        status = "ok  " if not failed else "FAIL"
        line = f"{len(group) - len(failed)}/{len(group)} {noun}s as expected"
        if bugs:
            line += f" ({len(bugs)} show the bug, as expected)"
        if kinds == {"exploration"} and len(group) == 1:
            line = _exploration_summary(group[0])
        out.write(f"{status} {path} [{backend}] {group[0].scenario}: {line}\n")
        for o in group:
            if o.kind == "exploration" and o.passed and o.schedule and not verbose:
                what = "replayed schedule" if o.replayed else "minimal schedule"
                out.write(f"       {what} ({o.preemptions} preemption(s)): {' '.join(o.schedule)}\n")
                if o.trace is not None:
                    out.write("".join(f"     {line}\n" for line in story_lines(o.trace)
                                      if not line.startswith(("  moves:", "  span:"))))
                if o.nearest_passing:
                    out.write(f"       nearest passing schedule (one preemption removed): "
                              f"{' '.join(o.nearest_passing)}\n")
                out.write(f"       replay: {o.replay}\n")
                continue
            if o.passed and not verbose:
                continue
            out.write(f"     {'ok  ' if o.passed else 'FAIL'} {o.label}: expected {o.expected}"
                      + (f", violated {', '.join(o.violated)}" if o.violated else "") + "\n")
            for problem in o.problems:
                out.write(f"          - {problem}\n")
            if o.trace is not None and (verbose or not o.passed):
                for line in story_lines(o.trace) + trace_lines(o.trace):
                    out.write(f"       {line}\n")
            if not o.passed:
                out.write(f"          replay: {o.replay}\n")
    if summary:
        total_failed = sum(not o.passed for o in outcomes)
        out.write(f"{len(outcomes)} outcomes: {len(outcomes) - total_failed} as expected, {total_failed} not\n")
