"""Clock faults: a database clock the harness can freeze, set and advance, and a fake application clock.

Races on timestamps (Kinto's two transactions stamping the same millisecond) only show when two
computations read *the same* instant.  Waiting for a natural collision is flaky; the harness makes the
clock the code reads controllable instead.  See ``docs/faults.md`` for what each backend can freeze.

PostgreSQL: :func:`install_pg_clock` installs schema ``harness_clock`` whose ``now()``,
``clock_timestamp()``, ``statement_timestamp()`` and ``transaction_timestamp()`` shadow pg_catalog's
for sessions whose search_path lists ``harness_clock`` before ``pg_catalog``
(:meth:`DbClock.shadow` puts it at the end: ``"$user", public, harness_clock, pg_catalog``, so new
tables still land in ``public``).  State:

* per session: the custom setting ``harness.clock`` = ``frozen:<epoch µs>`` | ``offset:<µs>`` |
  ``real`` | empty (follow the global state).  It is a GUC, so a ROLLBACK of the transaction that set
  it undoes it.
* all sessions: two sequences, ``harness_clock.frozen_us`` and ``harness_clock.offset_us``.  A sequence
  is read outside MVCC, so a global freeze is seen at once even by REPEATABLE READ transactions and
  never takes row locks that could disturb the scenario; it is not undone by ROLLBACK.

MariaDB/MySQL: ``SET TIMESTAMP`` per session (NOW(), CURRENT_TIMESTAMP, UTC_TIMESTAMP, CURDATE,
UNIX_TIMESTAMP, also inside triggers); SYSDATE() keeps the real clock unless the server runs with
``--sysdate-is-now``.  There is no global form (``timestamp`` is a session-only variable).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Sequence

from .appclock import ActorClock, FakeClock  # the application clock, re-exported
from .errors import ClockError
from .instants import from_micros, to_datetime, to_micros

SCHEMA = "harness_clock"
#: harness_clock.frozen_us holds this when the global clock is not frozen
UNFROZEN = -9223372036854775808
PG_SEARCH_PATH = '"$user", public, harness_clock, pg_catalog'
_SCHEMA_VERSION = 1


# -- running SQL on any supported DB-API connection ------------------------------------------------

def is_mysql(conn: Any) -> bool:
    return bool(conn.__class__.__module__.startswith("pymysql"))  # __class__: proxies answer it too


def _mysql_literal(value: Any) -> str:
    # the engine's MySQL sessions have no converters (conv={}), so their escape() cannot be used
    import pymysql.converters as conv

    return str(conv.escape_item(value, "utf8mb4", conv.encoders))


def _plain(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else value


def query(conn: Any, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement (``%s`` placeholders) on a psycopg 3, psycopg2 or PyMySQL connection.

    PyMySQL parameters are inlined with the driver's default encoders, because the engine's text-mode
    MySQL sessions cannot escape values themselves.  Values come back as str, never bytes.
    """
    if is_mysql(conn) and params:
        sql, params = sql % tuple(_mysql_literal(p) for p in params), ()
    cur = conn.cursor()
    try:
        cur.execute(sql, tuple(params)) if params else cur.execute(sql)
        rows = cur.fetchall() if cur.description else []
        return [tuple(_plain(v) for v in row) for row in rows]
    finally:
        cur.close()


def in_transaction(conn: Any) -> bool:
    """True if the connection has an open transaction (PostgreSQL drivers; False for MySQL)."""
    info = getattr(conn, "info", None)
    status = getattr(info, "transaction_status", None)
    return status is not None and int(status) != 0


def is_autocommit(conn: Any) -> bool:
    if is_mysql(conn):
        return bool(conn.get_autocommit())
    return bool(getattr(conn, "autocommit", False))


def _run_own_statement(conn: Any, work: Callable[[], Any]) -> Any:
    """Run ``work``; if that opened a transaction on an idle non-autocommit connection, commit it,
    so a clock setting does not vanish with the caller's next rollback."""
    opened = not is_mysql(conn) and not is_autocommit(conn) and not in_transaction(conn)
    out = work()
    if opened and in_transaction(conn):
        conn.commit()
    return out


# -- PostgreSQL: the harness_clock schema -----------------------------------------------------------

