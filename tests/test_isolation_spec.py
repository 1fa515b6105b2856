"""The isolationtester drop-in: spec loading, PQprint, and byte-identical output against the real binary.

The real ``isolationtester`` and ours run the same spec against the same fresh database; their
stdout+stderr (merged, as pg_isolation_regress merges them) must be equal byte for byte.  A missing
binary or server is a failure, never a skip.
"""

from __future__ import annotations

import glob
import io
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import ScenarioError
from harness.isolation import all_permutations, conninfo_of, isolationtester_main, pqprint
from harness.scenario.spec_loader import load_spec, unused_steps

SPECS = Path(__file__).resolve().parent / "specs"
SPEC_FILES = sorted(SPECS.glob("*.spec"))
REAL_TESTER = os.environ.get("ISOLATIONTESTER") or next(
    iter(sorted(glob.glob("/usr/lib/postgresql/*/lib/pgxs/src/test/isolation/isolationtester"), reverse=True)),
    "isolationtester")
SPEC_ENV = {"timeout.spec": {"PGISOLATIONTIMEOUT": "1"}}


def real_tester() -> str:
    if not os.path.exists(REAL_TESTER):
        pytest.fail(f"PostgreSQL's isolationtester not found at {REAL_TESTER}; install postgresql-server-dev-15 "
                    f"or set ISOLATIONTESTER=/path/to/isolationtester", pytrace=False)
    return REAL_TESTER


def run_real(conninfo: str, spec: bytes) -> tuple[int, bytes]:
    p = subprocess.run([real_tester(), conninfo], input=spec, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=120)
    return p.returncode, p.stdout


def run_ours(argv: list[str], spec: bytes) -> tuple[int, bytes]:
    out = io.BytesIO()
    rc = isolationtester_main(argv, io.BytesIO(spec), out, out)
    return rc, out.getvalue()


