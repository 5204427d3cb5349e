#!/usr/bin/env bash
# Install (Debian packages) and start a throw-away PostgreSQL server on loopback only, then print
# the URL the tests use. Idempotent: a server already answering on the port is reused.
set -euo pipefail
PORT="${METANAS_PG_PORT:-54329}"
DATA="${METANAS_PG_DATA:-/tmp/metanas-pg}"
URL="postgresql://metanas:metanas@127.0.0.1:${PORT}/postgres"

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi
BIN="$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")"
as_postgres() { runuser -u postgres -- "$@"; }

if ! as_postgres "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
  if [ ! -f "$DATA/PG_VERSION" ]; then
    rm -rf "$DATA"; mkdir -p "$DATA"; chown postgres "$DATA"
    as_postgres "$BIN/initdb" -D "$DATA" -U postgres --auth=trust >/dev/null
  fi
  as_postgres "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k /tmp -c max_connections=200" start >&2
  as_postgres psql -h 127.0.0.1 -p "$PORT" -U postgres -qc \
    "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='metanas') THEN
       CREATE ROLE metanas LOGIN SUPERUSER PASSWORD 'metanas'; END IF; END\$\$;" >&2
fi
echo "$URL"
