#!/usr/bin/env bash
# The production shape against the reference, in one run: a NATS process
# (`gatewayworker nats`), one `gatewayworker gateway` and one `gatewayworker
# worker --app bench`, each its own OS process, against `gwbench refserver`,
# with the same gwbench load, ROUNDS rounds in alternating order (odd rounds
# reference first, even rounds ours first), fresh servers for every run.
# Reports, per run and as ratios (us / reference) per round: the rate, p99,
# and the CPU microseconds per round trip or delivery of every process
# (utime+stime from /proc/PID/stat over the load run).
# Usage: cmd/gwbench/prod.sh BINDIR [SHAPE...]   SHAPE: echo (default), broadcast, group, rooms
#   echo: 100 connections x 64 B, closed loop
#   broadcast: 1,000 receivers x 100 broadcasts/s;  group: 100 groups x 10 at 2,000/s
#   rooms: 5,000 groups x 2 at 2,000/s (10,000 connections, a group subscription per 2)
# Every run also prints each process's peak RSS (VmHWM).
# BINDIR holds gatewayworker and gwbench. ROUNDS (default 2), DURATION (default
# 10s), PROD_PORT (default 7390: the reference and the gateway listen on it in
# turn, NATS on +1; PROFILE=DIR also serves the gateway's /metrics and pprof on
# +2, the worker's on +3, and saves a CPU profile of each for DURATION per
# production run in DIR).
# SYSCALLS=1 also counts each process's system calls and context switches per round trip or delivery
# (perf stat on the syscalls tracepoints: root or perf_event_paranoid <= 1).
# BASE=DIR adds a third contender, "baseline": the production shape from
# DIR/gatewayworker (an A/B of two builds in the same alternating run).
# A run whose p99 passes BEHIND_MS (100) is marked: the machine was overloaded, and
# messages written several per write make its CPU per unit look cheap.
# PROD_FLAGS adds flags to the production gateway only (PROD_FLAGS="--write-delay 20ms"
# BASE=bin compares a gateway setting against the same build without it).
# PHP_GW=DIR adds "php": PHP GatewayWorker itself (php/bench/gatewayworker/start.php:
# Register, one Gateway process, 2 BusinessWorker processes, the bench protocol in
# Events.php), what the production shape replaces; DIR holds its libraries (see
# start.php), php-cli must be installed; its CPU is all its processes' (the
# master's included), "gateway" its Gateway process. Ports: PROD_PORT+4 (Register)
# and from PROD_PORT+10 (the Gateway's internal ports).
# PROD_GOMAXPROCS=N runs the three production processes with GOMAXPROCS=N,
# BASE_GOMAXPROCS the baseline's (the reference and gwbench keep Go's
# default): BASE=BINDIR BASE_GOMAXPROCS=1 compares GOMAXPROCS settings. Exits 1 when a run FAILED.
set -euo pipefail
bin=${1:?usage: cmd/gwbench/prod.sh BINDIR [echo|broadcast|group|rooms ...]}
here=$(cd "$(dirname "$0")" && pwd)
if [ -n "${PHP_GW:-}" ]; then
  if ! command -v php >/dev/null; then
    echo "prod.sh: PHP_GW needs php-cli (apt-get install php-cli)" >&2
    exit 2
  fi
  if [ ! -f "$PHP_GW/vendor/autoload.php" ] && { [ ! -f "$PHP_GW/workerman/Worker.php" ] || [ ! -d "$PHP_GW/gateway-worker/src" ]; }; then
    echo "prod.sh: PHP_GW=$PHP_GW holds neither vendor/autoload.php nor workerman/ (v4) and gateway-worker/ checkouts (php/bench/gatewayworker/start.php)" >&2
    exit 2
  fi
fi
shift
shapes=${*:-echo}
rounds=${ROUNDS:-2}
dur=${DURATION:-10s}
port=${PROD_PORT:-7390}
nats_port=$((port + 1))
metrics_port=$((port + 2))
worker_metrics_port=$((port + 3))
profile=${PROFILE:-}
hz=$(getconf CLK_TCK)
token=prodbench-$$-$RANDOM
pids=()
master=""
trap '[ -n "$master" ] && kill -INT "$master" 2>/dev/null; kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
calls="write read writev epoll_wait epoll_pwait futex nanosleep sched_yield"
events=$(for c in $calls; do printf 'syscalls:sys_enter_%s,' "$c"; done)context-switches

up() { # wait until addr accepts connections, or fail
  for _ in $(seq 50); do
    "$bin/gatewayworker" health --addr "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "prod.sh: nothing listens on $1 (is the port taken? PROD_PORT)" >&2
  exit 1
}

