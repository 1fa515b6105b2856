"""Load PostgreSQL isolationtester ``.spec`` files into a :class:`Scenario`.

The grammar and the lexical rules follow ``specparse.y`` / ``specscanner.l`` of PostgreSQL 15, so a
spec that isolationtester accepts loads here with the very same step SQL (isolationtester prints it
back byte for byte).  Unlike isolationtester, a malformed spec is reported as a
:class:`ScenarioError` naming ``path:line``, what was expected and, for a misspelt step, the closest
valid name; no other exception escapes :func:`load_spec`.

Grammar::

    spec        := setup* [teardown SQL] session+ permutation*
    setup       := "setup" SQL
    session     := "session" IDENT [setup] step+ [teardown SQL]
    step        := "step" IDENT SQL
    permutation := "permutation" pstep+
    pstep       := IDENT ["(" blocker ("," blocker)* ")"]
    blocker     := "*" | IDENT ["notices" INTEGER]
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass

from ..errors import ScenarioError
from .model import Blocker, Interleaving, Scenario, Session, SqlText, Step, StepRef

KEYWORDS = frozenset({"notices", "permutation", "session", "setup", "step", "teardown"})
_SPACE = " \t\r\f"
_SELF = ",()*"


def _ident_start(c: str) -> bool:
    return c.isascii() and (c.isalpha() or c == "_") or not c.isascii()


def _ident_cont(c: str) -> bool:
    return _ident_start(c) or c.isdigit() and c.isascii() or c == "$"


@dataclass(frozen=True)
class Token:
    kind: str  # keyword text, "ident", "sql", "int", one of ",()*", or "eof"
    value: str
    line: int

    def describe(self) -> str:
        if self.kind == "eof":
            return "end of file"
        if self.kind == "sql":
            return "an SQL block { ... }"
        if self.kind == "ident":
            return f"identifier {self.value!r}"
        if self.kind == "int":
            return f"number {self.value}"
        return f"{self.value!r}"


def tokenize(text: str, path: str) -> list[Token]:
    """specscanner.l: keywords, identifiers ("quoted" too), { SQL } blocks, integers, punctuation."""
    out: list[Token] = []
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c in _SPACE:
            i += 1
        elif c == "#":
            while i < n and text[i] not in "\n\r":
                i += 1
        elif c == '"':
            start_line, i, buf = line, i + 1, []
            while True:
                if i >= n:
                    raise ScenarioError("unterminated quoted identifier: expected a closing '\"'",
                                        path=path, line=start_line)
                if text[i] == "\n":
                    raise ScenarioError("unexpected newline in quoted identifier: expected a closing '\"'",
                                        path=path, line=line)
                if text[i] == '"':
                    if text.startswith('""', i):
                        buf.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                buf.append(text[i])
                i += 1
            out.append(Token("ident", "".join(buf), start_line))
        elif c == "{":
            start_line = line
            i += 1
            while i < n and text[i] in _SPACE:
                i += 1
            begin = i
            while True:
                if i >= n:
                    raise ScenarioError("unterminated SQL block: expected '}'", path=path, line=start_line)
                ch = text[i]
                if ch == "}":
                    break
                if ch == "\n":
                    line += 1
                i += 1
            end = i
            while end > begin and text[end - 1] in _SPACE:
                end -= 1
            out.append(Token("sql", text[begin:end], start_line))
            i += 1
        elif c.isascii() and c.isdigit():
            j = i
            while j < n and text[j].isascii() and text[j].isdigit():
                j += 1
            out.append(Token("int", text[i:j], line))
            i = j
        elif _ident_start(c):
            j = i + 1
            while j < n and _ident_cont(text[j]):
                j += 1
            word = text[i:j]
            out.append(Token(word if word in KEYWORDS else "ident", word, line))
            i = j
        elif c in _SELF:
            out.append(Token(c, c, line))
            i += 1
        else:
            raise ScenarioError(f"unexpected character {c!r}: expected a keyword (setup, teardown, session, "
                                f"step, permutation), a name, '{{' or one of , ( ) *", path=path, line=line)
    out.append(Token("eof", "", line))
    return out


class _Parser:
    """Recursive descent over the token list (the grammar is LL(1))."""

    def __init__(self, tokens: list[Token], path: str) -> None:
        self.tokens, self.path, self.pos = tokens, path, 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        tok = self.tokens[self.pos]
        if tok.kind != "eof":
            self.pos += 1
        return tok

    def fail(self, expected: str) -> ScenarioError:
        return ScenarioError(f"expected {expected}, found {self.tok.describe()}", path=self.path, line=self.tok.line)

    def expect(self, kind: str, what: str) -> Token:
        if self.tok.kind != kind:
            raise self.fail(what)
        return self.take()

    def sql(self, after: str) -> SqlText:
        tok = self.expect("sql", f"an SQL block {{ ... }} after {after!r}")
        return SqlText.plain(tok.value, tok.line)

    def spec(self) -> tuple[list[SqlText], SqlText | None, list[Session], list[Interleaving]]:
        setups: list[SqlText] = []
        while self.tok.kind == "setup":
            self.take()
            setups.append(self.sql("setup"))
        teardown = None
        if self.tok.kind == "teardown":
            self.take()
            teardown = self.sql("teardown")
        sessions: list[Session] = []
        while self.tok.kind == "session":
            sessions.append(self.session())
        if not sessions:
            allowed = "'setup', 'teardown' or 'session'" if teardown is None else "'session'"
            raise self.fail(allowed)
        perms: list[Interleaving] = []
        while self.tok.kind == "permutation":
            perms.append(self.permutation())
        if self.tok.kind != "eof":
            raise self.fail("'session', 'permutation' or end of file" if not perms
                            else "'permutation' or end of file")
        return setups, teardown, sessions, perms

    def session(self) -> Session:
        line = self.take().line
        name = self.expect("ident", "a session name after 'session'").value
        setup: tuple[SqlText, ...] = ()
        if self.tok.kind == "setup":
            self.take()
            setup = (self.sql("setup"),)
        steps: list[Step] = []
        while self.tok.kind == "step":
            step_line = self.take().line
            step_name = self.expect("ident", "a step name after 'step'").value
            sql = self.sql(f"step {step_name}")
            steps.append(Step(step_name, name, sql=sql, line=step_line))
        if not steps:
            raise self.fail(f"'step' (session {name!r} needs at least one step)"
                            if setup else f"'setup' or 'step' in session {name!r}")
        teardown: tuple[SqlText, ...] = ()
        if self.tok.kind == "teardown":
            self.take()
            teardown = (self.sql("teardown"),)
        return Session(name, tuple(steps), setup, teardown, line=line)

    def permutation(self) -> Interleaving:
        line = self.take().line
        refs: list[tuple[StepRef, int]] = []
        while self.tok.kind == "ident":
            tok = self.take()
            blockers: list[Blocker] = []
            if self.tok.kind == "(":
                self.take()
                while True:
                    if self.tok.kind == "*":
                        self.take()
                        blockers.append(Blocker(None))
                    elif self.tok.kind == "ident":
                        other = self.take().value
                        count = None
                        if self.tok.kind == "notices":
                            self.take()
                            count = int(self.expect("int", "a number after 'notices'").value)
                        blockers.append(Blocker(other, count))
                    else:
                        raise self.fail(f"'*' or a step name in the blockers of {tok.value!r}")
                    if self.tok.kind == ",":
                        self.take()
                        continue
                    self.expect(")", f"',' or ')' closing the blockers of {tok.value!r}")
                    break
            refs.append((StepRef(tok.value, tuple(blockers)), tok.line))
        if not refs:
            raise self.fail("a step name after 'permutation'")
        return Interleaving(tuple(r for r, _ in refs), line=line)


def _closest(name: str, names: list[str]) -> str:
    match = difflib.get_close_matches(name, names, n=1, cutoff=0.0)
    return f"; did you mean {match[0]!r}?" if match else ""


def _check(path: str, sessions: list[Session], perms: list[Interleaving],
           perm_lines: list[list[int]]) -> None:
    """check_testspec(): unique step names, known steps and blockers, no self-blocking."""
    owner: dict[str, Session] = {}
    first_line: dict[str, int] = {}
    for session in sessions:
        for step in session.steps:
            if step.name in owner:
                raise ScenarioError(f"duplicate step name {step.name!r} (first defined at line "
                                    f"{first_line[step.name]}): expected step names unique across sessions",
                                    path=path, line=step.line)
            owner[step.name], first_line[step.name] = session, step.line
    names = list(owner)
    for perm, lines in zip(perms, perm_lines):
        in_perm = {ref.step for ref in perm.steps}
        for ref, line in zip(perm.steps, lines):
            if ref.step not in owner:
                raise ScenarioError(f"undefined step {ref.step!r} in permutation: expected one of the defined "
                                    f"steps{_closest(ref.step, names)}", path=path, line=line)
        for ref, line in zip(perm.steps, lines):
            for b in ref.blockers:
                if b.step is None:
                    continue
                if b.step not in in_perm:
                    candidates = [s for s in in_perm if owner[s] is not owner[ref.step]]
                    raise ScenarioError(f"undefined blocking step {b.step!r} referenced in permutation step "
                                        f"{ref.step!r}: a blocker must be a step of this permutation"
                                        f"{_closest(b.step, sorted(candidates))}", path=path, line=line)
                if owner[b.step] is owner[ref.step]:
                    raise ScenarioError(f"permutation step {ref.step!r} cannot block on {b.step!r} of its own "
                                        f"session {owner[ref.step].name!r}", path=path, line=line)


def load_spec(text: str, path: str) -> Scenario:
    """Parse an isolationtester spec; raises only :class:`ScenarioError` for malformed input."""
    try:
        tokens = tokenize(text, path)
        parser = _Parser(tokens, path)
        setups, teardown, sessions, perms = parser.spec()
        perm_lines = _permutation_lines(tokens)
        _check(path, sessions, perms, perm_lines)
    except ScenarioError:
        raise
    except (RecursionError, ValueError, IndexError) as exc:  # defensive: never a traceback for bad input
        raise ScenarioError(f"cannot parse spec: {exc}", path=path) from exc
    name = os.path.splitext(os.path.basename(path))[0] or path
    return Scenario(name=name, path=path, sessions=tuple(sessions), setup=tuple(setups),
                    teardown=(teardown,) if teardown is not None else (), interleavings=tuple(perms),
                    backends=("postgres",), source="spec", max_interleavings=10**9)


def _permutation_lines(tokens: list[Token]) -> list[list[int]]:
    """The line of each step name of each permutation (for error messages)."""
    out: list[list[int]] = []
    depth = 0
    for tok in tokens:
        if tok.kind == "permutation":
            out.append([])
        elif out and tok.kind == "(":
            depth += 1
        elif out and tok.kind == ")":
            depth -= 1
        elif out and tok.kind == "ident" and depth == 0:
            out[-1].append(tok.line)
    return out


def unused_steps(scenario: Scenario) -> list[str]:
    """Steps no explicit permutation uses, sorted as isolationtester warns about them (strcmp order)."""
    if not scenario.interleavings:
        return []
    used = {ref.step for perm in scenario.interleavings for ref in perm.steps}
    return sorted((n for n in scenario.step_names if n not in used), key=lambda s: s.encode("utf-8", "surrogateescape"))


__all__ = ["Token", "load_spec", "tokenize", "unused_steps"]