# -- byte-identical output against the real isolationtester ------------------------------------
@pytest.mark.parametrize("spec", SPEC_FILES, ids=[p.name for p in SPEC_FILES])
def test_same_output_as_isolationtester(spec: Path, pg_database, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in SPEC_ENV.get(spec.name, {}).items():
        monkeypatch.setenv(key, value)
    conninfo = conninfo_of(pg_database.info)
    text = spec.read_bytes()
    real_rc, real = run_real(conninfo, text)
    ours_rc, ours = run_ours([conninfo], text)
    assert real.startswith(b"Parsed test spec"), real.decode(errors="replace")
    assert ours.decode(errors="replace") == real.decode(errors="replace")
    assert ours == real
    assert ours_rc == real_rc == 0


def test_specs_cover_the_features() -> None:
    """The spec files above exercise what the drop-in must get exactly right."""
    text = "\n".join(p.read_text() for p in SPEC_FILES)
    for needle in ("(*)", "(s2lock)", "notices 1", "deadlock_timeout", "RAISE NOTICE", "NOTIFY", "SELEC 1"):
        assert needle in text, needle
    assert any(not load_spec(p.read_text(), str(p)).interleavings for p in SPEC_FILES)  # all permutations


def test_libpq_environment_and_default_conninfo(pg_database, monkeypatch: pytest.MonkeyPatch) -> None:
    """No CONNINFO argument: "dbname = postgres" plus PG* variables, like the C program."""
    info = pg_database.info
    monkeypatch.setenv("PGHOST", info.host)
    monkeypatch.setenv("PGPORT", str(info.port))
    monkeypatch.setenv("PGUSER", info.user)
    monkeypatch.setenv("PGPASSWORD", info.password)  # local servers have a per-run password
    spec = b"session s1\nstep s1 { SELECT current_database() AS db, current_setting('application_name') AS app; }\n"
    monkeypatch.setenv("PGAPPNAME", "isolation/env")
    rc, out = run_ours([], spec)
    _, real = run_real("dbname = postgres", spec)
    assert rc == 0 and out == real
    assert b"postgres|isolation/env/s1" in out


# -- the command line contract ------------------------------------------------------------------
def test_version_matches_real_binary() -> None:
    real = subprocess.run([real_tester(), "-V"], capture_output=True).stdout
    rc, out = run_ours(["-V"], b"")
    assert rc == 0 and out == real


def test_bad_option_and_bad_spec_exit_1() -> None:
    rc, out = run_ours(["-x"], b"")
    assert rc == 1 and b"Usage: isolationtester [CONNINFO]" in out
    rc, out = run_ours(["dbname=unused"], b"session s1 step a { SELECT 1; }\npermutation b\n")
    assert rc == 1
    assert b"<stdin>:2: undefined step 'b'" in out and b"did you mean 'a'?" in out


def test_connection_failure_exit_1(tmp_path: Path) -> None:
    rc, out = run_ours([f"host={tmp_path} port=1 dbname=x connect_timeout=2"], b"session s1 step a { SELECT 1; }")
    assert rc == 1
    assert out.startswith(b"Parsed test spec with 1 sessions\nConnection 0 failed: ")


# -- PQprint ------------------------------------------------------------------------------------
def test_pqprint_alignment() -> None:
    got = pqprint(["id", "name", "n"], [["1", "alice", None], ["22", None, ""], ["-3.5e2", "bö", None]])
    assert got == (b"    id|name |n\n"  # numeric column: header right-aligned too
                   b"------+-----+-\n"
                   b"     1|alice| \n"
                   b"    22|     | \n"
                   b"-3.5e2|b\xc3\xb6  | \n"
                   b"(3 rows)\n\n")
    assert pqprint(["x"], []) == b"x\n-\n(0 rows)\n\n"
    assert pqprint(["v"], [["1"]]) == b"v\n-\n1\n(1 row)\n\n"
    assert pqprint([], [[]]) == b""
    # a leading E, a trailing non-digit or any other character makes the column text (left-aligned)
    for value in ("E5", "5.", "1-a", "x1"):
        assert pqprint(["column"], [[value]]).splitlines()[2] == value.encode().ljust(6)
    for value in ("1e5", "12 34", "-7", ".5"):
        assert pqprint(["column"], [[value]]).splitlines()[2] == value.encode().rjust(6)


# -- the spec loader ----------------------------------------------------------------------------
VALID = """# comment
setup { CREATE TABLE t (i int); }
setup
{
  INSERT INTO t VALUES (1);
}
teardown { DROP TABLE t; }

session "s 1"
setup { BEGIN; }
step "a""b" { SELECT 1; }
step s1u {
  UPDATE t SET i = 2;
}
teardown { COMMIT; }

session s2
step s2u { UPDATE t SET i = 3; }

permutation "a""b" s1u s2u(*)
permutation s2u(s1u, * ,s1u notices 2) s1u "a""b"
"""


def test_load_spec_model() -> None:
    s = load_spec(VALID, "x.spec")
    assert s.name == "x" and s.source == "spec" and s.backends == ("postgres",)
    assert [b.by_backend["*"] for b in s.setup] == ["CREATE TABLE t (i int);", "\n  INSERT INTO t VALUES (1);\n"]
    assert [b.line for b in s.setup] == [2, 4]
    assert s.teardown[0].line == 7
    assert [x.name for x in s.sessions] == ["s 1", "s2"]
    assert s.sessions[0].line == 9 and s.sessions[0].setup[0].by_backend["*"] == "BEGIN;"
    step = s.step('a"b')
    assert step.session == "s 1" and step.line == 11 and step.sql is not None and step.sql.line == 11
    assert s.step("s1u").sql.by_backend["*"] == "\n  UPDATE t SET i = 2;\n"  # type: ignore[union-attr]
    p1, p2 = s.interleavings
    assert [r.step for r in p1.steps] == ['a"b', "s1u", "s2u"] and p1.line == 20
    assert [(b.step, b.notices) for b in p2.steps[0].blockers] == [("s1u", None), (None, None), ("s1u", 2)]
    assert unused_steps(s) == []


def test_all_permutations_order() -> None:
    s = load_spec("session a step a1 {x} step a2 {x} session b step b1 {x}", "p.spec")
    assert [" ".join(r.step for r in p.steps) for p in all_permutations(s)] == [
        "a1 a2 b1", "a1 b1 a2", "b1 a1 a2"]


def test_unused_steps_sorted_like_strcmp() -> None:
    s = load_spec("session a step b {x} step B {x} step a1 {x}\npermutation a1", "u.spec")
    assert unused_steps(s) == ["B", "b"]


@pytest.mark.parametrize("text, line, fragments", [
    ("session s1\nstep a { SELECT 1; }\npermutation a b1", 3, ["undefined step 'b1'", "did you mean 'a'?"]),
    ("session s1\nstep alpha { x }\nsession s2\nstep beta { x }\npermutation alpha beta(alpah)", 5,
     ["undefined blocking step 'alpah'", "did you mean 'alpha'?"]),
    ("session s1\nstep a { x }\nstep b { x }\npermutation a b(a)", 4, ["cannot block on 'a' of its own session"]),
    ("session s1\nstep a { x }\nsession s2\n\nstep a { y }", 5, ["duplicate step name 'a'", "line 2"]),
    ("setup { x }\nsession s1\n  step a\n", 4, ["expected an SQL block", "end of file"]),
    ("session s1 step a { x\n\n", 1, ["unterminated SQL block", "expected '}'"]),
    ('session "s1\n', 1, ["unexpected newline in quoted identifier"]),
    ("session s1 step a { x }\npermutation a(b notices)", 2, ["expected a number after 'notices'"]),
    ("session s1 step a { x }\n\npermutation a(b", 3, ["expected ',' or ')'"]),
    ("\n\nstep a { x }", 3, ["expected 'setup', 'teardown' or 'session'", "'step'"]),
    ("session s1 step a { x } ; ", 1, ["unexpected character ';'"]),
    ("session s1 teardown { x }", 1, ["expected 'setup' or 'step' in session 's1'"]),
    ("session s1 step a { x } setup { y }", 1, ["expected 'session', 'permutation' or end of file"]),
    ("", 1, ["expected 'setup', 'teardown' or 'session'", "end of file"]),
])
def test_spec_errors_name_file_line_and_expectation(text: str, line: int, fragments: list[str]) -> None:
    with pytest.raises(ScenarioError) as info:
        load_spec(text, "bad.spec")
    message = str(info.value)
    assert message.startswith(f"bad.spec:{line}: "), message
    assert info.value.path == "bad.spec" and info.value.line == line
    for fragment in fragments:
        assert fragment in message, message


def _tokens_of(text: str) -> list[str]:
    return text.replace("{", " { ").replace("}", " } ").replace("(", " ( ").replace(")", " ) ").split(" ")


MUTATIONS = st.sampled_from(["delete", "insert", "swap", "duplicate", "truncate"])
INSERTS = st.sampled_from(["{", "}", "(", ")", "*", ",", '"', "#", "\n", "step", "session", "permutation",
                           "setup", "teardown", "notices", "7", "s1", "\x00", "é", "$", "'", ";", ""])


def _seed_specs() -> list[str]:
    return [VALID] + [p.read_text() for p in SPEC_FILES]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_random_text_raises_only_scenario_error(text: str) -> None:
    try:
        load_spec(text, "random.spec")
    except ScenarioError as exc:
        assert str(exc).startswith("random.spec:")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10**6), st.lists(st.tuples(MUTATIONS, st.integers(0, 10**6), INSERTS), min_size=1, max_size=6))
