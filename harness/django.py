"""Django apps under a race: the ORM's DATABASES pointed at the race database, its connections handled.

Django code runs unchanged in actors (``transaction.atomic()``, ``select_for_update()``,
``get_or_create()``, ``F()`` updates).  Its scheduling points come from the driver capture
(:mod:`harness.explore.capture`): Django's backends call ``psycopg.connect`` / ``psycopg2.connect`` /
``MySQLdb.connect`` on the module, so every connection Django opens while a race lives is instrumented --
commits and rollbacks included, which Django's ``connection.execute_wrapper`` would not see.  What this
module adds:

* :func:`configure` points ``DATABASES[alias]`` at the race database (Python API), and restores it;
* Django's connections are per thread, and actors run on fresh threads every schedule: a connection
  Django opens inside an actor is closed after the schedule (its thread and wrapper are gone), so none
  leaks into the next schedule or piles up on the server;
* what Django runs while connecting (``SET TIME ZONE``, the isolation level, MariaDB's server facts,
  which it otherwise reads lazily mid-transaction) is bookkeeping, no decision: every schedule starts
  from cold connections, and those queries must not add moves;
* Django's MySQL backend imports ``MySQLdb``; where mysqlclient is not installed, PyMySQL (a harness
  dependency) stands in for it through its own ``pymysql.install_as_MySQLdb()``.

With pytest-django, the ``django_race`` fixture does the same for the settings module pytest-django
loaded (docs/django.md).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any, Iterable

from .errors import ConfigError

#: Django's backend for each harness backend
ENGINES = {"postgres": "django.db.backends.postgresql", "mysql": "django.db.backends.mysql"}
_FAMILY = {"postgres": "postg", "mysql": "mysql"}  # a custom ENGINE (PostGIS...) of the same family is kept
_RECEIVER_UID = "harness-django-connection-created"


def _django() -> Any:
    if importlib.util.find_spec("django") is None:
        raise ConfigError("Django is not installed: `python -m pip install Django` (or the harness's test extra, "
                          "`python -m pip install -e '.[test]'`).")
    return importlib.import_module("django")


def _dj(module: str) -> Any:
    """A Django module (an optional dependency without type information: imported untyped)."""
    return importlib.import_module(f"django.{module}")


def database_settings(race: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``DATABASES`` entry for the race database: ``base`` (the app's own entry) with its engine kept
    when it is of the race's backend family, and the server, name and credentials replaced."""
    info = race.database.info
    entry = dict(base or {})
    if _FAMILY[race.backend] not in str(entry.get("ENGINE", "")):
        entry["ENGINE"] = ENGINES[race.backend]
        entry["OPTIONS"] = {}  # another backend's options would not apply
    entry.update(NAME=info.dbname, USER=info.user, PASSWORD=info.password, HOST=info.host, PORT=str(info.port))
    if race.backend == "mysql":
        entry.setdefault("OPTIONS", {}).setdefault("charset", "utf8mb4")
    return entry


def mysqldb_available() -> str:
    """Make ``import MySQLdb`` work for Django's MySQL backend: mysqlclient when installed, else PyMySQL's
    documented stand-in (``pymysql.install_as_MySQLdb()``).  Returns which one answers."""
    if importlib.util.find_spec("MySQLdb") is not None:
        return "mysqlclient"
    import pymysql

    pymysql.install_as_MySQLdb()
    return "PyMySQL"


