#!/usr/bin/env bash
# `make up`: a local Kafka broker, the contract topics, the services, sample events and the
# simulated cluster (unless MEDIACDR_SIMULATE=0).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
mkdir -p var
export MEDIACDR_KAFKA_BOOTSTRAP="${MEDIACDR_KAFKA_BOOTSTRAP:-127.0.0.1:9092}"
export MEDIACDR_DATABASE_URL="${MEDIACDR_DATABASE_URL:-sqlite:///var/mediacdr.db}"

echo "==> Kafka (single-node KRaft, var/kafka)"
$BIN/mediacdr kafka start
echo "==> topics"
$BIN/mediacdr topics create

start_service() {  # name, then the command
  local name=$1; shift
  local pidfile="var/$name.pid"
  if [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "    $name already running (pid $(cat "$pidfile"))"
    return
  fi
  setsid "$@" >"var/$name.log" 2>&1 < /dev/null &
  echo $! >"$pidfile"
  echo "    $name started (pid $!, log var/$name.log)"
}

echo "==> SQL schema ($MEDIACDR_DATABASE_URL)"
$BIN/mediacdr migrate

echo "==> services"
start_service detector $BIN/mediacdr detector --loglevel INFO
start_service projector $BIN/mediacdr projector
start_service webhooks $BIN/mediacdr webhooks
start_service api $BIN/mediacdr api

START=$(date +%s%3N)
echo "==> sample events"
$BIN/mediacdr samples

echo "==> waiting for the crash of media_sample-crash (grace 3 s) and the dead letters"
$BIN/mediacdr wait-for mediacdr.cdr --event sessionDestroyed --since "$START" --timeout 120
$BIN/mediacdr wait-for mediacdr.notifications --count 2 --since "$START" --timeout 30
$BIN/mediacdr wait-for mediacdr.deadletter --count 3 --since "$START" --timeout 60
echo "==> the CDR (mediacdr.cdr): copies, then nodeCrashed and its cascade"
$BIN/mediacdr tail mediacdr.cdr --brief
echo "==> node facts (mediacdr.nodes): the blip is only here"
$BIN/mediacdr tail mediacdr.nodes --brief
echo "==> client notices (mediacdr.notifications)"
$BIN/mediacdr tail mediacdr.notifications --brief
echo "==> SQL (docs/SQL.md): the impact of each crash, once the projector has caught up"
$BIN/mediacdr sql --wait-for-projector "
  SELECT incident_id, outcome, sessions_closed, participants_evicted, recordings_stopped
  FROM node_incidents ORDER BY disconnected_at"

SIMULATOR_LINE="  simulator   off (MEDIACDR_SIMULATE=0)"
if [[ ${MEDIACDR_SIMULATE:-1} != 0 ]]; then
  echo "==> the simulated cluster (docs/SIMULATOR.md): 6 nodes, a session every 2 s, faults"
  start_service simulator $BIN/mediacdr simulate --mode realtime --duration 0 --nodes 6 \
    --session-rate 0.5 --faults default --seed 1
  SIMULATOR_LINE="  simulator   media_sim-1…6, sessions and faults in real time; log: var/simulator.log"
fi

cat <<TXT

mediacdr is up.
  dashboard   http://${MEDIACDR_API_ADDR:-127.0.0.1:8080}/   (API docs at /docs, log var/api.log)
  broker      $MEDIACDR_KAFKA_BOOTSTRAP
  detector    log: var/detector.log
  projector   log: var/projector.log, SQL in $MEDIACDR_DATABASE_URL (docs/SQL.md)
  webhooks    log: var/webhooks.log; subscribe with: .venv/bin/mediacdr webhooks add URL
$SIMULATOR_LINE
Look at:
  .venv/bin/mediacdr tail mediacdr.cdr          # CDR records with their ce_* headers
  .venv/bin/mediacdr tail mediacdr.nodes        # incidents: the blip and the crash
  .venv/bin/mediacdr tail mediacdr.deadletter   # rejected input with its error header
Stop everything with: make down
TXT