_PG_INSTALL = r"""
CREATE SCHEMA harness_clock;
COMMENT ON SCHEMA harness_clock IS 'race-harness controllable clock, version 1';
CREATE SEQUENCE harness_clock.frozen_us MINVALUE -9223372036854775808 START -9223372036854775808;
CREATE SEQUENCE harness_clock.offset_us MINVALUE -9223372036854775808 START 0;

-- (frozen µs or NULL, offset µs) this session sees: its own setting, else the global sequences
CREATE FUNCTION harness_clock.state(OUT frozen bigint, OUT offset_us bigint)
LANGUAGE plpgsql STABLE AS $$
DECLARE s text := pg_catalog.current_setting('harness.clock', true);
BEGIN
  IF s IS NULL OR s = '' THEN
    SELECT NULLIF(last_value, -9223372036854775808) INTO frozen FROM harness_clock.frozen_us;
    SELECT last_value INTO offset_us FROM harness_clock.offset_us;
  ELSIF s = 'real' THEN
    frozen := NULL; offset_us := 0;
  ELSIF pg_catalog.starts_with(s, 'frozen:') THEN
    frozen := pg_catalog.substr(s, 8)::bigint; offset_us := 0;
  ELSIF pg_catalog.starts_with(s, 'offset:') THEN
    frozen := NULL; offset_us := pg_catalog.substr(s, 8)::bigint;
  ELSE
    RAISE EXCEPTION 'harness.clock = %: expected frozen:<µs>, offset:<µs>, real or empty', s;
  END IF;
END $$;

CREATE FUNCTION harness_clock.at(real_ts timestamptz) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
DECLARE st record := harness_clock.state();
BEGIN
  IF st.frozen IS NOT NULL THEN
    RETURN 'epoch'::timestamptz OPERATOR(pg_catalog.+) (st.frozen::float8 OPERATOR(pg_catalog.*) '1 microsecond'::interval);
  END IF;
  IF st.offset_us = 0 THEN RETURN real_ts; END IF;
  RETURN real_ts OPERATOR(pg_catalog.+) (st.offset_us::float8 OPERATOR(pg_catalog.*) '1 microsecond'::interval);
END $$;

-- the shadows (found before pg_catalog's when harness_clock precedes pg_catalog in search_path)
CREATE FUNCTION harness_clock.now() RETURNS timestamptz LANGUAGE sql STABLE
  AS $$ SELECT harness_clock.at(pg_catalog.now()) $$;
CREATE FUNCTION harness_clock.transaction_timestamp() RETURNS timestamptz LANGUAGE sql STABLE
  AS $$ SELECT harness_clock.at(pg_catalog.transaction_timestamp()) $$;
CREATE FUNCTION harness_clock.statement_timestamp() RETURNS timestamptz LANGUAGE sql STABLE
  AS $$ SELECT harness_clock.at(pg_catalog.statement_timestamp()) $$;
CREATE FUNCTION harness_clock.clock_timestamp() RETURNS timestamptz LANGUAGE sql VOLATILE
  AS $$ SELECT harness_clock.at(pg_catalog.clock_timestamp()) $$;
-- keywords cannot be shadowed; these are for code that can say harness_clock.localtimestamp()
CREATE FUNCTION harness_clock.current_timestamp() RETURNS timestamptz LANGUAGE sql STABLE
  AS $$ SELECT harness_clock.at(pg_catalog.now()) $$;
CREATE FUNCTION harness_clock.localtimestamp() RETURNS timestamp LANGUAGE sql STABLE
  AS $$ SELECT harness_clock.at(pg_catalog.now())::timestamp $$;
CREATE FUNCTION harness_clock.current_date() RETURNS date LANGUAGE sql STABLE
  AS $$ SELECT harness_clock.at(pg_catalog.now())::date $$;

-- control: all_sessions = false changes this session's harness.clock, true the global sequences
CREATE FUNCTION harness_clock.freeze(at_ts timestamptz, all_sessions boolean DEFAULT false)
RETURNS timestamptz LANGUAGE plpgsql VOLATILE AS $$
DECLARE us bigint := pg_catalog.round(EXTRACT(epoch FROM at_ts) * 1000000)::bigint;
BEGIN
  IF all_sessions THEN
    PERFORM pg_catalog.setval('harness_clock.frozen_us', us, true);
  ELSE
    PERFORM pg_catalog.set_config('harness.clock', 'frozen:' || us, false);
  END IF;
  RETURN at_ts;
END $$;

CREATE FUNCTION harness_clock.advance(ms float8, all_sessions boolean DEFAULT false)
RETURNS timestamptz LANGUAGE plpgsql VOLATILE AS $$
DECLARE d bigint := pg_catalog.round(ms * 1000)::bigint; st record; g bigint; o bigint;
BEGIN
  IF all_sessions THEN
    SELECT last_value INTO g FROM harness_clock.frozen_us;
    IF g <> -9223372036854775808 THEN
      PERFORM pg_catalog.setval('harness_clock.frozen_us', g + d, true);
    ELSE
      SELECT last_value INTO o FROM harness_clock.offset_us;
      PERFORM pg_catalog.setval('harness_clock.offset_us', o + d, true);
    END IF;
  ELSE
    st := harness_clock.state();
    IF st.frozen IS NOT NULL THEN
      PERFORM pg_catalog.set_config('harness.clock', 'frozen:' || (st.frozen + d), false);
    ELSE
      PERFORM pg_catalog.set_config('harness.clock', 'offset:' || (st.offset_us + d), false);
    END IF;
  END IF;
  RETURN harness_clock.clock_timestamp();
END $$;

CREATE FUNCTION harness_clock.unfreeze(all_sessions boolean DEFAULT false)
RETURNS timestamptz LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF all_sessions THEN
    PERFORM pg_catalog.setval('harness_clock.frozen_us', -9223372036854775808, true);
    PERFORM pg_catalog.setval('harness_clock.offset_us', 0, true);
  ELSE
    PERFORM pg_catalog.set_config('harness.clock', '', false);
  END IF;
  RETURN harness_clock.clock_timestamp();
END $$;
"""


