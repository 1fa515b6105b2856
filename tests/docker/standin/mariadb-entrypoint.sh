#!/bin/sh
# Stand-in for the official mariadb image's entrypoint (the subset the harness relies on):
# MARIADB_ROOT_PASSWORD / MARIADB_ALLOW_EMPTY_ROOT_PASSWORD, MARIADB_DATABASE, MARIADB_USER,
# MARIADB_PASSWORD (and their MYSQL_* aliases); initialises an empty /var/lib/mysql once, then runs
# the server as the mysql user.  A container restart keeps the data and skips the initialisation.
set -eu
if [ "${1#-}" != "$1" ]; then set -- mariadbd "$@"; fi
if [ "$1" != mariadbd ] && [ "$1" != mysqld ]; then exec "$@"; fi
root_pw="${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}"
database="${MARIADB_DATABASE:-${MYSQL_DATABASE:-}}"
user="${MARIADB_USER:-${MYSQL_USER:-}}"
user_pw="${MARIADB_PASSWORD:-${MYSQL_PASSWORD:-}}"
datadir=/var/lib/mysql
mkdir -p "$datadir" /run/mysqld
chown mysql:mysql "$datadir" /run/mysqld
sql_str() { printf "'%s'" "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/''/g")"; }
if [ ! -d "$datadir/mysql" ]; then
    if [ -z "$root_pw" ] && [ -z "${MARIADB_ALLOW_EMPTY_ROOT_PASSWORD:-${MYSQL_ALLOW_EMPTY_PASSWORD:-}}" ]; then
        echo "error: MARIADB_ROOT_PASSWORD is not set (or set MARIADB_ALLOW_EMPTY_ROOT_PASSWORD=1)" >&2
        exit 1
    fi
    setpriv --reuid=mysql --regid=mysql --init-groups mariadb-install-db --datadir="$datadir" \
        --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve > /dev/null
    init=/run/mysqld/init.sql
    pw=$(sql_str "$root_pw")
    {
        # like the official image: root only at localhost and at the chosen host (install-db also made
        # password-less root@127.0.0.1, ::1 and <hostname>, which would shadow root@'%')
        echo "DELETE FROM mysql.global_priv WHERE User = 'root' AND Host <> 'localhost';"
        echo "DELETE FROM mysql.proxies_priv WHERE Host <> 'localhost';"
        echo "FLUSH PRIVILEGES;"
        echo "ALTER USER 'root'@'localhost' IDENTIFIED BY $pw;"
        echo "CREATE USER 'root'@'%' IDENTIFIED BY $pw;"
        echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
        if [ -n "$database" ]; then echo "CREATE DATABASE IF NOT EXISTS \`$database\`;"; fi
        if [ -n "$user" ]; then
            echo "CREATE USER $(sql_str "$user")@'%' IDENTIFIED BY $(sql_str "$user_pw");"
            if [ -n "$database" ]; then echo "GRANT ALL ON \`$database\`.* TO $(sql_str "$user")@'%';"; fi
        fi
    } > "$init"
    chown mysql "$init"
    chmod 600 "$init"
    set -- "$@" "--init-file=$init"
fi
exec setpriv --reuid=mysql --regid=mysql --init-groups "$@"
