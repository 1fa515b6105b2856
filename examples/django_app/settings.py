"""The example app's settings module, as small as Django allows.

``DATABASES`` names no server: a race test points ``DATABASES["default"]`` at its own database
(``harness.django.configure(race)``, or pytest-django's settings through the ``django_race`` fixture).
"""

INSTALLED_APPS = ["examples.django_app"]
DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "set-by-the-race"}}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
SECRET_KEY = "example-only"
