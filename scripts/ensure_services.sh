#!/usr/bin/env bash
# Make sure a PostgreSQL and a Redis are reachable for the test suite, and
# print on stdout the environment to use them:
#
#   export DATABASE_URL='postgres://...'
#   export REDIS_URL='redis://...'
#
# Everything else (progress, warnings) goes to stderr, so the output can be
# redirected into a file and sourced (`make services` writes .services.env).
#
# For each service, in order of preference:
#   a) the URL already in the environment (DATABASE_URL / REDIS_URL), if it answers;
#   b) the usual local server: postgres@127.0.0.1:5432 (trust auth), 127.0.0.1:6379
#      (skipped when FLOWOPS_SKIP_SYSTEM_SERVICES=1);
#   c) a throwaway server started from the installed binaries, with all its
#      state under .services/ in the repository (stop it with
#      scripts/stop_services.sh);
#   d) when the binaries are missing and we are root: apt-get install them, then c).
#
# Idempotent: a second run finds the servers started by the first one.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERVICES=$ROOT/.services
VENV_PY=$ROOT/.venv/bin/python

PG_DB=flowops_test          # pytest-django creates test_flowops_test from this
PG_DEFAULT_URL=postgres://postgres@127.0.0.1:5432/$PG_DB
REDIS_DEFAULT_URL=redis://127.0.0.1:6379/15
PG_FIRST_PORT=55432         # first port tried for the throwaway servers
REDIS_FIRST_PORT=56379

log() { echo "ensure_services: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Hide the password of a URL before logging it.
redact() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }

# Single-quote a value for a POSIX shell.
shquote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

is_root() { [[ $(id -u) -eq 0 ]]; }

# ---------------------------------------------------------------------------
# Reachability checks
# ---------------------------------------------------------------------------

# pg_ok URL: succeed if we can log in. The database named in the URL need not
# exist (pytest-django only uses it to derive the test database name and
# connects to "postgres" to create it), so logging in to either is enough.
pg_ok() {
    local url=$1
    if [[ -x $VENV_PY ]] && "$VENV_PY" -c 'import psycopg' 2>/dev/null; then
        "$VENV_PY" - "$url" >/dev/null 2>&1 <<'EOF'
import sys
import psycopg

for extra in ({}, {"dbname": "postgres"}):
    try:
        with psycopg.connect(sys.argv[1], connect_timeout=3, **extra) as conn:
            conn.execute("select 1")
        sys.exit(0)
    except psycopg.Error:
        pass
sys.exit(1)
EOF
    elif command -v psql >/dev/null; then
        # psql cannot override the database of a URL, so rewrite it.
        local pg_url
        pg_url=$(python3 -c 'import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/postgres")))' "$url")
        PGCONNECT_TIMEOUT=3 psql "$url" -Atqc 'select 1' >/dev/null 2>&1 ||
            PGCONNECT_TIMEOUT=3 psql "$pg_url" -Atqc 'select 1' >/dev/null 2>&1
    elif command -v pg_isready >/dev/null; then
        # Weaker: only says the server accepts connections, not that we can log in.
        pg_isready -q -t 3 -d "$url"
    else
        die "cannot check PostgreSQL: no .venv python with psycopg, no psql, no pg_isready"
    fi
}

# redis_ok URL: succeed if the server answers PING.
redis_ok() {
    local url=$1
    if [[ -x $VENV_PY ]] && "$VENV_PY" -c 'import redis' 2>/dev/null; then
        # The client the project itself uses, so the URL is read the same way.
        "$VENV_PY" -c 'import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=3, socket_timeout=3).ping()' \
            "$url" >/dev/null 2>&1
    elif command -v redis-cli >/dev/null; then
        # Note: redis-cli 7.0 reads "redis://:password@host" as an empty user name.
        [[ $(timeout 5 redis-cli -u "$url" ping 2>/dev/null) == PONG ]]
    else
        # No redis-cli: speak the protocol over a raw socket.
        python3 - "$url" >/dev/null 2>&1 <<'EOF'
import socket
import sys
import urllib.parse

u = urllib.parse.urlsplit(sys.argv[1])
with socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), timeout=3) as s:
    f = s.makefile("rb")
    if u.password:
        auth = [u.username, u.password] if u.username else [u.password]
        parts = [b"AUTH"] + [urllib.parse.unquote(a).encode() for a in auth]
        s.sendall(b"".join([b"*%d\r\n" % len(parts)] +
                           [b"$%d\r\n%s\r\n" % (len(p), p) for p in parts]))
        if not f.readline().startswith(b"+OK"):
            sys.exit(1)
    s.sendall(b"PING\r\n")
    sys.exit(0 if f.readline().startswith(b"+PONG") else 1)
EOF
    fi
}

