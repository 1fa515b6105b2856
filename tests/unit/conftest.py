"""The unit layer: pure parts of the harness, no server (``python -m pytest tests/unit -q`` runs in seconds).

Everything here works on in-memory text, plain data and the CLI called in-process; a test that needs a
database belongs in ``tests/`` beside this folder, where the real-server fixtures are.
"""

from __future__ import annotations

import textwrap

import pytest

from harness.scenario.model import Scenario
from harness.scenario.yaml_loader import load_yaml

SESSIONS_YAML = textwrap.dedent("""\
    setup: CREATE TABLE counter (id int PRIMARY KEY, n int)
    sessions:
      a:
        steps: {a1: BEGIN, a2: UPDATE counter SET n = n + 1, a3: COMMIT}
      b:
        steps: {b1: BEGIN, b2: UPDATE counter SET n = n + 1, b3: COMMIT}
    checks:
      two: {sql: SELECT n FROM counter, expect: {equals: 2}}
    interleavings:
      - name: serial
        steps: [a1, a2, a3, b1, b2, b3]
      - a1 b1 a2 b2 a3 b3
    """)

ACTORS_YAML = textwrap.dedent("""\
    actors:
      A: {call: "scenarios.bkci.actors:save_rule_actor"}
      B: {call: "scenarios.bkci.actors:save_rule_actor"}
    faults:
      ack: {lose_commit_ack: A}
    explore: {schedules: 10, expect: holds}
    """)


@pytest.fixture
def sessions_scenario() -> Scenario:
    return load_yaml(SESSIONS_YAML, "mem/sessions.yaml")


@pytest.fixture
def actors_scenario() -> Scenario:
    return load_yaml(ACTORS_YAML, "mem/actors.yaml")
