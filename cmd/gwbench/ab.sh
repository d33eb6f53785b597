#!/usr/bin/env bash
# A/B in one run: the reference server, then `run --app bench` from two
# builds (say, before and after a change), one after the other, ROUNDS
# times, with the same gwbench: echo and broadcast, and the server's CPU
# ticks during the echo. Compare within one run only.
# Usage: cmd/gwbench/ab.sh OLD_BINDIR NEW_BINDIR [ROUNDS]   (each holds gatewayworker; NEW_BINDIR also gwbench)
set -euo pipefail
old=${1:?usage: cmd/gwbench/ab.sh OLD_BINDIR NEW_BINDIR [ROUNDS]}
new=${2:?usage: cmd/gwbench/ab.sh OLD_BINDIR NEW_BINDIR [ROUNDS]}
rounds=${3:-2}
gwbench="$new/gwbench"
port=${AB_PORT:-7380}
for round in $(seq 1 "$rounds"); do
  for who in reference old new; do
    case $who in
      reference) "$gwbench" refserver --addr "127.0.0.1:$port" >/dev/null 2>&1 & ;;
      old) "$old/gatewayworker" run --app bench --nats-port 0 --ws "127.0.0.1:$port" --tcp "" --http "" --log-level warn >/dev/null 2>&1 & ;;
      new) "$new/gatewayworker" run --app bench --nats-port 0 --ws "127.0.0.1:$port" --tcp "" --http "" --log-level warn >/dev/null 2>&1 & ;;
    esac
    pid=$!
    sleep 2
    kill -0 "$pid" 2>/dev/null || { echo "$who did not start: is 127.0.0.1:$port taken?" >&2; exit 1; }
    before=$(awk '{print $14+$15}' "/proc/$pid/stat")
    echo "## round $round, $who: gwbench echo -c 100 --duration 5s"
    "$gwbench" echo -c 100 --duration 5s --url "ws://127.0.0.1:$port/" 2>&1 | grep -E "^(echo|round trip|result)" || true
    echo "server CPU ticks during the echo: $(( $(awk '{print $14+$15}' "/proc/$pid/stat") - before ))"
    echo "## round $round, $who: gwbench fanout -n 1000 --rate 100 --duration 5s --drain 5s"
    "$gwbench" fanout -n 1000 --rate 100 --duration 5s --drain 5s --url "ws://127.0.0.1:$port/" 2>&1 | grep -E "^(deliveries|send->receive|loss|result)" || true
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
