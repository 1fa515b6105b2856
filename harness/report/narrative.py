"""The story of a schedule in plain language, generated from a :class:`Story` (typed records only).

One sentence per run of consecutive moves by one session ("Moves 1-6, A: took lock r1 (2), began a
transaction (3), ..."), facts that matter called out where they happen (a lock released while its
holder's transaction was still open, a lock taken while another session's transaction that used it is
open, a wait and for whom, a server rollback), then the checks after the last move.
"""

from __future__ import annotations

from ..results import Outcome
from .labels import single_value, table, verb
from .story import Move, Story


def _phrase(m: Move, story: Story) -> str:
    """What one move did, as a verb phrase."""
    s = m.session or ""
    if m.kind == "lock":
        text = f"took lock {m.lock_key}"
        others = [sp.session for sp in story.spans if sp.kind == "lock" and sp.name == m.lock_key
                  and sp.session != s and sp.start < m.n <= sp.end]
        if others:
            text += f" while {', '.join(others)} still held it"
        # released by another session whose transaction (which ran under the lock) is still open
        early = sorted({sp.session for sp in story.spans if sp.kind == "lock" and sp.name == m.lock_key
                        and sp.session != s and sp.end < m.n and story.span_at(sp.session, "tx", sp.end)
                        and story.span_at(sp.session, "tx", m.n)})
        if early:
            text += f" while {' and '.join(early)}'s transaction was still open"
        return text
    if m.kind == "unlock":
        text = f"released lock {m.lock_key}"
        if story.span_at(s, "tx", m.n) is not None and story.span_at(s, "tx", m.n + 1) is not None:
            text += " while its transaction was still open"
        return text
    if m.kind == "lock-wait":
        holders = ", ".join(sorted({w.holder or "another client" for w in m.waits}))
        return f"waited for lock {m.lock_key}" + (f" held by {holders}" if holders else "")
    if m.kind == "begin":
        return "began a transaction"
    if m.kind == "commit":
        return "committed"
    if m.kind == "rollback":
        return "rolled back"
    if m.kind == "resume":
        return f"retried lock {m.lock_key}" if m.lock_key else "went on after the wait"
    if m.kind == "fault":
        return f"fault {m.label.lstrip('⚡ ')}"
    if m.kind == "hang":
        return "nothing could progress (hang)"
    if m.kind == "sql":
        v, t = verb(m.sql), table(m.sql)
        value = single_value(m.rows)
        if v == "SELECT" and "count" in m.label.split() and value is not None:
            text = f"counted {value} row{'s' if value != '1' else ''}" + (f" in {t}" if t else "")
        elif v == "SELECT" and t is None:
            text = f"ran {m.label}"
        elif v == "SELECT":
            text = f"read {t}" + (f" ({len(m.rows)} row{'s' if len(m.rows) != 1 else ''})" if m.rows else "")
        elif v == "INSERT":
            text = f"inserted into {t}"
        elif v == "UPDATE":
            text = f"updated {t}"
        elif v == "DELETE":
            text = f"deleted from {t}"
        else:
            text = f"ran {m.label}"
    else:
        text = m.label
    return text


def _extra(m: Move) -> str:
    parts = []
    if m.kind != "lock-wait" and (m.status == "blocked" or m.waits):
        who = ", ".join(sorted({f"{w.holder or 'a session outside the run'} ({w.lock})" for w in m.waits}))
        parts.append(f"waited for {who}" if who else "waited")
    if m.error:
        parts.append(f"failed: {m.error}")
    parts.extend(n for n in m.notes if n.startswith(("the server rolled", "deadlock victim", "connection lost")))
    return "; ".join(parts)


def narrative(story: Story) -> list[str]:
    """Sentences, in order: one per run of moves by one session, then one per check."""
    sentences: list[str] = []
    runs: list[list[Move]] = []
    for m in story.moves:
        if m.kind in ("start", "point") and not m.waits:
            continue  # a scheduling point that did nothing: not part of the story
        if runs and runs[-1][-1].session == m.session:
            runs[-1].append(m)
        else:
            runs.append([m])
    for run in runs:
        first, last = run[0].n, run[-1].n
        where = f"Move {first}" if first == last else f"Moves {first}–{last}"
        who = run[0].session or "the harness"
        items = []
        for m in run:
            extra = _extra(m)
            items.append(f"{_phrase(m, story)} ({m.n}{'; ' + extra if extra else ''})")
        body = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
        sentences.append(f"{where}, {who}: {body}.")
    for c in story.checks:
        sentences.append(f"After the last move, {c.sentence}.")
    return sentences


def headline(outcome: Outcome, story: Story | None) -> str:
    """One plain sentence: what was expected, what happened, whether that is as expected."""
    bad = [c for c in story.checks if not c.ok] if story else []
    found = "; ".join(c.sentence for c in bad)
    wanted = outcome.expected.removeprefix("violates:").strip() if outcome.expected.startswith("violates") else None
    if outcome.error:
        return f"The scenario could not run: {outcome.error}"
    if wanted is not None:
        if outcome.violated and (not wanted or wanted in outcome.violated):
            return f"The bug shows, as expected: {found or 'check ' + wanted + ' failed'}."
        return f"Check {wanted} was expected to fail, but it held" + (f" ({outcome.problems[0]})." if outcome.problems
                                                                     else ".")
    if found:
        return f"Not as expected: {found}."
    if outcome.problems:
        return f"Not as expected: {outcome.problems[0]}."
    return "As expected: every check holds."
