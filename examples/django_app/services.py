"""What the app's views do, written as Django code usually is.  Nothing here knows about the harness.

Get-or-create:

* ``label_for`` uses ``get_or_create`` on a model without a unique constraint: two requests both find
  nothing and both create -- a duplicate (and every later ``get`` raises MultipleObjectsReturned);
* ``tag_checked`` checks, then creates, on a model with a unique constraint: the loser's INSERT fails
  with an IntegrityError (an HTTP 500) instead of returning the tag;
* ``tag_for`` uses ``get_or_create`` on the unique model: Django creates inside a savepoint and, when the
  constraint says someone else won, rolls back to it and reads the winner's row -- correct under
  PostgreSQL's and Django's MariaDB default READ COMMITTED, even inside an outer ``atomic()``.

Counters:

* ``bump_save`` reads, adds one in Python and saves: a lost update;
* ``bump_f`` lets the database add (``F("n") + 1``): correct;
* ``bump_locked`` reads with ``select_for_update()`` inside ``atomic()`` and saves: correct.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import F

from .models import Counter, Label, Tag


def label_for(name: str) -> int:
    label, _ = Label.objects.get_or_create(name=name)
    return label.pk


def tag_checked(name: str) -> int:
    with transaction.atomic():
        tag = Tag.objects.filter(name=name).first()
        if tag is None:
            tag = Tag.objects.create(name=name)
        return tag.pk


def tag_for(name: str) -> int:
    with transaction.atomic():
        tag, _ = Tag.objects.get_or_create(name=name)
        return tag.pk


def bump_save(name: str) -> None:
    counter = Counter.objects.get(name=name)
    counter.n += 1
    counter.save()


def bump_f(name: str) -> None:
    Counter.objects.filter(name=name).update(n=F("n") + 1)


def bump_locked(name: str) -> None:
    with transaction.atomic():
        counter = Counter.objects.select_for_update().get(name=name)
        counter.n += 1
        counter.save(update_fields=["n"])