# port_in_use PORT: something is listening on 127.0.0.1:PORT.
port_in_use() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# free_port FIRST: print the first port >= FIRST nobody listens on.
free_port() {
    local port
    for ((port = $1; port < $1 + 50; port++)); do
        if ! port_in_use "$port"; then echo "$port"; return 0; fi
    done
    die "no free port in $1..$(($1 + 49))"
}

# ---------------------------------------------------------------------------
# d) installing the binaries
# ---------------------------------------------------------------------------

apt_install() {
    is_root || die "$* not installed, and not root: install them (e.g. apt-get install $*) or provide DATABASE_URL / REDIS_URL"
    command -v apt-get >/dev/null || die "$* not installed and no apt-get: install them or provide DATABASE_URL / REDIS_URL"
    log "installing $* with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y --no-install-recommends "$@" >&2
}

# ---------------------------------------------------------------------------
# c) throwaway PostgreSQL under .services/pg
# ---------------------------------------------------------------------------

PG_DIR=$SERVICES/pg
PG_DATA=$PG_DIR/data
PG_SOCK=$PG_DIR/sock

# Directory holding initdb/pg_ctl: the version the data dir was created with
# if there is one, else the newest under /usr/lib/postgresql (Debian layout),
# else whatever is on PATH.
pg_bindir() {
    local dir
    if [[ -f $PG_DATA/PG_VERSION ]]; then
        dir=/usr/lib/postgresql/$(cat "$PG_DATA/PG_VERSION")/bin
        if [[ -x $dir/pg_ctl ]]; then echo "$dir"; return 0; fi
    fi
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n $dir && -x $dir/initdb && -x $dir/pg_ctl ]]; then echo "$dir"; return 0; fi
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(command -v pg_ctl)"
        return 0
    fi
    return 1
}

# initdb and postgres refuse to run as root: run them as the postgres user.
# The subshell cds into the data's parent so they do not complain about a
# working directory they cannot read.
as_pg() {
    if is_root; then
        if command -v runuser >/dev/null; then
            (cd "$PG_DIR" && runuser -u postgres -- "$@")
        else
            (cd "$PG_DIR" && su postgres -s /bin/bash -c "$(printf '%q ' "$@")")
        fi
    else
        (cd "$PG_DIR" && "$@")
    fi
}

