#!/usr/bin/env bash
# BENCHMARKS.md's comparison: the reference server and `run --app bench`,
# each measured right after the other in one run, with every gwbench mode.
# Usage: cmd/gwbench/compare.sh BINDIR   (BINDIR holds gatewayworker and gwbench)
# REF_PORT (default 7300) and BENCH_PORT (default 7372, not the demo's 7272, so
# that a running demo does not clash) choose the ports. Exits 1 when any
# run of ours printed "result: FAILED" (the reference's failures are printed
# and counted, not fatal: at the broadcast ceiling it falls behind and closes
# connections on this box). Every load run also prints the server process's
# CPU time per round trip or delivery (utime+stime from /proc/PID/stat over
# the run; for us NATS, the gateway and the worker together, as in one process).
set -euo pipefail
bin=${1:?usage: cmd/gwbench/compare.sh BINDIR}
ref_port=${REF_PORT:-7300}
gw_port=${BENCH_PORT:-7372}
"$bin/gwbench" refserver --addr 127.0.0.1:$ref_port > /dev/null 2>&1 &
ref=$!
"$bin/gatewayworker" run --app bench --nats-port 0 --ws 127.0.0.1:$gw_port --tcp "" --http "" --log-level warn > /dev/null 2>&1 &
gw=$!
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
trap 'kill $ref $gw 2>/dev/null || true; wait 2>/dev/null || true' EXIT
sleep 2
if ! kill -0 "$ref" 2>/dev/null || ! kill -0 "$gw" 2>/dev/null; then
  echo "a server did not start: is 127.0.0.1:$ref_port or :$gw_port taken? (REF_PORT, BENCH_PORT)" >&2
  exit 1
fi
echo "## idle RSS: ref $(grep VmRSS /proc/$ref/status)  gatewayworker $(grep VmRSS /proc/$gw/status)"
failed=0 ref_failed=""
for mode in conns echo fanout ceiling group; do
  for target in "$ref_port $ref reference" "$gw_port $gw gatewayworker"; do
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
    before=$(ticks "$2")
    out=$("$bin/gwbench" $args --url "ws://127.0.0.1:$1/" 2>&1) || true
    spent=$(($(ticks "$2") - before))
    grep -E "^(echo|deliveries|send->receive|round trip|loss|server RSS|sample echo|result)" <<<"$out" || true
    if ! grep -q "^result: OK" <<<"$out"; then
      if [ "$3" = reference ]; then ref_failed+=" $mode"; else failed=1; fi
    fi
    # units: the round trips of echo, the deliveries of the others (conns has neither)
    awk -v t="$spent" -v hz="$hz" '
      /^echo:/ { for (i = 2; i <= NF; i++) if ($i == "round" && $(i+1) == "trips") { n = $(i-1); unit = "round trip" } }
      /^deliveries:/ { n = $2; unit = "delivery" }
      END { if (n > 0) printf "server CPU per %s: %.1f us\n", unit, t * 1e6 / hz / n }' <<<"$out"
  done
done
[ -n "$ref_failed" ] && echo "compare.sh: the reference FAILED in:$ref_failed (see above); not an error of ours"
if [ "$failed" = 1 ]; then
  echo "compare.sh: a run FAILED (see its result line above)" >&2
  exit 1
fi
