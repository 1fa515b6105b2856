"""Three models, as an app would declare them: a tag with a unique name, a label without one, a counter."""

from __future__ import annotations

from django.db import models


class Tag(models.Model):
    """A unique name: two concurrent creations cannot both succeed."""

    name = models.CharField(max_length=50, unique=True)


class Label(models.Model):
    """No constraint on the name: nothing in the database stops a duplicate."""

    name = models.CharField(max_length=50)


class Counter(models.Model):
    name = models.CharField(max_length=50, unique=True)
    n = models.IntegerField(default=0)