def pg_clock_installed(conn: Any) -> bool:
    return query(conn, "SELECT to_regnamespace('harness_clock') IS NOT NULL")[0][0] in (True, "t")


def install_pg_clock(conn: Any) -> bool:
    """Install schema ``harness_clock`` into the connection's database unless present; True if installed.

    Runs in its own transaction (serialized with an advisory lock, so two sessions may race to
    install), hence refuses to run inside an open transaction: the DDL would otherwise be undone by
    that transaction's ROLLBACK and stay invisible to the other sessions until its COMMIT.
    """
    idle = not in_transaction(conn)
    auto = is_autocommit(conn)
    if pg_clock_installed(conn):
        if idle and not auto and in_transaction(conn):
            conn.commit()  # end the read-only transaction the check opened
        return False
    if not idle:
        raise ClockError("the harness clock is not installed in this database and cannot be installed inside "
                         "an open transaction (the DDL would be rolled back with it). Install it before "
                         "BEGIN: call install_pg_clock(conn) in setup, or put the first clock step before "
                         "the session's BEGIN.")
    if auto:
        query(conn, "BEGIN")
    try:
        query(conn, "SELECT pg_advisory_xact_lock(hashtext('harness_clock install'))")
        if query(conn, "SELECT to_regnamespace('harness_clock') IS NULL")[0][0] in (True, "t"):
            query(conn, _PG_INSTALL)
        query(conn, "COMMIT") if auto else conn.commit()
    except BaseException:
        query(conn, "ROLLBACK") if auto else conn.rollback()
        raise
    return True


def _pg_shadowing_path(current: str) -> str:
    parts = [p.strip() for p in current.split(",") if p.strip()]
    parts = [p for p in parts if p.strip('"') not in (SCHEMA, "pg_catalog")]
    return ", ".join(parts + [SCHEMA, "pg_catalog"])


