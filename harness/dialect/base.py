"""The one place where PostgreSQL and the MySQL family differ.

Everything above this layer (provisioning, the engine, exploration) talks to a :class:`Dialect`
and never branches on the backend name.
"""

from __future__ import annotations

import time
import urllib.parse
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Protocol

from ..trace import ErrorInfo, StepResult


@dataclass(frozen=True)
class ConnInfo:
    """How to reach one database on one server (plain data, safe to pass between processes)."""

    scheme: str  # postgresql | mysql | redis
    host: str
    port: int
    user: str = ""
    password: str = field(default="", repr=False)  # never in a repr, an assertion message or a log
    dbname: str = ""
    params: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def with_db(self, dbname: str) -> "ConnInfo":
        return replace(self, dbname=dbname)

    @property
    def dsn(self) -> str:
        auth = ""
        if self.user or self.password:  # Redis: a password and no user (redis://:password@host)
            auth = urllib.parse.quote(self.user, safe="")
            if self.password:
                auth += ":" + urllib.parse.quote(self.password, safe="")
            auth += "@"
        query = ("?" + urllib.parse.urlencode(self.params)) if self.params else ""
        return f"{self.scheme}://{auth}{self.host}:{self.port}/{urllib.parse.quote(self.dbname, safe='')}{query}"

    def redacted(self) -> str:
        """The DSN with the password hidden, for messages and reports."""
        from ..redact import mask_url

        return mask_url(self.dsn)

    def to_json(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "host": self.host, "port": self.port, "user": self.user,
                "password": self.password, "dbname": self.dbname, "params": [list(p) for p in self.params]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ConnInfo":
        return cls(**{**data, "params": tuple(tuple(p) for p in data.get("params", ()))})

    @classmethod
    def parse(cls, url: str, *, default_scheme: str, default_port: int) -> "ConnInfo":
        """Parse ``scheme://user:pass@host:port/db?k=v``; raises ValueError with the reason."""
        parts = urllib.parse.urlsplit(url)
        if not parts.scheme or not parts.hostname:
            raise ValueError("expected a URL like scheme://user:password@host:port/dbname")
        scheme = {"postgres": "postgresql", "mariadb": "mysql", "mysql+pymysql": "mysql"}.get(
            parts.scheme, parts.scheme
        )
        if scheme != default_scheme:
            raise ValueError(f"scheme {parts.scheme!r} is not {default_scheme}://")
        return cls(
            scheme=scheme,
            host=parts.hostname,
            port=parts.port or default_port,
            user=urllib.parse.unquote(parts.username or ""),
            password=urllib.parse.unquote(parts.password or ""),
            dbname=urllib.parse.unquote(parts.path.lstrip("/")),
            params=tuple(urllib.parse.parse_qsl(parts.query, keep_blank_values=True)),
        )


@dataclass(frozen=True)
class Wait:
    """One edge of the wait-for graph: ``waiter`` waits for ``holder`` (server session ids)."""

    waiter: int
    holder: int | None
    lock: str  # e.g. "relation row lock", "advisory", "user lock", "metadata lock"
    detail: str = ""
    #: False when the server's view is in transition (MariaDB: a metadata-lock request still listed
    #: PENDING after its holder released it, until the waiter's own thread wakes): not a scheduling
    #: fact yet, so the scheduler keeps asking instead of counting the session as blocked
    settled: bool = True


@dataclass(frozen=True)
class Capabilities:
    """What differs between backends beyond SQL text, read by the layers above instead of branching
    on the backend's name."""

    #: the harness breaks wait-for cycles itself (PostgreSQL leaves them to a per-waiter timer); False:
    #: the server breaks each cycle the moment it closes (InnoDB), so a settled schedule never shows one
    harness_breaks_deadlocks: bool = False
    #: race connections are kept between schedules and reset (PostgreSQL: a connect forks a backend,
    #: ~3 ms; MariaDB connects in ~0.2 ms, so it opens fresh ones)
    reuses_sessions: bool = False
    #: the SQLAlchemy dialect+driver of the harness's own driver
    sqlalchemy_driver: str = ""
    #: an error inside a transaction leaves it open and aborted until ROLLBACK (PostgreSQL); False: a
    #: deadlock can end it at once and later statements autocommit (see Dialect.ended_transaction)
    aborted_transaction_stays_open: bool = False
    #: SQL steps can be sent and then polled from the engine's own thread (libpq's asynchronous API:
    #: :meth:`Dialect.start_sql`), as isolationtester does, instead of one worker-thread hop per step
    inline_sql: bool = False


class SqlCall(Protocol):
    """A SQL step sent without waiting for it (:meth:`Dialect.start_sql`)."""

    def poll(self, timeout: float) -> StepResult | None:
        """Read what arrived, waiting at most ``timeout`` seconds; the step's result once it is
        complete, else None.  Raises :class:`ConnectionError` if the connection is lost."""


class Dialect(ABC):
    """Backend-specific SQL and driver calls, kept small on purpose."""

    name: str  # postgres | mysql
    scheme: str
    default_port: int
    admin_db: str
    capabilities: Capabilities = Capabilities()

    @abstractmethod
    def connect(self, info: ConnInfo, *, autocommit: bool = True, application_name: str | None = None,
                connect_timeout: float = 10.0) -> Any:
        """A new DB-API connection."""

    @abstractmethod
    def server_version(self, conn: Any) -> tuple[str, str]:
        """(flavor, version) as reported by the server, e.g. ("mariadb", "10.11.19")."""

    @abstractmethod
    def create_database(self, admin: Any, name: str, template: str | None = None) -> None: ...

    @abstractmethod
    def drop_database(self, admin: Any, name: str) -> None: ...

    def template_database(self, admin: Any, name: str) -> str | None:
        """Create the per-server template new databases are copied from; None if the backend has none."""
        return None

    @abstractmethod
    def list_databases(self, admin: Any, prefix: str) -> list[str]: ...

    @abstractmethod
    def session_id(self, conn: Any) -> int:
        """The server's id for this connection (backend pid / connection id)."""

    @abstractmethod
    def waits(self, monitor: Any, session_ids: list[int]) -> list[Wait]:
        """Which of ``session_ids`` are blocked in the server right now, and on whom.

        Holders outside ``session_ids`` are not reported (as isolationtester: a transient wait on
        autovacuum is not a scheduling fact), except unknown/prepared-transaction holders (None).
        """

    @abstractmethod
    def cancel(self, monitor: Any, session_id: int) -> None:
        """Cancel the running statement of a session (the connection survives)."""

    @abstractmethod
    def terminate(self, monitor: Any, session_id: int) -> None:
        """Close a session from the server side."""

    @abstractmethod
    def error_code(self, exc: BaseException) -> str | None:
        """SQLSTATE (PostgreSQL) or error number as a string (MySQL family); None if not a server error."""

    @abstractmethod
    def quote_ident(self, name: str) -> str: ...

    @abstractmethod
    def quote_literal(self, value: str | None) -> str:
        """``value`` as a SQL literal this backend reads back unchanged (``NULL`` for None): recorded
        parameters become scenario text, so the quoting must hold whatever the server settings are."""

    @abstractmethod
    def drop_tables_sql(self, tables: list[str]) -> str:
        """SQL that removes what a recorded run created (a recorded scenario's teardown)."""

    @abstractmethod
    def list_tables(self, conn: Any) -> list[str]:
        """The tables of the connection's current database/schema, for :meth:`drop_tables_sql`."""

    # -- running scenario steps (text results, all statements of a step, notices) ----------------
    @abstractmethod
    def open_session(self, info: ConnInfo, application_name: str | None = None) -> Any:
        """An autocommit connection for scenario steps (results come back as the server's text)."""

    @abstractmethod
    def run_sql(self, conn: Any, sql: str, on_notice: Callable[[ErrorInfo], None] | None = None) -> StepResult:
        """Run one step (possibly several statements); errors become part of the result, not exceptions.

        Connection loss is raised as :class:`ConnectionError`.
        """

    def start_sql(self, conn: Any, sql: str, on_notice: Callable[[ErrorInfo], None] | None = None) -> SqlCall:
        """Send one step and return at once (only where ``capabilities.inline_sql``)."""
        raise NotImplementedError(f"{self.name}: steps run in worker threads")

    @abstractmethod
    def make_error(self, code: str, message: str) -> BaseException:
        """The driver's own exception for a server error ``code`` (for injected statement errors)."""

    @abstractmethod
    def connection_lost(self) -> BaseException:
        """The driver's own exception for a connection that dropped mid-call."""

    @abstractmethod
    def session_listed(self, monitor: Any, session_id: int) -> bool:
        """Whether the server still lists this session (a terminated one may linger with its locks)."""

    def wait_session_gone(self, monitor: Any, session_id: int, timeout: float) -> bool:
        """Poll (bounded back-off) until the server no longer lists the session; False on timeout.

        A killed session's transaction is rolled back and its locks released only when it is gone
        (measured: PostgreSQL lists a terminated backend for a while, and 27 of 100 immediate NOWAIT
        attempts on the killed session's row failed; after this wait, none did)."""
        deadline = time.monotonic() + timeout
        delay = 0.0002
        while self.session_listed(monitor, session_id):
            if time.monotonic() > deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.01)
        return True

    @abstractmethod
    def is_connection_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the connection is gone (killed, crashed server, network): the client
        cannot know whether a COMMIT in flight took effect."""

    @abstractmethod
    def isolation_sql(self, level: str) -> str:
        """The statement that sets a session's default isolation level."""

    def ended_transaction(self, conn: Any, error: ErrorInfo) -> bool:
        """Whether this error made the server roll the session's whole transaction back, so the
        session's next statements run outside it (autocommit) until a new BEGIN.  PostgreSQL keeps an
        aborted transaction open until ROLLBACK: never."""
        return False

    def is_closed(self, conn: Any) -> bool:
        """Whether a connection of this dialect's driver can no longer be used (closed or broken)."""
        if getattr(conn, "broken", False) or getattr(conn, "closed", False) is True:
            return True
        return getattr(conn, "open", True) is False

    def reset_session(self, conn: Any, autocommit: bool) -> None:
        """Make a kept connection like a new one for the next schedule (Capabilities.reuses_sessions)."""
        raise NotImplementedError(f"{self.name} connections are not reused")

    def reset_scenario_session(self, conn: Any) -> None:
        """Make a kept scenario session (:meth:`open_session`) like a new one: everything its SQL steps
        can leave behind, prepared statements included (Capabilities.reuses_sessions)."""
        raise NotImplementedError(f"{self.name} connections are not reused")

    # -- deadlocks ---------------------------------------------------------------------------------

    def error_for(self, conn: Any, exc: BaseException) -> BaseException:
        """``exc`` (an injected fault's error) as the driver of ``conn`` raises it: an app catches its own
        driver's classes, and SQLAlchemy wraps only those."""
        return exc

    def reset_kept_session(self, conn: Any) -> None:
        """Between schedules, for a session an app's pool keeps (any driver, idle): release its session
        locks and the harness's clock settings; what the app set itself (search_path, isolation) stays."""
        return None

    def shadow_clock_by_default(self, admin: Any, dbname: str) -> None:
        """Make every new session of ``dbname`` read the harness clock (PostgreSQL's search_path)."""
        return None

    def prepare_race_database(self, admin: Any, dbname: str, hang_timeout: float) -> str | None:
        """Make the server leave wait-for cycles in ``dbname`` to the harness; None, or why it can't."""
        return None

    def deadlock_info(self, cancelled: ErrorInfo) -> ErrorInfo:
        """:meth:`deadlock_error` for a scenario step's result (the server's text, no exception)."""
        return cancelled

    def deadlock_error(self, exc: BaseException) -> BaseException:
        """The driver's own deadlock error, raised to the victim of a cycle the harness broke by
        cancelling its statement (``exc`` is the cancellation error, of the victim's driver)."""
        return exc


