#!/usr/bin/env bash
# Make sure PostgreSQL server binaries (initdb, pg_ctl) exist, installing them with apt when not.
#
# Why: the tests start a throwaway cluster (services/localdev/postgres.py) and need the server
# binaries, not a running server. Debian keeps them in /usr/lib/postgresql/<version>/bin, off PATH.
# Idempotent and silent when they are already there; meant for CI, where we are root.
set -euo pipefail

have_server_binaries() {
    local bindir
    for bindir in /usr/lib/postgresql/*/bin; do
        [[ -x "$bindir/initdb" && -x "$bindir/pg_ctl" ]] && return 0
    done
    return 1
}

if have_server_binaries; then
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo -- "$0" "$@"
    fi
    echo "ensure-postgres: PostgreSQL is missing and installing it needs root (no sudo found)" >&2
    exit 1
fi

echo "ensure-postgres: installing PostgreSQL server binaries with apt-get" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null

if ! have_server_binaries; then
    echo "ensure-postgres: apt-get finished but no initdb under /usr/lib/postgresql/*/bin" >&2
    exit 1
fi
