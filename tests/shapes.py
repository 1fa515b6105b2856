"""Scenario text shared by test modules: two accounts and a session updating them in order (1, then 2);
each test adds the other session, which updates them in the opposite order."""

ACCOUNTS_AND_SESSION_A = """
setup: |
  CREATE TABLE acct (id int PRIMARY KEY, n int);
  INSERT INTO acct VALUES (1, 0), (2, 0);
teardown: DROP TABLE acct
sessions:
  a:
    steps: {a1: BEGIN, a2: UPDATE acct SET n = n + 1 WHERE id = 1, a3: UPDATE acct SET n = n + 1 WHERE id = 2,
            a4: COMMIT}
"""
