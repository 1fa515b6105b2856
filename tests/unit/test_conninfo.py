"""ConnInfo (harness/dialect/base.py): URL parsing, the DSN it prints, and password redaction."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.dialect import ConnInfo
from harness.errors import ProvisionError
from harness.provision.dsn import parse_dsn

words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=10)


@given(user=words, password=words, dbname=words, port=st.integers(1, 65535),
       params=st.lists(st.tuples(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), words), max_size=2))
def test_dsn_parses_back_to_the_same_conninfo(user: str, password: str, dbname: str, port: int,
                                              params: list[tuple[str, str]]) -> None:
    info = ConnInfo("postgresql", "127.0.0.1", port, user, password if user else "", dbname, tuple(params))
    assert ConnInfo.parse(info.dsn, default_scheme="postgresql", default_port=5432) == info


@given(password=words.filter(bool))
def test_redacted_never_shows_the_password(password: str) -> None:
    info = ConnInfo("mysql", "db.example", 3306, "app", password, "shop")
    assert info.redacted() == "mysql://app:***@db.example:3306/shop"


def test_aliases_and_defaults() -> None:
    assert ConnInfo.parse("postgres://u@h/d", default_scheme="postgresql", default_port=5432).port == 5432
    assert ConnInfo.parse("mariadb://u@h:3307/", default_scheme="mysql", default_port=3306).scheme == "mysql"


@pytest.mark.parametrize("url, reason", [
    ("127.0.0.1:5432", "expected a URL like"),
    ("mysql://h/db", "scheme 'mysql' is not postgresql://"),
    ("postgresql://h:port/db", "Port could not be cast"),
    ("postgresql://[::1/db", "Invalid IPv6 URL"),
])
def test_bad_urls_say_why(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        ConnInfo.parse(url, default_scheme="postgresql", default_port=5432)
    with pytest.raises(ProvisionError, match="--pg-dsn / HARNESS_PG_DSN"):
        parse_dsn("postgres", url)
