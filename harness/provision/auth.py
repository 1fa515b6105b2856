"""Per-run credentials for local servers: nobody else on the machine gets in through 127.0.0.1.

Each local server gets its own random password, made when its run dir is made and never written
outside it (the run dir is mode 0700, owned by the server's user, removed at stop):

* PostgreSQL: initdb with ``scram-sha-256`` for host connections and ``trust`` only on the Unix
  socket, which lives in the private run dir.  The ``postgres`` role has no password in the cached
  data dir, so TCP logins fail until :func:`pg_set_password` sets this run's (as a SCRAM verifier
  computed here: the password itself never reaches the server or its log).
* MariaDB/MySQL: an ``--init-file`` the server runs before it accepts connections drops every
  account but root (and MariaDB's locked ``mariadb.sys``) and gives root this run's password.
* Redis: ``requirepass`` in a config file (not on the command line, which ``ps`` shows everyone).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

#: initdb's authentication: host connections need the password, the private socket does not
PG_AUTH_ARGS = ("--auth-local=trust", "--auth-host=scram-sha-256")


def new_password() -> str:
    """128 random bits as hex: no quoting needed in SQL, a URL or a Redis config file."""
    return secrets.token_hex(16)


def _private_file(path: Path, text: str, owner: tuple[int, int] | None) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    if owner is not None:
        os.chown(path, *owner)
    return path


def mysql_init_file(run: Path, password: str, flavor: str, owner: tuple[int, int] | None) -> list[str]:
    """Server arguments that lock down root before the first connection is accepted."""
    if flavor == "mariadb":
        roots = ("localhost", "127.0.0.1", "::1")
        sql = (
            "DELETE FROM mysql.global_priv WHERE NOT ((User = 'root' AND Host IN ('localhost', '127.0.0.1', '::1'))"
            " OR (User = 'mariadb.sys' AND Host = 'localhost'));\n"
            "FLUSH PRIVILEGES;\n"
            "ALTER USER " + ", ".join(f"'root'@'{h}' IDENTIFIED BY '{password}'" for h in roots) + ";\n"
        )
    else:  # Oracle MySQL --initialize-insecure makes root@localhost (and locked mysql.* accounts)
        sql = f"ALTER USER 'root'@'localhost' IDENTIFIED BY '{password}';\n"
    return [f"--init-file={_private_file(run / 'auth.sql', sql, owner)}"]


def redis_config(run: Path, password: str, owner: tuple[int, int] | None) -> list[str]:
    """The config file (it must come first on redis-server's command line) holding ``requirepass``."""
    return [str(_private_file(run / "redis.conf", f"requirepass {password}\n", owner))]


#: PBKDF2 rounds in the stored SCRAM verifier. Rounds slow down guessing a *weak* password; ours has 128
#: random bits, so they protect nothing and would cost every TCP connection ~3 ms (libpq's 4096 rounds,
#: measured: connect 3.5 -> 6.5-8 ms).  The client uses the count the server sends.
SCRAM_ITERATIONS = 16


def scram_verifier(password: str, iterations: int = SCRAM_ITERATIONS) -> str:
    """PostgreSQL's stored form of a SCRAM-SHA-256 password (RFC 5802 / 7677), made client-side."""
    import base64
    import hashlib
    import hmac

    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(hashlib.sha256(client_key).digest())}:{b64(server_key)}"


def pg_set_password(socket_dir: Path, port: int, user: str, password: str) -> None:
    """Give ``user`` this run's password over the private socket, as a verifier: the password itself
    never reaches the server or its log."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(host=str(socket_dir), port=port, user=user, dbname="postgres", autocommit=True,
                         connect_timeout=10) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(user),
                                                                  sql.Literal(scram_verifier(password))))


def pg_ready(socket_dir: Path, port: int, user: str) -> None:
    """Raises until the server accepts connections (asked on the socket: TCP needs the password)."""
    import psycopg

    psycopg.connect(host=str(socket_dir), port=port, user=user, dbname="postgres", connect_timeout=2).close()