start_throwaway_pg() {
    local bindir port url
    if [[ -f $PG_DIR/port ]]; then
        url=postgres://postgres@127.0.0.1:$(cat "$PG_DIR/port")/$PG_DB
        if pg_ok "$url"; then
            log "PostgreSQL: reusing the throwaway server in .services/pg ($url)"
            PG_URL=$url
            return 0
        fi
    fi

    if ! bindir=$(pg_bindir); then
        apt_install postgresql
        bindir=$(pg_bindir) || die "PostgreSQL binaries still not found after installing"
    fi
    if is_root; then
        id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user to run the server as"
    fi

    mkdir -p "$PG_DIR" "$PG_SOCK"
    if is_root; then
        chown -R postgres: "$PG_DIR"
        # Every directory above .services/pg must be traversable by postgres.
        as_pg test -x "$PG_DIR" 2>/dev/null ||
            die "the postgres user cannot reach $PG_DIR (a parent directory is not world-searchable); move the checkout or provide DATABASE_URL"
    fi

    if [[ ! -f $PG_DATA/PG_VERSION ]]; then
        log "PostgreSQL: initdb into .services/pg/data ($bindir)"
        rm -rf "$PG_DATA"
        # Trust auth, superuser "postgres", C locale (containers often lack others),
        # no fsync (throwaway data).
        if ! as_pg "$bindir/initdb" -D "$PG_DATA" -U postgres -A trust -E UTF8 --locale=C -N \
            >"$PG_DIR/initdb.log" 2>&1; then
            cat "$PG_DIR/initdb.log" >&2
            die "initdb failed (log: .services/pg/initdb.log)"
        fi
        # Unix sockets stay inside .services (the default /var/run/postgresql may
        # not exist or not be writable). Socket paths are limited to ~107 bytes;
        # with a deeper checkout, fall back to TCP only.
        local sockdir=$PG_SOCK
        if ((${#PG_SOCK} > 90)); then sockdir=; fi
        cat >>"$PG_DATA/postgresql.conf" <<EOF

# --- added by scripts/ensure_services.sh: throwaway test server ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sockdir'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    fi

    # A server of ours may still be running but not answering (e.g. its port
    # file was lost): stop it before starting afresh.
    if as_pg "$bindir/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
        log "PostgreSQL: stopping the unresponsive throwaway server"
        as_pg "$bindir/pg_ctl" -D "$PG_DATA" -m fast -w stop >&2 || true
    fi

    port=$(free_port "$PG_FIRST_PORT")
    log "PostgreSQL: starting a throwaway server on 127.0.0.1:$port"
    if ! as_pg "$bindir/pg_ctl" -D "$PG_DATA" -l "$PG_DIR/postgres.log" -w -t 60 \
        -o "-p $port" start >&2; then
        tail -n 30 "$PG_DIR/postgres.log" >&2 || true
        die "could not start PostgreSQL (log: .services/pg/postgres.log)"
    fi
    echo "$port" >"$PG_DIR/port"

    url=postgres://postgres@127.0.0.1:$port/$PG_DB
    pg_ok "$url" || die "throwaway PostgreSQL started but does not accept connections ($url)"
    PG_URL=$url
}

# ---------------------------------------------------------------------------
# c) throwaway Redis under .services/redis
# ---------------------------------------------------------------------------

REDIS_DIR=$SERVICES/redis

start_throwaway_redis() {
    local port url pid i
    if [[ -f $REDIS_DIR/port ]]; then
        url=redis://127.0.0.1:$(cat "$REDIS_DIR/port")/15
        if redis_ok "$url"; then
            log "Redis: reusing the throwaway server in .services/redis ($url)"
            REDIS_URL_OUT=$url
            return 0
        fi
    fi

    if ! command -v redis-server >/dev/null; then
        apt_install redis-server
        command -v redis-server >/dev/null || die "redis-server still not found after installing"
    fi
    mkdir -p "$REDIS_DIR"

    # Ours but not answering: stop it (by its pid) before starting afresh.
    if [[ -f $REDIS_DIR/redis.pid ]]; then
        pid=$(cat "$REDIS_DIR/redis.pid")
        if kill -0 "$pid" 2>/dev/null; then
            log "Redis: stopping the unresponsive throwaway server (pid $pid)"
            kill "$pid" || true
            sleep 1
        fi
        rm -f "$REDIS_DIR/redis.pid"
    fi

    port=$(free_port "$REDIS_FIRST_PORT")
    log "Redis: starting a throwaway server on 127.0.0.1:$port"
    # No persistence at all: it is a throwaway.
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
        --daemonize yes --dir "$REDIS_DIR" \
        --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log" >&2
    echo "$port" >"$REDIS_DIR/port"

    url=redis://127.0.0.1:$port/15
    for ((i = 0; i < 50; i++)); do
        if redis_ok "$url"; then
            REDIS_URL_OUT=$url
            return 0
        fi
        sleep 0.2
    done
    tail -n 30 "$REDIS_DIR/redis.log" >&2 || true
    die "could not start Redis (log: .services/redis/redis.log)"
}

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

PG_URL=
REDIS_URL_OUT=
skip_system=${FLOWOPS_SKIP_SYSTEM_SERVICES:-0}

# PostgreSQL
if [[ -n ${DATABASE_URL:-} ]]; then
    if pg_ok "$DATABASE_URL"; then
        log "PostgreSQL: using DATABASE_URL from the environment ($(redact "$DATABASE_URL"))"
        PG_URL=$DATABASE_URL
    else
        log "PostgreSQL: DATABASE_URL from the environment does not answer ($(redact "$DATABASE_URL")), looking elsewhere"
    fi
fi
if [[ -z $PG_URL && $skip_system != 1 ]]; then
    if pg_ok "$PG_DEFAULT_URL"; then
        log "PostgreSQL: using the local server ($PG_DEFAULT_URL)"
        PG_URL=$PG_DEFAULT_URL
    else
        log "PostgreSQL: nothing usable at 127.0.0.1:5432"
    fi
fi
if [[ -z $PG_URL ]]; then
    start_throwaway_pg
fi

# Redis
if [[ -n ${REDIS_URL:-} ]]; then
    if redis_ok "$REDIS_URL"; then
        log "Redis: using REDIS_URL from the environment ($(redact "$REDIS_URL"))"
        REDIS_URL_OUT=$REDIS_URL
    else
        log "Redis: REDIS_URL from the environment does not answer ($(redact "$REDIS_URL")), looking elsewhere"
    fi
fi
if [[ -z $REDIS_URL_OUT && $skip_system != 1 ]]; then
    if redis_ok "$REDIS_DEFAULT_URL"; then
        log "Redis: using the local server ($REDIS_DEFAULT_URL)"
        REDIS_URL_OUT=$REDIS_DEFAULT_URL
    else
        log "Redis: nothing usable at 127.0.0.1:6379"
    fi
fi
if [[ -z $REDIS_URL_OUT ]]; then
    start_throwaway_redis
fi

echo "export DATABASE_URL=$(shquote "$PG_URL")"
echo "export REDIS_URL=$(shquote "$REDIS_URL_OUT")"
