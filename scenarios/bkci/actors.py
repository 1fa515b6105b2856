"""Explorer glue for the bk-ci model: one actor = one request saving the same routing rule.

The application code (:func:`save_rule`) is untouched; the harness hands it an instrumented
connection and a lock client whose waits the scheduler sees.
"""

from __future__ import annotations

from typing import Any, Mapping

from .rules import Rule, save_rule

#: the rule both requests save; data_tag NULL, so the table's unique key does not stop duplicates
RULE = Rule("c1", "PROCESS", "DB", "r1", "ds_0")


def save_rule_actor(ctx: Any, *, variant: str, lock: str | Mapping[str, str]) -> bool:
    """``lock``: a lock kind (redis, get_lock, advisory), or one per backend."""
    kind = lock if isinstance(lock, str) else lock[ctx.race.backend]
    return save_rule(ctx.connect(), ctx.lock(kind, RULE.lock_key), RULE, variant=variant)