@dataclass(frozen=True)
class DbClock:
    """Backend-neutral database clock control on plain DB-API connections.

    ``all_sessions=True`` changes the clock of every session of the database that shadows it
    (PostgreSQL only; call :meth:`shadow` on each of them).  Per-session changes touch only ``conn``.
    """

    dialect_name: str  # "postgres" | "mysql"

    def __post_init__(self) -> None:
        if self.dialect_name not in ("postgres", "mysql"):
            raise ClockError(f"no database clock for backend {self.dialect_name!r}; expected postgres or mysql.")

    @property
    def pg(self) -> bool:
        return self.dialect_name == "postgres"

    def install(self, conn: Any) -> None:
        """PostgreSQL: install ``harness_clock`` if missing.  MySQL: nothing to install."""
        if self.pg:
            install_pg_clock(conn)

    def shadow(self, conn: Any) -> None:
        """Make this session's unqualified now()/clock_timestamp()/... read the harness clock (PG)."""
        if self.pg:
            _run_own_statement(conn, lambda: self._shadow(conn))

    @staticmethod
    def _shadow(conn: Any) -> None:
        current = query(conn, "SELECT current_setting('search_path')")[0][0]
        wanted = _pg_shadowing_path(current)
        if wanted != current:
            query(conn, "SELECT set_config('search_path', %s, false)", (wanted,))

    def freeze(self, conn: Any, at: datetime | str | float | int, *, all_sessions: bool = False) -> datetime:
        """Stop the clock at ``at`` (naive = UTC); returns the instant as an aware datetime."""
        instant = to_datetime(at)
        if self.pg:
            self.install(conn)
            _run_own_statement(conn, lambda: (self._shadow(conn), query(
                conn, "SELECT harness_clock.freeze(%s, %s)", (instant.isoformat(), all_sessions))))
            return instant
        self._mysql_only_session(all_sessions, "freeze")
        secs = Decimal(to_micros(instant)) / Decimal(1_000_000)
        query(conn, f"SET @@session.timestamp = {secs:.6f}, @harness_clock_frozen = {secs:.6f}")
        return instant

    def freeze_database(self, conn: Any, dbname: str, at: datetime | str | float | int) -> datetime:
        """Freeze the clock of every session of ``dbname``, ones opened later by an app's pool included
        (the database's default search_path shadows the server's clock).  PostgreSQL only: MariaDB/MySQL
        keep their clock per session."""
        if not self.pg:
            raise ClockError(f"a database-wide clock needs PostgreSQL; {self.dialect_name} keeps its clock per "
                             "session (SET TIMESTAMP): freeze each session, or use a FakeClock.")
        from .dialect import dialect_for

        self.install(conn)
        dialect_for("postgres").shadow_clock_by_default(conn, dbname)
        return self.freeze(conn, at, all_sessions=True)

    def advance(self, conn: Any, ms: float, *, all_sessions: bool = False) -> datetime:
        """Move a frozen clock forward by ``ms`` (negative: back).  PostgreSQL also skews a running
        clock (real time + offset); MySQL cannot, and asks to freeze first."""
        if self.pg:
            self.install(conn)
            _run_own_statement(conn, lambda: (self._shadow(conn), query(
                conn, "SELECT harness_clock.advance(%s, %s)", (float(ms), all_sessions))))
            return self.now(conn)
        self._mysql_only_session(all_sessions, "advance")
        frozen = query(conn, "SELECT @harness_clock_frozen")[0][0]
        if frozen is None:
            raise ClockError("MariaDB/MySQL cannot skew a running clock: SET TIMESTAMP only freezes it. Freeze "
                             "the session's clock first ({clock: {freeze: ...}}), then advance it.")
        secs = Decimal(str(frozen)) + Decimal(str(ms)) / Decimal(1000)
        query(conn, f"SET @@session.timestamp = {secs:.6f}, @harness_clock_frozen = {secs:.6f}")
        return self.now(conn)

    def unfreeze(self, conn: Any, *, all_sessions: bool = False) -> None:
        """Back to the real clock.  PostgreSQL per session: stop overriding (the session then follows
        the global state, the real clock unless someone froze all sessions)."""
        if self.pg:
            _run_own_statement(conn, lambda: pg_clock_installed(conn) and query(
                conn, "SELECT harness_clock.unfreeze(%s)", (all_sessions,)))
            return
        self._mysql_only_session(all_sessions, "unfreeze")
        query(conn, "SET @@session.timestamp = DEFAULT, @harness_clock_frozen = NULL")

    def now(self, conn: Any) -> datetime:
        """The instant this session's clock reads now (aware UTC)."""
        if self.pg:
            sql = ("SELECT (extract(epoch FROM harness_clock.clock_timestamp()) * 1000000)::bigint"
                   if pg_clock_installed(conn) else "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint")
            return from_micros(int(query(conn, sql)[0][0]))
        value = query(conn, "SELECT UNIX_TIMESTAMP(NOW(6))")[0][0]
        return from_micros(int(Decimal(str(value)) * 1_000_000))

    def _mysql_only_session(self, all_sessions: bool, what: str) -> None:
        if all_sessions:
            raise ClockError(f"cannot {what} the clock of all sessions on MariaDB/MySQL: the only control is the "
                             "session variable `timestamp` (SET GLOBAL timestamp is refused). Change each "
                             "session's clock instead (one clock step per session).")


__all__ = ["ActorClock", "ClockError", "DbClock", "FakeClock", "PG_SEARCH_PATH", "SCHEMA", "install_pg_clock",
           "pg_clock_installed", "query", "to_datetime", "to_micros"]
