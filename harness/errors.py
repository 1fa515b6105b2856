"""Every exception the harness raises on purpose, in one place.

A problem a user can cause or fix (a malformed scenario, a bad setting, a missing server binary, an
unreachable DSN) is a :class:`HarnessError` whose message is one self-contained paragraph: what went
wrong, where (file:line, option, variable, binary, URL) and how to fix it.  The CLI prints it as
``harness: error: <paragraph>`` with exit code 2 and no traceback; the pytest plugin reports it with
``pytrace=False``.  Anything else escaping the harness is a bug in the harness.

The hierarchy::

    Exception
    └── HarnessError             meant for the user, not a bug; CLI exit 2
        ├── ConfigError          a CLI flag, HARNESS_* variable or [tool.harness] value cannot be used
        ├── ProvisionError       a server cannot be found, started, reached or used
        │   └── ConnectFailed    an isolation spec's session cannot connect (isolationtester's wording)
        ├── ScenarioError        a scenario/spec file, --interleaving or --schedule is malformed (file:line)
        │   └── ActionArgsError  an action step (lock, clock, fault) has missing or wrong args
        ├── ScenarioRunError     a well-formed scenario cannot run here (setup SQL fails, no SQL for a backend)
        ├── ScheduleError        a schedule or its actors cannot be run as written
        │   ├── Divergence       a replayed schedule names a move that is not possible there
        │   └── AsyncActorError  an async actor uses what the harness cannot schedule (an unsupported driver)
        ├── ClockError           a clock operation this backend cannot do, or a bad instant
        └── LockError            a harness lock misused (bad key, timeout or connection) or not acquired

    BaseException                control flow inside actor threads, never an error to report
    ├── ScheduleAborted          the conductor gave up on a schedule (hang, divergence)
    └── FaultSkipped             an optional fault actor the schedule never chose

The two control-flow signals derive from :class:`BaseException`, as Hypothesis's own are, so that
application code under test which catches ``Exception`` cannot swallow them and change the schedule.
``ScenarioFailure`` (pytest_scenarios: an interleaving did not
do what its scenario expects) is a test failure, not an error, and stays with the plugin.

The old homes (``harness.clock.ClockError``, ``harness.locks.LockError``, ``harness.actions.ActionArgsError``,
``harness.engine.ScenarioRunError``, ``harness.isolation.ConnectFailed``) re-export these classes.
"""

from __future__ import annotations


class HarnessError(Exception):
    """An error meant for the user, not a bug in the harness."""


class ConfigError(HarnessError):
    """A setting from CLI flags, HARNESS_* environment variables or ``[tool.harness]`` cannot be used."""


class ProvisionError(HarnessError):
    """A server could not be found, started, reached or used."""


class ConnectFailed(ProvisionError):
    """A session of an isolation spec could not connect; worded as isolationtester words it."""


class ScenarioError(HarnessError):
    """A scenario or spec file is malformed; the message names file:line and the key."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)


class ActionArgsError(ScenarioError):
    """A YAML action step has missing or wrong args."""


class ScenarioRunError(HarnessError):
    """Setup SQL failed, or a step references something that cannot run on this backend."""


class ScheduleError(HarnessError):
    """A schedule cannot be followed: it names a move that is not possible at that point."""


class ClockError(HarnessError):
    """A clock operation this backend cannot do, or a bad instant."""


class LockError(HarnessError):
    """A lock was used wrongly (bad key, wrong connection kind) or the server refused it."""


class Divergence(ScheduleError):
    """A replayed schedule asked for an actor that is not runnable at that point."""


class AsyncActorError(ScheduleError):
    """Async code under a race uses what the harness cannot schedule (an unsupported async driver, a
    sync-only fault): its calls would run unseen (a false pass), so the run stops."""


class ScheduleAborted(BaseException):
    """Raised inside actor threads when the conductor gives up on a schedule (hang, divergence)."""


class FaultSkipped(BaseException):
    """Raised in an optional (fault) actor that the schedule never chose before the others finished."""


__all__ = ["ActionArgsError", "AsyncActorError", "ClockError", "ConfigError", "ConnectFailed", "Divergence",
           "FaultSkipped", "HarnessError", "LockError", "ProvisionError", "ScenarioError", "ScenarioRunError",
           "ScheduleAborted", "ScheduleError"]
