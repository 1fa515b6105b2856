"""A drop-in for PostgreSQL's ``isolationtester``: same input (a spec on stdin), same stdout, byte for byte.

The engine runs the permutations (its control flow is isolationtester's ``run_permutation`` /
``try_complete_step``); this module adds what only matters for byte-identical output:

* :class:`~harness.dialect.isolation.IsolationDialect` drives libpq exactly as isolationtester does
  (one ``PQsendQuery`` per step, ``PQisBusy`` / ``PQgetResult``), through ctypes rather than psycopg,
  whose import would cost more than a typical spec's run (the drop-in starts once per spec).
* :class:`~harness.isolation_output.IsolationFormatter` (isolation_output.py) turns traces into
  isolationtester's stdout (``PQprint`` tables, ``SEVERITY:  message`` errors, ``<waiting ...>`` /
  ``<... completed>``, cancel messages).
* :func:`run_spec` and :func:`isolationtester_main` (argv, exit codes and stderr messages of the
  C program).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Iterator

from .dialect.base import ConnInfo
from .dialect.isolation import IsolationDialect, connect
from .engine import Engine, EngineOptions, ScenarioRunError
from .errors import ConnectFailed, HarnessError
from .isolation_output import IsolationFormatter, Output, _bytes, pqprint
from .scenario.model import Interleaving, Scenario, StepRef
from .scenario.spec_loader import load_spec, unused_steps
from .trace import Trace

DEFAULT_CONNINFO = "dbname = postgres"
DEFAULT_TIMEOUT = 300.0

Connector = Callable[[str], Any]


# -- running a spec ---------------------------------------------------------------------------------
def all_permutations(scenario: Scenario) -> Iterator[Interleaving]:
    """Every order-preserving interleaving, in isolationtester's order (lazily: there may be many)."""
    piles = [[s.name for s in sess.steps] for sess in scenario.sessions]
    taken = [0] * len(piles)
    prefix: list[str] = []

    def recurse() -> Iterator[Interleaving]:
        found = False
        for i, pile in enumerate(piles):
            if taken[i] < len(pile):
                found = True
                prefix.append(pile[taken[i]])
                taken[i] += 1
                yield from recurse()
                taken[i] -= 1
                prefix.pop()
        if not found:
            yield Interleaving(tuple(StepRef(s) for s in prefix))

    return recurse()


def step_timeout_from_env(env: dict[str, str] | os._Environ[str] | None = None) -> float:
    """PGISOLATIONTIMEOUT (seconds, atoi semantics) or isolationtester's default of 300 s."""
    value = (env if env is not None else os.environ).get("PGISOLATIONTIMEOUT")
    if value is None:
        return DEFAULT_TIMEOUT
    digits = ""
    for ch in value.strip():
        if ch.isdigit() or (not digits and ch in "+-"):
            digits += ch
        else:
            break
    try:
        return float(int(digits))
    except ValueError:
        return 0.0


def conninfo_of(target: ConnInfo | str) -> str:
    if isinstance(target, str):
        return target
    from psycopg.conninfo import make_conninfo  # in-process callers (tests, benchmarks, `harness run`)

    return make_conninfo(host=target.host, port=target.port, user=target.user or None,
                         password=target.password or None, dbname=target.dbname or "postgres",
                         **dict(target.params))


