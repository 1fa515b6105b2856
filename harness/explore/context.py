"""What an actor is handed: :class:`ActorContext`, its door to the race's connections, locks and points."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from .history import Op, classify
from .instrument import InstrumentedConnection

if TYPE_CHECKING:
    from .race import Race


@dataclass
class ActorContext:
    """What an actor may use: instrumented connections/engines/locks, points, its name."""

    name: str
    race: "Race"

    def connect(self, **kwargs: Any) -> InstrumentedConnection:
        """A connection whose every execute/commit/rollback is a scheduling point (see :meth:`Race.connect`)."""
        return self.race.connect(**kwargs)

    def engine(self, **kwargs: Any) -> Any:
        """A SQLAlchemy engine on instrumented connections, for ORM code under test (:meth:`Race.engine`)."""
        return self.race.engine(**kwargs)

    def lock(self, kind: str, key: str, **kwargs: Any) -> Any:
        """A Redis / GET_LOCK / advisory lock whose waits the scheduler sees (:meth:`Race.lock`)."""
        return self.race.lock(kind, key, **kwargs)

    def url(self, driver: str | None = None) -> str:
        """The race database as a SQLAlchemy URL (default driver psycopg2 / PyMySQL, as apps default to),
        password included: what an app's settings would name (its connections are captured)."""
        from ..scenario.hooks import SetupContext

        return SetupContext(self.race.backend, self.race.database.info, None).url(driver)

    def point(self, label: str) -> None:
        """A scheduling point of the actor's own, where the explorer may switch to another actor."""
        self.race.point(label)

    def instrument(self, conn: Any) -> Any:
        """Put a connection the actor's code opened itself under the scheduler (:meth:`Race.instrument`)."""
        return self.race.instrument(conn)

    @contextmanager
    def op(self, name: str, value: Any) -> Iterator[Op]:
        """Mark an operation (``with ctx.op("add", 3): ...``): its outcome -- ok, fail, or unknown
        when the connection was lost while it might have committed -- goes into the history that
        :meth:`Race.check_durable` and ``check(fn(conn, results))`` read (``results[name].ops``)."""
        op = Op(self.name, name, value)
        try:
            yield op
        except BaseException as exc:
            op.status, op.error = classify(exc), f"{type(exc).__name__}: {exc}".strip()
            raise
        else:
            op.status = classify(None)
        finally:
            if self.race._scheduler is not None:
                self.race._scheduler.record_op(op)
