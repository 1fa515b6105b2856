"""An application's own database access under a race: its drivers, engines, pools and clock.

An app under test is driven unchanged: it builds its engine from the URL in its settings, keeps its pool
across requests and reads the database clock in its triggers.  A race therefore captures the drivers'
connect functions while it lives (:mod:`.capture`), so every connection the app opens is instrumented;
resets the sessions the app's pools keep between schedules (so no schedule inherits another's open
transaction, session lock or clock); and can freeze or advance the clock of *every* session of the race
database, including ones the harness never opened (PostgreSQL).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

from ..errors import ClockError
from .capture import DriverCapture
from .instrument import open_transaction
from .racebase import RaceBase


class AppsMixin(RaceBase):
    """Capture of the app's own connections, their reset between schedules, the database-wide clock."""

    _capture: DriverCapture
    _db_clock: Any  # a harness.clock.DbClock once the database-wide clock is used
    _engines: list[Any]

    def capture_drivers(self) -> None:
        """From now until :meth:`close`, every connection psycopg2, psycopg 3, PyMySQL or mysqlclient
        opens outside the harness is instrumented: inside actors its calls are scheduling points.
        Races start capturing when created by the pytest fixture, and otherwise at the first schedule;
        call this first when the app opens (and pools) connections before that."""
        self._capture.start()

    def instrument_engine(self, engine: Any) -> Any:
        """Put an existing SQLAlchemy engine (any driver above) under the race: its pool is emptied, so
        the connections it opens from now on are captured ones; the engine itself stays the app's, used
        across schedules.  Returns the engine."""
        self.capture_drivers()
        engine.dispose()  # connections opened before the capture are plain: let the pool reopen them
        self._engines.append(engine)
        return engine

    def _reset_captured(self) -> None:
        """Between schedules: roll back what the app's kept sessions left open, release their session
        locks and clock settings (the pools keep them for the next schedule).  Only the sessions an actor
        used, or that have a transaction open (say, left by the app's own start-up): an idle untouched one
        has nothing to undo, and a round trip each would be the cost of a warm pool's every schedule.
        Their search_path stays: the clock's shadowing of kept sessions is set once, when the clock is
        installed."""
        for conn in self._capture.live():
            try:
                route = getattr(conn, "harness_route", None)
                if route is not None and route.close_after_schedule:
                    conn.close()  # an actor thread's Django connection: its thread and wrapper are gone
                    continue
                in_transaction = open_transaction(conn)  # client-side (psycopg); PyMySQL: always True
                if route is not None and not route.touched and not in_transaction:
                    continue
                if route is not None:
                    route.touched = False
                if in_transaction:
                    conn.rollback()
                self.dialect.reset_kept_session(conn)
            except Exception:
                try:
                    conn.close()  # a pool finds it closed and opens another
                except Exception:
                    pass

    def _release_apps(self) -> None:
        for engine in self._engines:
            try:
                engine.dispose()  # its captured connections do not outlive the race
            except Exception:
                pass
        self._engines.clear()
        self._engine_cache.clear()
        self._capture.stop()

    # -- the database-wide clock ------------------------------------------------------------------

    def freeze_clock(self, at: datetime | str | float) -> None:
        """Freeze the database clock of every session of the race database, the app's own included
        (``now()``, ``clock_timestamp()``... in queries and triggers), at ``at`` before each schedule.
        PostgreSQL only: MariaDB/MySQL have no global clock to set (use ``skew_clock`` per actor)."""
        clock = self._database_clock()
        self.setup(lambda conn: (clock.freeze_database(conn, self.database.name, at), None)[1])
        self.teardown(lambda conn: clock.unfreeze(conn, all_sessions=True))

    def advance_clock(self, ms: float) -> Callable[[], None]:
        """A fault (``race.fault("tick", race.advance_clock(1))``): the database clock of every session
        moves ``ms`` forward where the explorer places it."""
        clock = self._database_clock()

        def advance() -> None:
            clock.advance(self._control(), ms, all_sessions=True)
            if self._scheduler is not None:
                self._scheduler.fault("clock advance", {"ms": ms, "clock": "database"})
        return advance

    def _database_clock(self) -> Any:
        from ..clock import DbClock

        if self._db_clock is None:
            clock = DbClock(self.backend)
            if not clock.pg:
                raise ClockError(f"a database-wide clock needs PostgreSQL; {self.backend} keeps its clock per "
                                 "session (SET TIMESTAMP): use race.skew_clock(actor, ms) or a FakeClock.")
            self._setup.insert(0, self._install_database_clock)
            self._db_clock = clock
        return self._db_clock

    def _install_database_clock(self, conn: Any) -> None:
        """The clock schema, shadowing the server's clock in the sessions the app keeps (new ones get
        it from the database's default search_path, set by ``freeze_database``)."""
        self._db_clock.install(conn)
        self.dialect.shadow_clock_by_default(conn, self.database.name)
        for kept in self._capture.live():
            self._db_clock.shadow(kept)