def run_spec(scenario: Scenario, target: ConnInfo | str | Connector, out: Any, err: Any = None, *,
             step_timeout: float | None = None, dialect: IsolationDialect | None = None,
             on_trace: Callable[[Trace], None] | None = None) -> int:
    """Run every permutation like isolationtester; write its stdout to ``out`` (stderr to ``err``).

    ``target`` is a libpq conninfo string, a :class:`ConnInfo`, or ``connector(session_name)``.
    Connections are opened once (control connection first) and reused across permutations.
    ``dialect`` / ``on_trace`` let benchmarks time the SQL and inspect each permutation's trace.
    Returns isolationtester's exit code: 0, or 1 after a connection/setup failure or a hang.
    """
    o, e = Output(out), Output(err if err is not None else sys.stderr)
    fmt = IsolationFormatter(o, e)
    fmt.header(len(scenario.sessions))
    names = ["control connection", *(s.name for s in scenario.sessions)]
    if callable(target):
        connector: Connector = target
    else:
        conninfo = conninfo_of(target)
        opened: dict[str, Any] = {}
        try:
            for i, name in enumerate(names):
                opened[name] = connect(conninfo, i, name)
        except HarnessError as exc:  # a refused connection, or no libpq to connect with
            for conn in opened.values():
                conn.close()
            message = str(exc)
            e.write(_bytes(message if isinstance(exc, ConnectFailed) else f"isolationtester: {message}\n"))
            return 1

        def connector(name: str) -> Any:
            return opened.pop(name) if name in opened else connect(conninfo, names.index(name), name)

    dialect = dialect or IsolationDialect()
    timeout = step_timeout if step_timeout is not None else step_timeout_from_env()
    options = EngineOptions(step_timeout=timeout, on_timeout="cancel", poll_first=0.001, poll_max=0.010,
                            reset_sessions=False)  # isolationtester leaves session state to the spec
    engine = Engine(scenario, "postgres", dialect, ConnInfo("postgresql", "", 0), options, connector=connector)
    try:
        engine.open()
    except HarnessError as exc:
        e.write(_bytes(f"{exc}\n"))
        return 1
    try:
        perms = iter(scenario.interleavings) if scenario.interleavings else all_permutations(scenario)
        for perm in perms:
            dialect.session_pids = {w.sid: name for name, w in engine.workers.items()}
            fmt.starting(perm)
            try:
                trace = engine.run(perm)
            except ScenarioRunError as exc:
                e.write(_bytes(f"{exc}\n"))
                return 1
            fmt.trace(trace)
            if on_trace is not None:
                on_trace(trace)
            if trace.hung:
                return 1
    except HarnessError as exc:
        e.write(_bytes(f"{exc}\n"))
        return 1
    finally:
        engine.close()
    return 0


def run_spec_on_server(scenario: Scenario, server: Any, out: Any, err: Any = None) -> int:
    """``harness run x.spec``: run a spec on a fresh database of a provisioned server, then drop it."""
    db = server.create_database()
    try:
        return run_spec(scenario, db.info, out, err)
    finally:
        db.drop()


def isolationtester_main(argv: list[str], stdin: Any, stdout: Any, stderr: Any) -> int:
    """``isolationtester [-V] [CONNINFO] < spec``: its arguments, output and exit codes.

    ``argv`` excludes the program name.  libpq environment variables (PGHOST, PGPORT, ...) apply
    because connections go through libpq's own conninfo parsing.
    """
    err = Output(stderr)
    positional: list[str] = []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--":
            positional.extend(args)
            break
        if arg.startswith("-") and len(arg) > 1 and not positional:
            for ch in arg[1:]:
                if ch == "V":
                    from .pgversion import pg_version  # runs pg_config: only here

                    Output(stdout).write(_bytes(f"isolationtester (PostgreSQL) {pg_version()}\n"))
                    return 0
                err.write(_bytes(f"isolationtester: invalid option -- '{ch}'\n"
                                 "Usage: isolationtester [CONNINFO]\n"))
                return 1
            continue
        positional.append(arg)
    conninfo = positional[0] if positional else DEFAULT_CONNINFO
    raw = stdin.buffer.read() if hasattr(stdin, "buffer") else stdin.read()
    text = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw
    try:
        scenario = load_spec(text, "<stdin>")
    except HarnessError as exc:
        err.write(_bytes(f"{exc}\n"))
        return 1
    for name in unused_steps(scenario):
        err.write(_bytes(f"unused step name: {name}\n"))
    return run_spec(scenario, conninfo, stdout, stderr)


def main() -> int:
    return isolationtester_main(sys.argv[1:], sys.stdin, sys.stdout, sys.stderr)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["ConnectFailed", "IsolationDialect", "IsolationFormatter", "Output", "all_permutations",
           "isolationtester_main", "pqprint", "run_spec", "run_spec_on_server"]
