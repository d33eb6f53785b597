#!/usr/bin/env bash
# BENCHMARKS.md's comparison: the reference server and `run --app bench`,
# each measured right after the other in one run, with every gwbench mode.
# Usage: cmd/gwbench/compare.sh BINDIR   (BINDIR holds gatewayworker and gwbench)
set -euo pipefail
bin=${1:?usage: cmd/gwbench/compare.sh BINDIR}
"$bin/gwbench" refserver --addr 127.0.0.1:7300 > /dev/null 2>&1 &
ref=$!
"$bin/gatewayworker" run --app bench --nats-port 0 --ws 127.0.0.1:7272 --tcp "" --http "" --log-level warn > /dev/null 2>&1 &
gw=$!
trap 'kill $ref $gw 2>/dev/null || true; wait 2>/dev/null || true' EXIT
sleep 2
if ! kill -0 "$ref" 2>/dev/null || ! kill -0 "$gw" 2>/dev/null; then
  echo "a server did not start: is 127.0.0.1:7300 or :7272 taken?" >&2
  exit 1
fi
echo "## idle RSS: ref $(grep VmRSS /proc/$ref/status)  gatewayworker $(grep VmRSS /proc/$gw/status)"
for mode in conns echo fanout ceiling group; do
  for target in "7300 $ref reference" "7272 $gw gatewayworker"; do
    set -- $target
    case $mode in
      conns)  args="conns -n 5000 --hold 3s --server-pid $2";;
      echo)   args="echo -c 100 --duration 5s";;
      fanout) args="fanout -n 1000 --rate 100 --duration 5s --drain 5s";;
      # the broadcast ceiling: 300,000 deliveries/s
      ceiling) args="fanout -n 1000 --rate 300 --duration 5s --drain 5s";;
      group)  args="group --groups 100 --members 10 --rate 2000 --duration 5s";;
    esac
    echo "## $mode, $3: gwbench $args --url ws://127.0.0.1:$1/"
    "$bin/gwbench" $args --url "ws://127.0.0.1:$1/" 2>&1 |
      grep -E "^(echo|deliveries|send->receive|round trip|loss|server RSS|sample echo|result)" || true
  done
done
