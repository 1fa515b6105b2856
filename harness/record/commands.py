"""``harness record`` and ``harness import``: argument parsing and printing over :mod:`harness.record`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import ConfigError

if TYPE_CHECKING:
    from .api import RecordReport

#: how `harness import` names the log kinds (the parser needs them before anything heavy is imported)
LOG_KINDS = {"pg-csvlog": "postgres", "mysql-general-log": "mysql"}


def _print(report: RecordReport) -> int:
    for w in report.warnings:
        print(f"harness: warning: {w}", file=sys.stderr)
    print(f"wrote {report.path}: {report.sessions} session(s), {report.steps} step(s)"
          + (f"; the command exited {report.exit_code}" if report.exit_code else ""))
    print(f"run it: harness run {report.path}")
    return 0


def cmd_record(args: argparse.Namespace, settings_from: Callable[[argparse.Namespace], Any]) -> int:
    command = list(args.command_argv)
    if command[:1] == ["--"]:
        command = command[1:]
    from .api import record

    settings = settings_from(args)
    if args.backends is None:
        backend = "postgres"
    elif len(settings.backends) != 1:
        raise ConfigError("harness record records one backend at a time: --backend postgres or --backend mysql.")
    else:
        backend = settings.backends[0]
    return _print(record(command, Path(args.output), backend=backend, settings=settings, schedules=args.schedules,
                         expect=args.expect, checks=Path(args.checks) if args.checks else None, timeout=args.timeout))


def cmd_import(args: argparse.Namespace) -> int:
    from .api import import_log

    sessions = [s.strip() for s in args.sessions.split(",") if s.strip()] if args.sessions else None
    return _print(import_log(args.kind, Path(args.log), Path(args.output),
                             schema=Path(args.schema) if args.schema else None, sessions=sessions,
                             database=args.database,
                             schedules=args.schedules, expect=args.expect,
                             checks=Path(args.checks) if args.checks else None))


def _common(p: argparse.ArgumentParser, positive_int: Callable[[str], int]) -> None:
    p.add_argument("-o", "--output", required=True, help="the scenario file to write (.yaml)")
    p.add_argument("--checks", help="a YAML file (e.g. a scenario of the same system) whose `checks:` the recording gets")
    p.add_argument("--expect", default="holds", help='the verdict the scenario expects (default holds; e.g. '
                                                     '"violates: one_rule")')
    p.add_argument("--schedules", type=positive_int, default=100, help="schedules in its explore: block (100)")


def add_parsers(sub: Any, add_server_options: Callable[[argparse.ArgumentParser], None],
                settings_from: Callable[[argparse.Namespace], Any], positive_int: Callable[[str], int]) -> None:
    p = sub.add_parser("record", help="run a command with the servers' statement logging on and write the "
                                      "scenario it made (one session per connection)")
    _common(p, positive_int)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds the command may take (600)")
    p.add_argument("command_argv", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="the command to record")
    add_server_options(p)
    p.set_defaults(func=lambda a: cmd_record(a, settings_from))
    p = sub.add_parser("import", help="write the scenario of a server log excerpt (pg-csvlog, mysql-general-log)")
    p.add_argument("kind", choices=sorted(LOG_KINDS), help="the log's format")
    p.add_argument("log", help="the log file")
    p.add_argument("--sessions", help="only these sessions (csvlog session_id / general log thread id), comma-separated")
    p.add_argument("--database", help="only sessions of this database")
    p.add_argument("--schema", help="SQL file that creates the schema (the scenario's setup)")
    _common(p, positive_int)
    p.set_defaults(func=cmd_import)