def test_mutated_specs_raise_only_scenario_error(seed: int, mutations: list[tuple[str, int, str]]) -> None:
    seeds = _seed_specs()
    text = seeds[seed % len(seeds)]
    for kind, pos, piece in mutations:
        if kind in ("swap", "duplicate"):
            toks = _tokens_of(text)
            i, j = pos % len(toks), (pos // 7) % len(toks)
            if kind == "swap":
                toks[i], toks[j] = toks[j], toks[i]
            else:
                toks.insert(i, toks[j])
            text = " ".join(toks)
            continue
        i = pos % (len(text) + 1)
        if kind == "delete":
            text = text[:i] + text[i + 1 + pos % 5:]
        elif kind == "insert":
            text = text[:i] + piece + text[i:]
        else:
            text = text[:i]
    try:
        load_spec(text, "mutated.spec")
    except ScenarioError as exc:
        assert str(exc).startswith("mutated.spec:")


def test_deeply_nested_garbage_is_a_scenario_error() -> None:
    rnd = random.Random(1)
    text = "session s step a {x} permutation a(" + ",".join(rnd.choice(["a", "*"]) for _ in range(20000))
    with pytest.raises(ScenarioError):
        load_spec(text, "deep.spec")


def test_missing_libpq_is_one_message_exit_1(tmp_path: Path) -> None:
    """The drop-in loads libpq itself (harness/dialect/libpq.py): without one, it says so, no traceback."""
    import subprocess
    import sys

    env = {**os.environ, "HARNESS_LIBPQ": str(tmp_path / "no-libpq.so")}
    done = subprocess.run([sys.executable, "-m", "harness.cli", "isolationtester", "dbname=x"],
                          input=b"session s1 step a { SELECT 1; }", capture_output=True, env=env, timeout=60)
    assert done.returncode == 1
    assert b"cannot load libpq" in done.stderr and b"HARNESS_LIBPQ" in done.stderr
    assert b"Traceback" not in done.stderr


def _regress(regress: Path, server, inputdir: Path, outputdir: Path, spec: str,
             **env_extra: str) -> subprocess.CompletedProcess[str]:
    info = server.info
    argv = [str(regress), f"--host={info.host}", f"--port={info.port}", f"--user={info.user}",
            f"--bindir={Path(REAL_TESTER).parents[5] / 'bin'}", f"--inputdir={inputdir}",
            f"--outputdir={outputdir}", "--dbname=isolation_wrapper_test", spec]
    env = {**os.environ, **env_extra, **({"PGPASSWORD": info.password} if info.password else {})}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)


