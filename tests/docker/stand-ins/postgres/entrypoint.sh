#!/bin/sh
# Sets up an empty data directory (once), then runs the server, listening on every address.
set -eu
user="${POSTGRES_USER:-postgres}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    printf '%s' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" > /tmp/password
    initdb --encoding=UTF8 --locale=C.UTF-8 --username="$user" --pwfile=/tmp/password --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm /tmp/password
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    database="${POSTGRES_DB:-$user}"
    if [ "$database" != postgres ]; then
        pg_ctl --wait --silent --options="-c listen_addresses=''" start
        createdb --username="$user" "$database"
        pg_ctl --wait --silent --mode=fast stop
    fi
fi
exec postgres -c listen_addresses='*'