start() { # start the servers of $1; sets names and pids
  names=() pids=() master=""
  if [ "$1" = reference ]; then
    "$bin/gwbench" refserver --addr "127.0.0.1:$port" >/dev/null 2>&1 &
    names=(reference) pids=($!)
  elif [ "$1" = php ]; then
    PHP_GW=$PHP_GW WS_ADDR="127.0.0.1:$port" REGISTER_PORT=$((port + 4)) START_PORT=$((port + 10)) \
      php "$here/../../php/bench/gatewayworker/start.php" start >/dev/null 2>&1 &
    master=$!
    up "127.0.0.1:$port"
    sleep 1 # the BusinessWorkers find the Gateway through the Register
    names=(master) pids=("$master")
    local p title
    for p in $(pgrep -P "$master"); do
      title=$(tr '\0' ' ' <"/proc/$p/cmdline")
      case $title in
        *BenchGateway*) names+=(gateway);;
        *BenchBusinessWorker*) names+=(worker);;
        *) names+=(register);;
      esac
      pids+=("$p")
    done
    return
  else
    local gw=$bin/gatewayworker procs=${PROD_GOMAXPROCS:+GOMAXPROCS=$PROD_GOMAXPROCS} nats="nats://127.0.0.1:$nats_port" common=(--nats-token "$token" --log-level warn)
    if [ "$1" = baseline ]; then
      gw=$BASE/gatewayworker
      procs=${BASE_GOMAXPROCS:+GOMAXPROCS=$BASE_GOMAXPROCS}
    fi
    env $procs "$gw" nats --nats-port "$nats_port" "${common[@]}" >/dev/null 2>&1 &
    pids=($!)
    up "127.0.0.1:$nats_port"
    local metrics=() worker_metrics=()
    [ -n "$profile" ] && metrics=(--metrics "127.0.0.1:$metrics_port") worker_metrics=(--metrics "127.0.0.1:$worker_metrics_port")
    local extra=()
    [ "$1" = production ] && read -ra extra <<<"${PROD_FLAGS:-}"
    env $procs "$gw" gateway --nats "$nats" "${common[@]}" --ws "127.0.0.1:$port" --tcp "" "${metrics[@]}" "${extra[@]}" >/dev/null 2>&1 &
    pids+=($!)
    env $procs "$gw" worker --app bench --nats "$nats" "${common[@]}" "${worker_metrics[@]}" >/dev/null 2>&1 &
    pids+=($!)
    names=(nats gateway worker)
    sleep 1 # the worker subscribes and announces itself
  fi
  up "127.0.0.1:$port"
}

