#!/usr/bin/env bash
# BENCHMARKS.md's GatewayClient push figures: one push from a fresh PHP
# process (php php/bench/push.php, RUNS times, against RUNS bare `php -r ''`,
# alternating), then the same push on a new connection inside one process
# (php/bench/push_loop.php, the PHP-FPM case).
# Usage: php/bench/push.sh BINDIR   (BINDIR holds gatewayworker: go build -o BINDIR ./cmd/gatewayworker)
# NATS_PORT (14222) and WS_PORT (17374) choose the ports; RUNS (200).
set -euo pipefail
bin=${1:?usage: php/bench/push.sh BINDIR}
here=$(cd "$(dirname "$0")" && pwd)
runs=${RUNS:-200}
port=${NATS_PORT:-14222}
"$bin/gatewayworker" run --app bench --nats-port "$port" --nats-token benchtok --ws 127.0.0.1:${WS_PORT:-17374} --tcp "" --http "" --log-level warn > /dev/null 2>&1 &
srv=$!
trap 'kill $srv 2>/dev/null || true; wait 2>/dev/null || true' EXIT
sleep 2
export NATS_URL=nats://127.0.0.1:$port NATS_TOKEN=benchtok RUNS=$runs
stats() { sort -n | awk '{a[NR]=$1; s+=$1} END {i=int(NR*0.99+0.999); printf "mean %.1f ms  p50 %.1f ms  p99 %.1f ms  (%d runs)\n", s/NR, a[int((NR+1)/2)], a[i], NR}'; }
push=$(mktemp) bare=$(mktemp)
for _ in $(seq "$runs"); do
  t0=$(date +%s%N); php "$here/push.php"; t1=$(date +%s%N); php -r ''; t2=$(date +%s%N)
  echo "scale=3; ($t1-$t0)/1000000" | bc >> "$push"
  echo "scale=3; ($t2-$t1)/1000000" | bc >> "$bare"
done
echo "## php php/bench/push.php (load $(cut -d' ' -f1-3 /proc/loadavg))"
echo "whole process, one sendToUid:  $(stats < "$push")"
echo "bare php -r '':                $(stats < "$bare")"
echo "## php php/bench/push_loop.php"
php "$here/push_loop.php"
rm -f "$push" "$bare"
