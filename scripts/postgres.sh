#!/usr/bin/env bash
# A private PostgreSQL server for the tests and benchmarks (CL-5):
#
#   scripts/postgres.sh start DIR   installs Debian's postgresql when it is
#                                   missing, creates a cluster in DIR (initdb,
#                                   as the unprivileged user `postgres`),
#                                   starts it on a free loopback port and
#                                   prints the URL of its `postgres` database
#   scripts/postgres.sh stop DIR    stops it (DIR may then be removed)
#   scripts/postgres.sh resume DIR  starts a stopped one again on its port
#
# Nothing depends on a server the machine happened to run: the cluster has
# its own data directory, socket directory and port, and trusts only
# connections from loopback.
set -euo pipefail

verb="${1:-}"
dir="${2:-}"
if [[ -z "$verb" || -z "$dir" ]]; then
    echo "usage: $0 start|stop|resume DIR" >&2
    exit 2
fi

bindir() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

as_postgres() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

run_server() {
    # Up to 300 connections: the suite runs four tests at once, each with
    # its own database and pools, and the browser tests start nodes too.
    as_postgres "$1/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >&2 || {
        cat "$dir/server.log" >&2
        exit 1
    }
}

case "$verb" in
start)
    if [[ -z "$(bindir)" || ! -x "$(bindir)/initdb" ]]; then
        echo "postgres.sh: installing postgresql (apt)" >&2
        if [[ $(id -u) -eq 0 ]]; then as_root=(); else as_root=(sudo); fi
        "${as_root[@]}" apt-get update >&2
        # The package starts a cluster of its own where it can; ours is
        # separate, so that one does not matter.
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y \
            postgresql postgresql-contrib >&2
    fi
    bin="$(bindir)"
    mkdir -p "$dir"
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir "$dir" postgres
        chown postgres "$dir"
        chmod 700 "$dir"
        # The server's user must reach DIR through its parents (mktemp
        # makes them 0700).
        parent="$(dirname "$(realpath "$dir")")"
        while [[ "$parent" != / ]]; do
            chmod o+x "$parent"
            parent="$(dirname "$parent")"
        done
    fi
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    as_postgres "$bin/initdb" -D "$dir/data" -U pg -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        exit 1
    }
    # The administrator `pg` is trusted on loopback; every other role signs
    # in with its password (the tests check a wrong one is named as such).
    cat >"$dir/data/pg_hba.conf" <<HBA
local all pg trust
host  all pg 127.0.0.1/32 trust
host  all all 127.0.0.1/32 scram-sha-256
HBA
    echo "$port" >"$dir/port"
    run_server "$bin"
    echo "postgres://pg@127.0.0.1:$port/postgres"
    ;;
resume)
    # Starts a stopped cluster again on its port (the restart tests).
    port="$(cat "$dir/port")"
    run_server "$(bindir)"
    ;;
stop)
    bin="$(bindir)"
    if [[ -n "$bin" && -f "$dir/data/postmaster.pid" ]]; then
        as_postgres "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    fi
    ;;
*)
    echo "usage: $0 start|stop|resume DIR" >&2
    exit 2
    ;;
esac
