#!/bin/sh
# Stand-in for the official redis image's entrypoint: arguments starting with "-" go to
# redis-server, which runs as the redis user in /data.
set -eu
if [ "${1#-}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" != redis-server ]; then exec "$@"; fi
mkdir -p /data
chown redis:redis /data
cd /data
exec setpriv --reuid=redis --regid=redis --init-groups "$@"
