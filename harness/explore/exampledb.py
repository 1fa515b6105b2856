"""Where Hypothesis keeps the failing schedules it found, so later runs try them first.

Shards and CI runs share them through one directory (``HARNESS_EXAMPLES_DIR``, or the folder passed
as ``database_dir``) or one Redis (``HARNESS_EXAMPLES_URL=redis://host:port/db``, through Hypothesis's
own :class:`~hypothesis.extra.redis.RedisExampleDatabase`).  A URL, when set, wins over the folder:
it is the explicit choice to share.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import HarnessError
from ..redact import mask_url

EXAMPLES_URL_ENV = "HARNESS_EXAMPLES_URL"
EXAMPLES_DIR_ENV = "HARNESS_EXAMPLES_DIR"


def example_database(database_dir: str | Path | None = None) -> Any:
    """Hypothesis's example database for explorations (see the module docstring for the choice)."""
    url = os.environ.get(EXAMPLES_URL_ENV, "").strip()
    if url:
        return redis_examples(url)
    from hypothesis.database import DirectoryBasedExampleDatabase

    return DirectoryBasedExampleDatabase(str(database_dir or os.environ.get(EXAMPLES_DIR_ENV, ".hypothesis/harness")))


def redis_examples(url: str) -> Any:
    """A :class:`RedisExampleDatabase` on ``url``, checked to answer before any schedule runs."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise HarnessError(f"{EXAMPLES_URL_ENV}={mask_url(url)!r} is not a Redis URL: use redis://host:port/db (or "
                           f"unset it and set {EXAMPLES_DIR_ENV} to share a directory instead).")
    import redis
    from hypothesis.extra.redis import RedisExampleDatabase

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
        client.ping()
    except (redis.RedisError, ValueError, OSError) as exc:
        raise HarnessError(f"{EXAMPLES_URL_ENV}: cannot reach Redis at {mask_url(url)} ({type(exc).__name__}: "
                           f"{mask_url(str(exc))}); start it, fix the URL, or unset {EXAMPLES_URL_ENV} to keep "
                           "examples in a local directory.") from None
    return RedisExampleDatabase(client)