@dataclass
class DjangoDatabase:
    """Django's ``DATABASES[alias]`` pointed at a race database until :meth:`restore` (or the end of a
    ``with`` block)."""

    race: Any
    alias: str = "default"
    saved: tuple[dict[str, Any] | None, dict[str, Any] | None] = (None, None)
    active: bool = False
    driver: str = field(default="")

    def apply(self) -> "DjangoDatabase":
        settings = _dj("conf").settings
        connections = _dj("db").connections

        self.race.capture_drivers()  # the connections Django opens from now on are the race's
        if self.race.backend == "mysql":
            self.driver = mysqldb_available()
        entry = database_settings(self.race, settings.DATABASES.get(self.alias))
        self.saved = (settings.DATABASES.get(self.alias), connections.settings.get(self.alias))
        _drop_connection(self.alias)
        settings.DATABASES[self.alias] = entry
        # Django's defaults for an entry (ATOMIC_REQUESTS, TEST...); configure_settings insists on a "default"
        connections.settings[self.alias] = connections.configure_settings({"default": dict(entry)})["default"]
        self.active = True
        return self

    def restore(self) -> None:
        """Close this thread's connection to the race database and put the app's settings back."""
        if not self.active:
            return
        settings = _dj("conf").settings
        connections = _dj("db").connections

        self.active = False
        _drop_connection(self.alias)
        for holder, saved in ((settings.DATABASES, self.saved[0]), (connections.settings, self.saved[1])):
            if saved is None:
                holder.pop(self.alias, None)
            else:
                holder[self.alias] = saved

    def migrate(self, *app_labels: str) -> None:
        """The app's migrations on the race database (``migrate --run-syncdb``: apps without migrations get
        their tables too), outside any actor."""
        call_command = _dj("core.management").call_command

        call_command("migrate", *app_labels, database=self.alias, run_syncdb=True, interactive=False, verbosity=0)

    def create_tables(self, *models: Any) -> None:
        """The tables of ``models`` straight from their definitions (no migrations: fast, for small tests)."""
        connections = _dj("db").connections

        with connections[self.alias].schema_editor() as editor:
            for model in models:
                editor.create_model(model)

    def __enter__(self) -> "DjangoDatabase":
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


def setup(settings_module: str) -> None:
    """Configure Django for this process from ``settings_module`` (its upper-case names), as
    ``DJANGO_SETTINGS_MODULE`` would, unless settings are configured already (pytest-django, an earlier
    call: then those stay); then ``django.setup()``.  For tests that import models at module level."""
    django = _django()
    apps = _dj("apps").apps
    settings = _dj("conf").settings

    if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        module = importlib.import_module(settings_module)
        settings.configure(**{name: getattr(module, name) for name in dir(module) if name.isupper()})
    if not apps.ready:
        django.setup()


def configure(race: Any, *, alias: str = "default", installed_apps: Iterable[str] | None = None,
              **settings_kwargs: Any) -> DjangoDatabase:
    """Point Django's ``DATABASES[alias]`` at the race database (usable as a context manager, which
    restores it).  Settings are the app's (``DJANGO_SETTINGS_MODULE``, or already configured); when there
    are none, ``settings.configure(INSTALLED_APPS=installed_apps, **settings_kwargs)`` makes them."""
    django = _django()
    apps = _dj("apps").apps
    settings = _dj("conf").settings

    if not settings.configured:
        if not os.environ.get("DJANGO_SETTINGS_MODULE"):
            if installed_apps is None:
                raise ConfigError("Django has no settings: set DJANGO_SETTINGS_MODULE to the app's settings module, "
                                  "or pass installed_apps=[...] to harness.django.configure(race, ...).")
            settings.configure(INSTALLED_APPS=list(installed_apps), DATABASES={},
                               **{"USE_TZ": True, "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
                                  **settings_kwargs})
        elif installed_apps is not None or settings_kwargs:
            raise ConfigError("DJANGO_SETTINGS_MODULE is set: its settings are used, so installed_apps and other "
                              "settings cannot be passed to harness.django.configure too.")
    if not apps.ready:
        django.setup()
    return DjangoDatabase(race, alias).apply()


def _drop_connection(alias: str) -> None:
    """Close and forget this thread's connection for ``alias`` (Django opens a new one from the settings)."""
    connections = _dj("db").connections

    wrapper = getattr(connections._connections, alias, None)
    if wrapper is not None:
        try:
            wrapper.close()
        finally:
            del connections[alias]


def _connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    """Django has connected (inside an actor or not): what it runs from now on is the app's."""
    from .explore.instrument import Route

    route = getattr(connection.connection, "harness_route", None)
    if not isinstance(route, Route):
        return  # a connection the race does not capture
    if connection.vendor == "mysql":
        _ = connection.mysql_server_data  # read lazily, maybe mid-transaction, otherwise: bookkeeping now
    sched = route.sched()
    route.close_after_schedule = sched is not None and sched.current() is not None
    route.checked_out = True


def listen(on: bool) -> None:
    """Connect (or disconnect) the ``connection_created`` receiver that ends a Django connection's
    bookkeeping; called by the capture when Django opens a connection, and when the capture ends."""
    connection_created = _dj("db.backends.signals").connection_created

    if on:
        connection_created.connect(_connection_created, weak=False, dispatch_uid=_RECEIVER_UID)
    else:
        connection_created.disconnect(dispatch_uid=_RECEIVER_UID)


__all__ = ["DjangoDatabase", "ENGINES", "configure", "database_settings", "listen", "mysqldb_available", "setup"]
