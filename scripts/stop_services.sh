#!/usr/bin/env bash
# Stop the throwaway PostgreSQL and Redis that scripts/ensure_services.sh
# started under .services/. Servers it merely reused (from the environment or
# the system) are never touched. Their data stays in .services/ (`make clean`
# removes it); running ensure_services.sh again restarts them.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_DIR=$ROOT/.services/pg
PG_DATA=$PG_DIR/data
REDIS_DIR=$ROOT/.services/redis

log() { echo "stop_services: $*" >&2; }

# Same user switch as in ensure_services.sh: pg_ctl refuses to run as root.
as_pg() {
    if [[ $(id -u) -eq 0 ]]; then
        if command -v runuser >/dev/null; then
            (cd "$PG_DIR" && runuser -u postgres -- "$@")
        else
            (cd "$PG_DIR" && su postgres -s /bin/bash -c "$(printf '%q ' "$@")")
        fi
    else
        (cd "$PG_DIR" && "$@")
    fi
}

# PostgreSQL: postmaster.pid exists while the server runs.
if [[ -f $PG_DATA/postmaster.pid ]]; then
    pg_ctl=/usr/lib/postgresql/$(cat "$PG_DATA/PG_VERSION" 2>/dev/null)/bin/pg_ctl
    [[ -x $pg_ctl ]] || pg_ctl=$(command -v pg_ctl || true)
    if [[ -n $pg_ctl ]]; then
        log "stopping the throwaway PostgreSQL (.services/pg)"
        as_pg "$pg_ctl" -D "$PG_DATA" -m fast -w stop >&2 || log "pg_ctl stop failed"
    else
        # No pg_ctl: SIGINT to the postmaster is a "fast" shutdown.
        pid=$(head -n 1 "$PG_DATA/postmaster.pid")
        log "stopping the throwaway PostgreSQL (pid $pid)"
        kill -INT "$pid" 2>/dev/null || true
    fi
else
    log "no throwaway PostgreSQL running"
fi
rm -f "$PG_DIR/port"

# Redis: stop the process named in its pidfile (SIGTERM = clean shutdown).
if [[ -f $REDIS_DIR/redis.pid ]]; then
    pid=$(cat "$REDIS_DIR/redis.pid")
    if kill -0 "$pid" 2>/dev/null; then
        log "stopping the throwaway Redis (pid $pid)"
        kill "$pid"
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$REDIS_DIR/redis.pid"
else
    log "no throwaway Redis running"
fi
rm -f "$REDIS_DIR/port"
