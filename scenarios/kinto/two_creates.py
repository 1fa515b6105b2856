"""Two requests creating records, each on its own connection: a program to record.

``python -m scenarios.kinto.two_creates`` creates the Kinto model's schema, then request A creates
record r1 in collection c1 and request B record r2 in c2 through the unchanged
:func:`create_record` (one after the other, so the recording is the same every time). The record
data holds a quote, double quotes and a backslash: the recorder must inline them as literals the
backend reads back unchanged. Reads ``DATABASE_URL`` / ``HARNESS_RECORD_BACKEND`` as ``harness record``
sets them (docs/recording.md).
"""

from __future__ import annotations

import os
import sys

from harness.dialect import ConnInfo, dialect_for

from .storage import create_record, install_schema

#: record data with every character a literal must quote
DATA = {"title": "it's \"quoted\" \\ and 100% done"}


def main(argv: list[str]) -> int:
    backend = os.environ.get("HARNESS_RECORD_BACKEND", "postgres")
    dialect = dialect_for(backend)
    info = ConnInfo.parse(os.environ["DATABASE_URL"], default_scheme=dialect.scheme, default_port=dialect.default_port)
    with dialect.connect(info, autocommit=True) as setup:
        install_schema(setup)
    a, b = dialect.connect(info, autocommit=False), dialect.connect(info, autocommit=False)
    try:
        stamps = [create_record(a, "b1", "c1", "r1", DATA), create_record(b, "b1", "c2", "r2", DATA)]
    finally:
        a.close()
        b.close()
    print(f"created r1, r2 with last_modified {stamps}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
