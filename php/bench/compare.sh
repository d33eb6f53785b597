#!/usr/bin/env bash
# BENCHMARKS.md's PHP echo rows: gwbench echo through one gateway and one
# nats-server, with the Go bench worker and with 2 PHP BusinessWorker
# processes (php/bench/echo.php) in turn, each also sticky, ROUNDS times, in one run.
# Usage: php/bench/compare.sh BINDIR   (BINDIR holds gatewayworker, gwbench and nats-server:
#   go build -o BINDIR ./cmd/gatewayworker ./cmd/gwbench github.com/nats-io/nats-server/v2)
# NATS_PORT (14444) and WS_PORT (17373) choose the ports; CONNS (50), DURATION (5s), ROUNDS (2).
set -euo pipefail
bin=${1:?usage: php/bench/compare.sh BINDIR}
here=$(cd "$(dirname "$0")" && pwd)
nats_port=${NATS_PORT:-14444}
ws_port=${WS_PORT:-17373}
nats=nats://127.0.0.1:$nats_port
"$bin/nats-server" -a 127.0.0.1 -p "$nats_port" > /dev/null 2>&1 &
ns=$!
sleep 0.5
"$bin/gatewayworker" gateway --nats "$nats" --ws 127.0.0.1:$ws_port --tcp "" --log-level warn > /dev/null 2>&1 &
gw=$!
wk=
trap 'kill $ns $gw $wk 2>/dev/null || true; wait 2>/dev/null || true' EXIT
sleep 1
for round in $(seq "${ROUNDS:-2}"); do
  for worker in go go-sticky php php-sticky; do
    case $worker in
      go)         "$bin/gatewayworker" worker --nats "$nats" --app bench --log-level warn > /dev/null 2>&1 & ;;
      go-sticky)  "$bin/gatewayworker" worker --nats "$nats" --app bench --sticky --log-level warn > /dev/null 2>&1 & ;;
      php)        NATS_URL=$nats WORKERS=2 STICKY= php "$here/echo.php" > /dev/null 2>&1 & ;;
      php-sticky) NATS_URL=$nats WORKERS=2 STICKY=1 php "$here/echo.php" > /dev/null 2>&1 & ;;
    esac
    wk=$!
    sleep 2
    echo "## round $round, $worker worker: gwbench echo -c ${CONNS:-50} --duration ${DURATION:-5s} --url ws://127.0.0.1:$ws_port/ (load $(cut -d' ' -f1-3 /proc/loadavg))"
    "$bin/gwbench" echo -c "${CONNS:-50}" --duration "${DURATION:-5s}" --url "ws://127.0.0.1:$ws_port/" 2>&1 |
      grep -E "^(echo|round trip|result)" || true
    kill -TERM $wk
    wait $wk 2>/dev/null || true
    wk=
  done
done
