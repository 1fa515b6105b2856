"""Django under a race with pytest-django, as a user's project runs it (a pytest run in a subprocess),
and the Python API's usage errors.  The ORM examples themselves are examples/django_app/."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from harness.provision import Server

ROOT = Path(__file__).resolve().parent.parent

_FILES = {
    "pytest.ini": """
        [pytest]
        DJANGO_SETTINGS_MODULE = shop.settings
        addopts = -p no:cacheprovider
    """,
    "shop/__init__.py": "",
    "shop/settings.py": """
        INSTALLED_APPS = ["shop"]
        # the production database: the django_race fixture replaces it with the race's
        DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "shop", "HOST": "db.invalid"}}
        USE_TZ = True
        DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
        SECRET_KEY = "test"
    """,
    "shop/models.py": """
        from django.db import models

        class Stock(models.Model):
            sku = models.CharField(max_length=20, unique=True)
            qty = models.IntegerField()
    """,
    "shop/views.py": """
        from django.db import transaction
        from django.db.models import F
        from .models import Stock

        def sell_naive(sku):
            with transaction.atomic():
                stock = Stock.objects.get(sku=sku)
                stock.qty -= 1
                stock.save()

        def sell(sku):
            Stock.objects.filter(sku=sku).update(qty=F("qty") - 1)

        def sell_locked(sku):  # docs/django.md's pytest-django example
            with transaction.atomic():
                stock = Stock.objects.select_for_update().get(sku=sku)
                stock.qty -= 1
                stock.save(update_fields=["qty"])
    """,
    "test_shop.py": """
        import pytest
        from shop import views
        from shop.models import Stock

        def stock_race(race, sell):
            race.setup(lambda conn: Stock.objects.create(sku="mug", qty=10))
            race.teardown(lambda conn: Stock.objects.all().delete())
            race.actor("A", lambda: sell("mug"))
            race.actor("B", lambda: sell("mug"))
            race.check_sql("two_sold", "SELECT qty FROM shop_stock", equals=8)

        def test_naive_sale_loses_one(django_race):
            stock_race(django_race, views.sell_naive)
            failure = django_race.assert_finds_race(max_schedules=30).failure
            print("FOUND", failure.schedule_text, failure.violated)

        @pytest.mark.parametrize("sell", ["sell", "sell_locked"])
        def test_fixed_sales_pass(django_race, sell):
            stock_race(django_race, getattr(views, sell))
            print("PASSED", django_race.assert_no_race(max_schedules=30).schedules_run)

        def test_other_tests_keep_pytest_djangos_blocker():
            with pytest.raises(RuntimeError, match="Database access not allowed"):
                Stock.objects.count()
    """,
}


def _dsn(server: Server) -> str:
    return server.info.with_db(server.dialect.admin_db).dsn


def test_pytest_django_project_with_the_django_race_fixture(tmp_path: Path, pg_server: Server,
                                                            mysql_server: Server) -> None:
    for name, text in _FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text).lstrip())
    env = {**os.environ, "HARNESS_PG_DSN": _dsn(pg_server), "HARNESS_MYSQL_DSN": _dsn(mysql_server),
           "HARNESS_BACKENDS": "postgres,mysql",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-rA", "-p", "django"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env=env)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "7 passed" in out, out[-2000:]
    assert out.count("FOUND") == 2 and out.count("['two_sold']") == 2, out[-2000:]
    passed = [int(n) for n in re.findall(r"PASSED (\d+)$", out, re.M)]
    assert len(passed) == 4 and min(passed) >= 2, out[-2000:]


def test_configure_without_settings_is_a_clear_error(tmp_path: Path) -> None:
    code = ("from harness.django import configure\n"
            "from harness.errors import ConfigError\n"
            "try:\n    configure(None)\nexcept ConfigError as exc:\n    print(exc)\n")
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "set DJANGO_SETTINGS_MODULE" in done.stdout and "installed_apps" in done.stdout, done.stdout
