#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster on 127.0.0.1 for tests and development
# (Debian's postgresql-15; no systemd, Debian's own cluster left alone).
#
#   scripts/postgres.sh up     starts it (installing the package when
#                              missing) and prints `export EMBER_TEST_DATABASE=...`
#   scripts/postgres.sh down   stops the server it started and deletes the state
#
# Environment:
#   PG_STATE=dir     state directory (default /tmp/ember-postgres-<uid>): the
#                    server runs as the `postgres` user, which must be able
#                    to reach it, so it is not under the checkout by default
#   PG_DURABLE=0     1 keeps PostgreSQL's durable defaults (fsync,
#                    synchronous_commit); 0 turns them off for speed (tests
#                    that prove durability set PG_DURABLE=1)
# The port is chosen free at start-up. Role and database: ember / ember,
# password ember; the role may create databases (each test makes its own).
set -euo pipefail
cmd="${1:-}"
STATE="${PG_STATE:-/tmp/ember-postgres-$(id -u)}"
say() { echo "[postgres] $*" >&2; }

bin_dir() {
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/pg_ctl" ] && { echo "$d"; return; }
    done
}

as_pg() { runuser -u postgres -- "$@"; }

case "$cmd" in
up)
    if [ -z "$(bin_dir)" ]; then
        say "installing postgresql"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    fi
    BIN="$(bin_dir)"
    DATA="$STATE/data"
    if [ -f "$DATA/postmaster.pid" ] && as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
        cat "$STATE/env"
        exit 0
    fi
    rm -rf "$STATE"
    mkdir -p "$STATE/run"
    chown -R postgres:postgres "$STATE"
    chmod 700 "$STATE"
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
        -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
    {
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $PORT"
        echo "unix_socket_directories = '$STATE/run'"
        echo "max_connections = 300"
        echo "logging_collector = off"
        if [ "${PG_DURABLE:-0}" = 0 ]; then
            echo "fsync = off"
            echo "synchronous_commit = off"
            echo "full_page_writes = off"
        fi
    } >> "$DATA/postgresql.conf"
    as_pg "$BIN/pg_ctl" -D "$DATA" -l "$STATE/postgres.log" -w -t 60 start >/dev/null
    as_pg psql -h "$STATE/run" -p "$PORT" -U postgres -qAt -v ON_ERROR_STOP=1 \
        -c "CREATE ROLE ember LOGIN PASSWORD 'ember' CREATEDB" \
        -c "CREATE DATABASE ember OWNER ember" >/dev/null
    echo "export EMBER_TEST_DATABASE=postgres://ember:ember@127.0.0.1:$PORT/ember" > "$STATE/env"
    say "ready on 127.0.0.1:$PORT"
    cat "$STATE/env"
    ;;
down)
    BIN="$(bin_dir)"
    if [ -n "$BIN" ] && [ -f "$STATE/data/postmaster.pid" ]; then
        as_pg "$BIN/pg_ctl" -D "$STATE/data" -m fast -w -t 60 stop >/dev/null || true
    fi
    rm -rf "$STATE"
    say "stopped"
    ;;
*)
    echo "usage: $0 up|down" >&2
    exit 2
    ;;
esac
