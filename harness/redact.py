"""What the harness shows or stores is masked and neutralised at its boundaries.

Two functions, used wherever text leaves the process (results.json, report.html, terminal, JUnit
failure text, saved schedules, error messages):

* :func:`mask_url` hides the password of every ``scheme://user:password@`` in a string, because a
  DSN given with ``--pg-dsn`` travels inside argv, settings and driver errors.
* :func:`sanitize` makes text safe for a terminal: ANSI escapes and other control characters in a
  scenario's names or a server's messages would otherwise repaint or rewrite the user's screen.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

#: ``scheme://user:password@``; the password stops at the last ``@`` before the host part
_URL_AUTH = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@'\"]*:)(?P<pw>[^\s/?#'\"]*)@")
#: ``password=...`` in libpq keyword/value conninfo strings
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|[^\s'\"]+)", re.IGNORECASE)
#: C0 controls except tab and newline, DEL, and C1 controls (0x9b is a one-byte CSI)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def mask_url(text: str) -> str:
    """``postgresql://u:secret@h/db`` -> ``postgresql://u:***@h/db``, for any scheme, anywhere in ``text``
    (also libpq's ``password=secret``)."""
    if "@" in text:
        text = _URL_AUTH.sub(lambda m: m["head"] + (MASK if m["pw"] else "") + "@", text)
    if "password" in text.lower():
        text = _KV_PASSWORD.sub(lambda m: m["head"] + MASK, text)
    return text


def mask_all(data: Any) -> Any:
    """:func:`mask_url` applied to every string in a JSON-like structure (keys included)."""
    if isinstance(data, str):
        return mask_url(data)
    if isinstance(data, dict):
        return {mask_all(k): mask_all(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [mask_all(v) for v in data]
    return data


def sanitize(text: str) -> str:
    """Text safe to print on a terminal: passwords masked, control characters shown as ``\\xNN``
    (``\\x1b[2J`` cannot clear the screen); tabs and newlines stay."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", mask_url(text))