declare -A rate p99 cpu
failed=0
for round in $(seq 1 "$rounds"); do
  for shape in $shapes; do
    case $shape in
      echo) args="echo -c 100 --size 64 --duration $dur"; unit="round trip" units=round-trips;;
      broadcast) args="fanout -n 1000 --rate 100 --duration $dur --drain 5s"; unit=delivery units=deliveries;;
      group) args="group --groups 100 --members 10 --rate 2000 --duration $dur"; unit=delivery units=deliveries;;
      rooms) args="group --groups 5000 --members 2 --rate 2000 --duration $dur"; unit=delivery units=deliveries;;
      *) echo "prod.sh: unknown shape $shape (echo, broadcast, group, rooms)" >&2; exit 2;;
    esac
    order="reference production${BASE:+ baseline}${PHP_GW:+ php}"
    [ $((round % 2)) = 0 ] && order="${PHP_GW:+php }${BASE:+baseline }production reference"
    for who in $order; do
      start "$who"
      before=() curls=()
      for p in "${pids[@]}"; do before+=("$(ticks "$p")"); done
      perfs=()
      if [ "${SYSCALLS:-}" = 1 ]; then
        for i in "${!pids[@]}"; do
          perf stat -x, -e "$events" -p "${pids[i]}" -o "/tmp/prodsh-$$-$i.perf" 2>/dev/null &
          perfs+=($!)
        done
      fi
      if [ -n "$profile" ] && [ "$who" != reference ]; then
        mkdir -p "$profile"
        for tier in gateway:$metrics_port worker:$worker_metrics_port; do
          curl -s -o "$profile/${tier%%:*}-$who-$shape-$round.pprof" \
            "http://127.0.0.1:${tier#*:}/debug/pprof/profile?seconds=${dur%s}" &
          curls+=($!)
        done
      fi
      json=$("$bin/gwbench" $args --json --url "ws://127.0.0.1:$port/" 2>/dev/null) || failed=1
      after=() peak=""
      for p in "${pids[@]}"; do after+=("$(ticks "$p")"); done
      for i in "${!pids[@]}"; do
        peak+=" ${names[i]} $(awk '/^VmHWM/ {printf "%.1f", $2/1024}' "/proc/${pids[i]}/status")"
      done
      [ ${#curls[@]} -gt 0 ] && { wait "${curls[@]}" || true; }
      if [ ${#perfs[@]} -gt 0 ]; then
        kill -INT "${perfs[@]}" 2>/dev/null || true
        wait "${perfs[@]}" 2>/dev/null || true
      fi
      if [ "$(jq -r .ok <<<"$json")" != true ]; then
        failed=1
        echo "round $round $shape $who: FAILED: $(jq -c .failures <<<"$json")"
      fi
      if [ "$shape" = echo ]; then
        n=$(jq .echo.round_trips <<<"$json") r=$(jq .echo.round_trips_per_second <<<"$json") q=$(jq .echo.latency.p99_ms <<<"$json")
      else
        n=$(jq .delivery.delivered <<<"$json") r=$(jq .delivery.deliveries_per_second <<<"$json") q=$(jq .delivery.latency.p99_ms <<<"$json")
      fi
      line="" total=0
      for i in "${!pids[@]}"; do
        us=$(awk -v t=$((after[i] - before[i])) -v hz="$hz" -v n="$n" 'BEGIN{printf "%.1f", n ? t*1e6/hz/n : 0}')
        line+=" ${names[i]} $us"
        total=$(awk -v a="$total" -v b="$us" 'BEGIN{print a+b}')
        cpu[$round,$shape,$who,${names[i]}]=$us
      done
      for i in "${!perfs[@]}"; do
        echo "  ${names[i]} system calls and context switches per $unit: $(awk -F, -v n="$n" '$1+0 > 0 {
          sub(/.*sys_enter_/, "", $3); printf "%s %.2f  ", $3, $1/n }' "/tmp/prodsh-$$-$i.perf")"
        rm -f "/tmp/prodsh-$$-$i.perf"
      done
      rate[$round,$shape,$who]=$r p99[$round,$shape,$who]=$q cpu[$round,$shape,$who]=$total
      # A server that fell behind writes several pushes per socket write: cheaper
      # per delivery, so its CPU figure says nothing about keeping up.
      behind=$(awk -v q="$q" -v lim="${BEHIND_MS:-100}" 'BEGIN{if (q > lim) print "  [p99 over " lim " ms: overloaded, CPU per unit not comparable]"}')
      printf 'round %s %-9s %-10s %9.0f %s/s  p99 %7.3f ms  CPU us per %s:%s (total %s)%s\n' \
        "$round" "$shape" "$who" "$r" "$units" "$q" "$unit" "$line" "$total" "$behind"
      echo "  peak RSS MiB:$peak"
      if [ -n "$master" ]; then
        # workerman's master forks a killed child again: it stops them all itself
        kill -INT "$master" 2>/dev/null || true
        wait "$master" 2>/dev/null || true
      else
        kill "${pids[@]}" 2>/dev/null || true
        wait "${pids[@]}" 2>/dev/null || true
      fi
    done
  done
done
ratio() { # ROUND SHAPE LABEL A B: A's rate, p99 and CPU per unit over B's
  awk -v r="$1" -v s="$2" -v label="$3" \
    -v ra="${rate[$1,$2,$4]}" -v rb="${rate[$1,$2,$5]}" \
    -v qa="${p99[$1,$2,$4]}" -v qb="${p99[$1,$2,$5]}" \
    -v ca="${cpu[$1,$2,$4]}" -v cb="${cpu[$1,$2,$5]}" \
    -v ga="${cpu[$1,$2,$4,gateway]}" -v gb="${cpu[$1,$2,$5,gateway]:-${cpu[$1,$2,$5]}}" \
    'function d(x, y) { return y ? x / y : 0 }
    BEGIN{printf "round %s %-9s %srate %.2fx  p99 %.2fx  CPU per unit: all processes %.2fx, gateway alone %.2fx\n", r, s, label, d(ra, rb), d(qa, qb), d(ca, cb), d(ga, gb)}'
}
echo "## ratios, production shape / reference (same round)${BASE:+, and production / baseline}${PHP_GW:+, and production / php (PHP GatewayWorker)}"
for round in $(seq 1 "$rounds"); do
  for shape in $shapes; do
    ratio "$round" "$shape" "" production reference
    [ -n "${BASE:-}" ] && ratio "$round" "$shape" "production / baseline: " production baseline
    [ -n "${PHP_GW:-}" ] && ratio "$round" "$shape" "production / php: " production php
  done
done
if [ "$failed" = 1 ]; then
  echo "prod.sh: a run FAILED (see above)" >&2
  exit 1
fi