def run_and_commit(conn: Any, sql: str) -> None:
    """Run one statement on any supported DB-API connection and commit it (a no-op in autocommit)."""
    cur = conn.cursor()
    try:
        cur.execute(sql)
    finally:
        cur.close()
    conn.commit()


def _driver_error(exc: BaseException) -> BaseException:
    """The driver's error behind ``exc``: SQLAlchemy's ``orig``, or an app's exception raised ``from``
    one (Kinto's IntegrityError, Django's wrappers) -- the first in the chain that carries a code."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            break
        orig = getattr(seen, "orig", None)
        if isinstance(orig, BaseException):
            return orig
        args = getattr(seen, "args", None) or ()
        if getattr(seen, "sqlstate", None) or getattr(seen, "pgcode", None) or (
                args and isinstance(args[0], int) and not isinstance(args[0], bool)):
            return seen
        seen = seen.__cause__
    return exc


def error_info(exc: BaseException) -> ErrorInfo:
    """What a driver's exception says, for any supported driver (psycopg 3, psycopg2, PyMySQL,
    mysqlclient), also when SQLAlchemy wrapped it: ``code`` is the SQLSTATE (PostgreSQL) or the error
    number (MySQL family), ``sqlstate`` the SQLSTATE wherever the driver kept it."""
    err = _driver_error(exc)
    sqlstate = getattr(err, "sqlstate", None) or getattr(err, "pgcode", None)
    args = getattr(err, "args", None) or ()
    native = str(args[0]) if args and isinstance(args[0], int) and not isinstance(args[0], bool) else None
    driver = f"{type(err).__module__}.{type(err).__qualname__}"
    if err is not exc and err is not getattr(exc, "orig", None):  # an app's own error raised from it
        return ErrorInfo(native or sqlstate, f"{type(exc).__name__} (from {type(err).__name__}: {err})".strip(),
                         sqlstate=sqlstate, driver=driver)
    return ErrorInfo(native or sqlstate, f"{type(err).__name__}: {err}", sqlstate=sqlstate, driver=driver)


def execute(conn: Any, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement on a DB-API connection and fetch what it returns (admin helper)."""
    cur = conn.cursor()
    try:
        cur.execute(sql, params) if params is not None else cur.execute(sql)
        return list(cur.fetchall()) if cur.description else []
    finally:
        cur.close()
