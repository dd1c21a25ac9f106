#!/usr/bin/env bash
# `make down`: stop what `make up` started, leaving no stray processes.
set -uo pipefail
cd "$(dirname "$0")/.."
for pidfile in var/*.pid; do
  [[ -e $pidfile ]] || continue
  [[ $pidfile == var/kafka.pid ]] && continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    echo "stopped $(basename "$pidfile" .pid)"
  fi
  rm -f "$pidfile"
done
if [[ -x .venv/bin/mediacdr ]]; then .venv/bin/mediacdr kafka stop; fi