def test_isolation_wrapper_runs_the_drop_in_under_pg_isolation_regress(pg_server, tmp_path: Path) -> None:
    """`harness isolation-wrapper DIR` makes the folder `make installcheck` needs: pg_isolation_regress
    finds our isolationtester next to itself, and a spec whose expected output the real isolationtester
    wrote (under the real pg_isolation_regress) passes."""
    from .conftest import run_harness

    real_regress = Path(real_tester()).with_name("pg_isolation_regress")
    inputdir = tmp_path / "in"
    (inputdir / "specs").mkdir(parents=True)
    (inputdir / "expected").mkdir()
    (inputdir / "specs" / "row-lock-wait.spec").write_bytes((SPECS / "row-lock-wait.spec").read_bytes())
    (inputdir / "expected" / "row-lock-wait.out").write_text("")
    _regress(real_regress, pg_server, inputdir, tmp_path / "real", "row-lock-wait")  # fails: writes results/
    expected = (tmp_path / "real" / "results" / "row-lock-wait.out").read_text()
    assert "<waiting ...>" in expected, expected
    (inputdir / "expected" / "row-lock-wait.out").write_text(expected)

    done = run_harness("isolation-wrapper", str(tmp_path / "wrapper"), "--pg-isolation-regress", str(real_regress))
    assert done.returncode == 0, done.stderr
    script = (tmp_path / "wrapper" / "isolationtester").read_text()
    assert script.splitlines()[0] == f"#!{sys.executable} -S"
    ours = _regress(tmp_path / "wrapper" / "pg_isolation_regress", pg_server, inputdir, tmp_path / "ours",
                    "row-lock-wait")
    assert ours.returncode == 0 and "ok" in ours.stdout, ours.stdout + ours.stderr
    assert (tmp_path / "ours" / "results" / "row-lock-wait.out").read_text() == expected
    # it was ours that ran: told to report another version, it is refused by pg_isolation_regress
    refused = _regress(tmp_path / "wrapper" / "pg_isolation_regress", pg_server, inputdir, tmp_path / "v",
                       "row-lock-wait", ISOLATIONTESTER_PG_VERSION="0.0")
    assert refused.returncode != 0 and "isolationtester" in refused.stderr, refused.stdout + refused.stderr

    missing = run_harness("isolation-wrapper", str(tmp_path / "w2"), "--pg-isolation-regress", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "pg_isolation_regress not found" in missing.stderr
    assert "Traceback" not in missing.stderr
