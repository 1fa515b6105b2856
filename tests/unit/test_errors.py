"""One exception hierarchy (harness/errors.py); old import paths keep working."""

from __future__ import annotations

import harness.actions
import harness.clock
import harness.engine
import harness.isolation
import harness.locks
from harness import errors


def test_user_errors_are_harness_errors_and_old_homes_re_export_them() -> None:
    assert harness.clock.ClockError is errors.ClockError
    assert harness.locks.LockError is errors.LockError
    assert harness.actions.ActionArgsError is errors.ActionArgsError
    assert harness.engine.ScenarioRunError is errors.ScenarioRunError
    assert harness.isolation.ConnectFailed is errors.ConnectFailed
    signals = {"ScheduleAborted", "FaultSkipped"}  # control flow, below
    for name in set(errors.__all__) - signals:
        assert issubclass(getattr(errors, name), errors.HarnessError), name
    assert issubclass(errors.Divergence, errors.ScheduleError)
    assert issubclass(errors.AsyncActorError, errors.ScheduleError)
    assert issubclass(errors.ActionArgsError, errors.ScenarioError)
    assert issubclass(errors.ConnectFailed, errors.ProvisionError)


def test_control_flow_signals_escape_except_exception() -> None:
    for signal in (errors.ScheduleAborted, errors.FaultSkipped):
        assert issubclass(signal, BaseException) and not issubclass(signal, Exception)
    from harness.explore.scheduler import Divergence

    assert errors.Divergence is Divergence


def test_scenario_error_prefixes_where() -> None:
    assert str(errors.ScenarioError("bad", path="f.yaml", line=3)) == "f.yaml:3: bad"
    assert str(errors.ScenarioError("bad", path="f.yaml")) == "f.yaml: bad"
    assert str(errors.ScenarioError("bad")) == "bad"


def test_the_cli_starts_without_the_database_drivers() -> None:
    """`harness --help` and `isolationtester -V` must start fast: importing the CLI imports no driver,
    Hypothesis, Jinja2 or testcontainers (each is imported by the command that needs it)."""
    import subprocess
    import sys

    code = ("import sys, harness.cli; heavy = [m for m in ('psycopg', 'pymysql', 'hypothesis', 'jinja2', "
            "'testcontainers', 'redis') if m in sys.modules]; print(','.join(heavy))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", done.stdout


def test_help_and_the_isolationtester_drop_in_import_no_driver() -> None:
    """`harness --help` builds every subcommand's parser (record's too), and the isolationtester drop-in,
    run once per spec by pg_isolation_regress, talks libpq through ctypes: neither imports psycopg or
    sqlparse (~100-160 ms per process on this machine)."""
    import subprocess
    import sys

    code = ("import sys, harness.cli, harness.isolation; harness.cli.build_parser(); "
            "import harness.dialect.libpq as l; l._lib(); "
            "print(','.join(m for m in ('psycopg', 'psycopg_binary', 'sqlparse', 'pymysql') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", done.stdout
