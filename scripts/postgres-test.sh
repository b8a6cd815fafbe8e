#!/usr/bin/env bash
# A private PostgreSQL cluster for the test suite, under var/pgtest (never the system cluster).
#
#   scripts/postgres-test.sh start   initialise (first time) and start it; already running is ok
#   scripts/postgres-test.sh stop    stop it (pg_ctl stop -m fast); not running is ok
#   scripts/postgres-test.sh url     print the SQLAlchemy URL of the test database
#
# It listens on 127.0.0.1:${CERTYARD_TEST_PG_PORT:-55432} and on a unix socket in var/pgtest/run,
# trusts every local connection, and has a database certyard_test. The superuser "postgres" can
# create databases (the tests create a fresh one each). initdb refuses to run as root, so as root
# the cluster belongs to the postgres system user.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$(pwd -P)"
PORT="${CERTYARD_TEST_PG_PORT:-55432}"
BASE="$ROOT/var/pgtest"
DATA="$BASE/data"
SOCK="$BASE/run"
LOGFILE="$BASE/postgres.log"
DBNAME=certyard_test
START_TIMEOUT="${CERTYARD_TEST_PG_TIMEOUT:-60}"

log() { printf 'postgres-test: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

url() { printf 'postgresql+asyncpg://postgres@127.0.0.1:%s/%s\n' "$PORT" "$DBNAME"; }

find_bin() {
    BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
    [[ -n "$BIN" && -x "$BIN/initdb" ]] \
        || die "PostgreSQL server binaries not found under /usr/lib/postgresql (run scripts/install-test-deps.sh)"
}

# Run a command as the cluster owner: the postgres system user when we are root, else ourselves.
as_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        if command -v runuser >/dev/null 2>&1; then
            runuser -u postgres -- "$@"
        else
            su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
        fi
    else
        "$@"
    fi
}

is_running() { [[ -f "$DATA/PG_VERSION" ]] && as_owner "$BIN/pg_ctl" status -D "$DATA" >/dev/null 2>&1; }

ready() { "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -t 2; }

init_cluster() {
    mkdir -p "$BASE"
    if [[ "$(id -u)" == 0 ]]; then
        id postgres >/dev/null 2>&1 || die "no postgres system user (is the postgresql package installed?)"
        chown postgres: "$BASE"
        chmod 0755 "$BASE"
        as_owner test -x "$BASE" \
            || die "the postgres user cannot reach $BASE: make the directories above it world-searchable"
    fi
    if [[ ! -f "$DATA/PG_VERSION" ]]; then
        rm -rf "$DATA"
        log "initdb in $DATA"
        as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
            >"$BASE/initdb.log" 2>&1 || { cat "$BASE/initdb.log" >&2; die "initdb failed"; }
        # Everything else (port, socket, addresses) is passed on the command line at start.
        as_owner sh -c "cat >>'$DATA/postgresql.conf'" <<'CONF'

# certyard test cluster: throwaway data, so durability is traded for speed.
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
CONF
    fi
    as_owner mkdir -p "$SOCK"
}

start() {
    find_bin
    init_cluster
    if is_running; then
        log "already running (port $PORT)"
    else
        log "starting on 127.0.0.1:$PORT (log: $LOGFILE)"
        as_owner touch "$LOGFILE"
        # -w waits for the postmaster; the pg_isready loop below is the real readiness check.
        if ! as_owner "$BIN/pg_ctl" start -D "$DATA" -l "$LOGFILE" -w -t "$START_TIMEOUT" \
                -o "-c listen_addresses=127.0.0.1 -p $PORT -k '$SOCK'" >/dev/null; then
            tail -n 30 "$LOGFILE" >&2 || true
            die "pg_ctl start failed (is port $PORT in use? set CERTYARD_TEST_PG_PORT)"
        fi
    fi
    local deadline=$((SECONDS + START_TIMEOUT))
    until ready; do
        if ((SECONDS >= deadline)); then
            tail -n 30 "$LOGFILE" >&2 || true
            die "not ready on 127.0.0.1:$PORT after ${START_TIMEOUT}s"
        fi
        sleep 0.2
    done
    local psql=("$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres)
    if [[ "$("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$DBNAME'")" != 1 ]]; then
        "${psql[@]}" -c "CREATE DATABASE $DBNAME"
    fi
    log "ready: $(url)"
}

stop() {
    if [[ ! -f "$DATA/PG_VERSION" ]]; then
        log "no cluster in $DATA"
        return 0
    fi
    find_bin
    if is_running; then
        as_owner "$BIN/pg_ctl" stop -D "$DATA" -m fast -w -t "$START_TIMEOUT" >/dev/null
        log "stopped"
    else
        log "not running"
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url) url ;;
    *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
