"""A small SQLAlchemy ORM app, as one is usually written: an engine built from the URL in its settings,
a ``sessionmaker``, declarative models with a unique constraint, and ``with session.begin()`` blocks.

``signup(email)`` promises to be idempotent: it returns the account for ``email``, creating it if it
does not exist.  The naive version checks, then inserts -- two concurrent signups of one address both see
nothing and both insert; the unique constraint stops the second, which surfaces as an IntegrityError
(an HTTP 500) instead of the account.  The fixed version inserts inside a savepoint and, when the
constraint says someone else won, reads the winner with a locking read (which sees the latest committed
row even under MariaDB's REPEATABLE READ, where a plain re-read would still see the old snapshot).

Nothing in this file knows about the harness.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import String, create_engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(120), unique=True)


@dataclass
class App:
    """The app object a web framework would keep for the process's life."""

    sessions: sessionmaker[Session]
    fixed: bool = False

    @classmethod
    def from_settings(cls, settings: dict[str, str]) -> "App":
        engine = create_engine(settings["database_url"], pool_size=5)
        return cls(sessionmaker(engine), fixed=settings.get("signup") == "fixed")

    def create_schema(self) -> None:
        Base.metadata.create_all(self.sessions.kw["bind"])

    def signup(self, email: str) -> int:
        """The id of the account for ``email``, created if needed."""
        with self.sessions() as session, session.begin():
            existing = session.scalar(select(Account).where(Account.email == email))
            if existing is not None:
                return existing.id
            account = Account(email=email)
            if not self.fixed:
                session.add(account)
                session.flush()
                return account.id
            try:
                with session.begin_nested():
                    session.add(account)
            except IntegrityError:
                winner = session.scalar(select(Account).where(Account.email == email).with_for_update())
                assert winner is not None
                return winner.id
            return account.id
