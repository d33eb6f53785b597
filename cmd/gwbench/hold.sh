#!/usr/bin/env bash
# BENCHMARKS.md's "connections held on one box": N idle WebSocket connections
# spread over G gateway processes (each process may hold only 20,000 open
# files here), one NATS + worker process, and one gwbench per gateway, all
# holding at the same time; then every connection answers one echo.
# Usage: cmd/gwbench/hold.sh BINDIR [TOTAL] [GATEWAYS]   (default 100000 over 6)
set -euo pipefail
bin=${1:?usage: cmd/gwbench/hold.sh BINDIR [TOTAL] [GATEWAYS]}
total=${2:-100000}
gateways=${3:-6}
per=$(( (total + gateways - 1) / gateways ))
nats_port=${NATS_PORT:-4390}
pids=()
trap 'kill ${pids[@]} 2>/dev/null || true; wait 2>/dev/null || true' EXIT

# NATS and the bench worker (run needs a listener of its own: it holds nothing).
"$bin/gatewayworker" run --app bench --nats-port "$nats_port" --ws 127.0.0.1:7400 --tcp "" --http "" --log-level warn &
pids+=($!)
sleep 2
for i in $(seq 1 "$gateways"); do
  "$bin/gatewayworker" gateway --id "hold$i" --nats "nats://127.0.0.1:$nats_port" \
    --ws "127.0.0.1:$((7400 + i))" --tcp "" --max-conns $((per + 100)) --log-level "${GW_LOG_LEVEL:-warn}" 2>>"${GW_LOG:-/dev/stderr}" &
  pids+=($!)
done
sleep 2
gwpids=("${pids[@]:1}")
out=$(mktemp -d)
# Every gwbench dials, then holds long enough for the others to finish
# dialling (about 10 s per 20,000 connections on this machine), so that all
# connections are open together when each reads its gateway's RSS.
hold=$(( 10 + total / 4000 ))s
for i in $(seq 1 "$gateways"); do
  "$bin/gwbench" conns -n "$per" --hold "$hold" --sample -1 --server-pid "${gwpids[$((i - 1))]}" \
    --sources 8 --source-base "127.0.$((10 + i)).1" --url "ws://127.0.0.1:$((7400 + i))/" > "$out/$i" 2>&1 &
done
fail=0
wait_gwbench() { for j in $(jobs -p); do case " ${pids[*]} " in *" $j "*) ;; *) wait "$j" || fail=1;; esac; done; }
wait_gwbench
for i in $(seq 1 "$gateways"); do
  echo "## gateway $i (ws://127.0.0.1:$((7400 + i))/):"
  grep -vE "level=|^$" "$out/$i" || true
done
# The run fails (exit 1) unless every connection opened, none was closed
# during the hold, and every one answered its echo.
read -r opened lost answered <<<"$(grep -hoE "connections: [0-9]+ of [0-9]+ opened, [0-9]+ failed, [0-9]+ lost" "$out"/* |
  awk '{o+=$2; l+=$8} END {printf "%d %d ", o, l}'; grep -hoE "sample echo: [0-9]+ of [0-9]+ ok" "$out"/* | awk '{ok+=$3} END {print ok+0}')"
want=$((per * gateways))
echo "## total: $want connections over $gateways gateway processes: $opened opened, $lost closed during the hold, $answered of $want answered an echo"
rm -rf "$out"
if [ "$opened" -ne "$want" ] || [ "$lost" -ne 0 ] || [ "$answered" -ne "$want" ]; then fail=1; fi
[ "$fail" -eq 0 ] && echo "## PASS" || echo "## FAIL"
exit "$fail"
