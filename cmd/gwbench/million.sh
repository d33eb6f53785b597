#!/usr/bin/env bash
# BENCHMARKS.md's "a million connections on one box": TOTAL idle WebSocket
# connections over GATEWAYS gateway processes (each may hold only 20,000
# open files here), one NATS server (`gatewayworker nats`), WORKERS bench
# workers, and gwbench, which splits itself into processes of under 20,000
# connections each over 64 127.x.y.z source addresses. All connections are
# held for HOLD, then one broadcast (the bench worker's SendToAll) must
# reach every one exactly once, then every connection answers an echo.
#
# Usage: cmd/gwbench/million.sh BINDIR [TOTAL] [GATEWAYS] [WORKERS]
#   defaults: 1000000, TOTAL/19000 rounded up, 4
# Environment: HOLD (60s), DRAIN (120s), PING_INTERVAL (300s: a ping round costs ~40 µs of CPU per
# client, gateway and client together, more at a million: 60 s kept 0.67 of this box's two cores busy,
# and a million idle connections kept the whole box 200 % busy at 120 s, 137-144 % at 300 s), GOGC_GATEWAY (20),
# BEAT_INTERVAL (10s: the gateways' --beat-interval; at 1s, gateways starved of CPU among a
# hundred processes on two cores saw their own beats come back after 2.5 s and closed their clients,
# and at 3s 2,698 clients were closed so during the broadcast),
# DIAL_RATE (700 new connections/s: each is an OnConnect through NATS to a worker; at 1,200, once gwbench
# ran at nice 0 and really dialled that fast, with a compile beside it, NATS backed up past 550,000
# connections until its clients' pings went unanswered, and gateways reconnected over and over),
# NICE_NATS (-10), NICE_WORKERS (-5), NICE_GWBENCH (0: at 10, gwbench got so little of a CPU that
# fifty-three busy gateways had pinged, that a broadcast the gateways wrote in 15 s was read over 10 minutes),
# MIN_AVAIL_GIB (6: abort when the machine has less available, i.e. above 18 of 24 GiB used),
# MAX_SECONDS (bound on the whole run; default 900 + TOTAL/300: the dial at DIAL_RATE, then up to
# 2 ms per echo), LOG (directory, kept).
#
# As root it raises what the kernel needs (conntrack table, local port range,
# listen backlogs, file-max) and restores every value at exit; otherwise it
# says what is missing. It prints, every 5 s and at the peak, the machine's
# budget: RSS per tier, TCP sockets and their kernel memory (/proc/net/sockstat),
# CPU per tier. Exit 0 only when every connection opened, none was closed,
# all got the broadcast once and all answered their echo.
set -euo pipefail
bin=${1:?usage: cmd/gwbench/million.sh BINDIR [TOTAL] [GATEWAYS] [WORKERS]}
total=${2:-1000000}
gateways=${3:-$(( (total + 18999) / 19000 ))}
workers=${4:-4}
hold=${HOLD:-60s}
dial_rate=${DIAL_RATE:-700}
drain=${DRAIN:-120s}
ping=${PING_INTERVAL:-300s}
beat=${BEAT_INTERVAL:-10s}
gogc=${GOGC_GATEWAY:-20}
min_avail_kb=$(( ${MIN_AVAIL_GIB:-6} * 1024 * 1024 ))
max_seconds=${MAX_SECONDS:-$(( 900 + total / 300 ))}
per=$(( (total + gateways - 1) / gateways ))
if [ "$per" -gt 19800 ]; then
  echo "million.sh: $per connections per gateway exceed 20,000 open files: use more gateways" >&2
  exit 2
fi
log=${LOG:-$(mktemp -d)}
mkdir -p "$log"

# --- kernel settings: raised where this user may, restored at exit ---
declare -A saved=()
raise() { # raise KEY VALUE [min|set]: min raises a single number only when lower
  local key=$1 want=$2 how=${3:-min} path=/proc/sys/${1//.//} cur
  cur=$(cat "$path" 2>/dev/null) || { echo "## kernel: $key not present, left alone"; return; }
  if [ "$how" = min ] && [ "$cur" -ge "$want" ]; then return; fi
  if echo "$want" > "$path" 2>/dev/null; then
    saved[$key]=$cur
    echo "## kernel: $key $cur -> $want (restored at exit)"
  else
    echo "## kernel: cannot set $key to $want (now $cur): an operator must (see docs/operations.md)"
  fi
}
restore() {
  local key
  for key in "${!saved[@]}"; do
    echo "${saved[$key]}" > "/proc/sys/${key//.//}" 2>/dev/null || echo "## kernel: could not restore $key to ${saved[$key]}"
  done
}
# Every connection is two sockets, two files and one conntrack entry here.
raise net.netfilter.nf_conntrack_max $(( total * 5 / 4 + 65536 ))
raise net.ipv4.ip_local_port_range "12000 65000" set # gateways listen below 12000
raise net.core.somaxconn 65535
raise net.ipv4.tcp_max_syn_backlog 65535
raise fs.file-max $(( total * 2 + 262144 ))
# The kernel's ceiling on all TCP buffers (pages), sized from RAM at boot: 575,778 (2.2 GiB) on
# 24 GiB. Each socket holds up to a page of it (forward allocation, a ping or pong in flight):
# ~0.4 page per socket measured, so the ceiling was reached near 800,000 connections (1.6 million
# sockets), where the kernel drops what arrives on any socket. Pressure from one page per socket
# of both ends, the ceiling at one and a half (12 GiB for a million).
read -r tcp_low tcp_pressure tcp_max < /proc/sys/net/ipv4/tcp_mem
if [ "$tcp_max" -lt $(( total * 3 )) ]; then
  raise net.ipv4.tcp_mem "$tcp_low $(( total * 2 > tcp_pressure ? total * 2 : tcp_pressure )) $(( total * 3 ))" set
fi
# Loopback packets wait in a per-CPU backlog of 1,000: ping rounds (and, before gateways turned
# TCP keepalive off, Go's 15 s probes on every socket) overflowed it, and lost packets aborted
# connections (ETIMEDOUT) and delayed gateways' beats past NATSLossTimeout.
raise net.core.netdev_max_backlog 65536

slab0=$(awk '/^Slab/ {print int($2 / 1024)}' /proc/meminfo) # MiB, before anything starts
softnet_drops() { local d=0 a b rest; while read -r a b rest; do d=$(( d + 16#$b )); done < /proc/net/softnet_stat; echo $d; }
drops0=$(softnet_drops)

# --- processes ---
rss() { local s=0 p; for p in "$@"; do s=$(( s + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0) )); done; echo $s; }
ticks() { local s=0 p; for p in "$@"; do s=$(( s + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0) )); done; echo $s; }
descendants() { local p; for p in "$@"; do echo "$p"; descendants $(cat /proc/"$p"/task/*/children 2>/dev/null); done; }
pids=()
cleanup() {
  trap - EXIT INT TERM
  set +e
  [ -n "${monitor:-}" ] && kill "$monitor" 2>/dev/null
  local all
  all=$(descendants "${pids[@]}")
  kill $all 2>/dev/null
  sleep 2
  kill -9 $all 2>/dev/null
  wait 2>/dev/null || true
  restore
  echo "## logs in $log"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_ports() { # free_ports FROM N: the first of N free consecutive ports, at random above FROM
  local p i
  while :; do
    p=$(( $1 + RANDOM % 2000 ))
    for (( i = 0; i < $2; i++ )); do ss -Htln "sport = :$(( p + i ))" | grep -q . && continue 2; done
    echo "$p"; return
  done
}
nats_port=$(free_ports 20000 1)
# NATS at nice -10 and the workers at -5 (as root): every beat and event goes through NATS, and
# a gateway whose own beats do not come back for 2.5 s closes its clients. Among a hundred
# busy processes on two cores, a NATS process of ordinary priority got too little CPU for that.
nice -n "${NICE_NATS:--10}" "$bin/gatewayworker" nats --nats-port "$nats_port" --log-level warn > "$log/nats.log" 2>&1 &
nats_pid=$!; pids+=("$nats_pid")
sleep 1
nats_url="nats://127.0.0.1:$nats_port"
worker_pids=()
for i in $(seq 1 "$workers"); do
  nice -n "${NICE_WORKERS:--5}" "$bin/gatewayworker" worker --app bench --nats "$nats_url" --log-level warn > "$log/worker$i.log" 2>&1 &
  worker_pids+=($!); pids+=($!)
done
gw_pids=() urls=() base=$(free_ports 8000 "$gateways")
for i in $(seq 1 "$gateways"); do
  port=$(( base + i - 1 ))
  GOMAXPROCS=1 "$bin/gatewayworker" gateway --id "m$i" --nats "$nats_url" --ws "127.0.0.1:$port" --tcp "" \
    --max-conns $(( per + 100 )) --ping-interval "$ping" --beat-interval "$beat" --gogc "$gogc" --log-level warn > "$log/gateway$i.log" 2>&1 &
  gw_pids+=($!); pids+=($!); urls+=("ws://127.0.0.1:$port/")
done
sleep 3
for p in "${pids[@]}"; do
  kill -0 "$p" 2>/dev/null || { echo "million.sh: a process did not start; logs in $log" >&2; exit 2; }
done

# --- the monitor: budget every 5 s, abort when memory runs low ---
monitor_loop() {
  local prev_g=0 prev_n=0 prev_w=0 prev_b=0 prev_m=0 t0 prev_t now dt g n w b m bench
  t0=$(date +%s%N) prev_t=$t0
  echo "t_s tcp_inuse tcp_mem_pages avail_mib slab_mib gw_rss_kib nats_rss_kib worker_rss_kib gwbench_rss_kib gw_cpu_pct nats_cpu_pct worker_cpu_pct gwbench_cpu_pct box_cpu_pct"
  while sleep 5; do
    bench=$(descendants "$gwbench_pid" | tr '\n' ' ')
    g=$(ticks "${gw_pids[@]}") n=$(ticks "$nats_pid") w=$(ticks "${worker_pids[@]}") b=$(ticks $bench)
    m=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat) # the whole machine's busy ticks
    now=$(date +%s%N) dt=$(( (now - prev_t) / 10000000 )) prev_t=$now # hundredths of a second, as ticks
    read -r inuse mem <<<"$(awk '/^TCP:/ {print $3, $NF}' /proc/net/sockstat)"
    read -r avail slab <<<"$(awk '/^MemAvailable/ {a = $2} /^Slab/ {s = $2} END {print a, s}' /proc/meminfo)"
    echo "$(( (now - t0) / 1000000000 )) $inuse $mem $(( avail / 1024 )) $(( slab / 1024 )) $(rss "${gw_pids[@]}") $(rss "$nats_pid") $(rss "${worker_pids[@]}") $(rss $bench)" \
      "$(( (g - prev_g) * 100 / dt )) $(( (n - prev_n) * 100 / dt )) $(( (w - prev_w) * 100 / dt )) $(( (b - prev_b) * 100 / dt )) $(( (m - prev_m) * 100 / dt ))"
    prev_g=$g prev_n=$n prev_w=$w prev_b=$b prev_m=$m
    if [ "$avail" -lt "$min_avail_kb" ]; then
      echo "ABORT: MemAvailable $(( avail / 1024 )) MiB is below $(( min_avail_kb / 1024 )) MiB: stopping gwbench"
      kill $bench 2>/dev/null
      return
    fi
  done
}

src_base="127.$(( 100 + RANDOM % 150 )).$(( RANDOM % 250 )).1"
url_list=$(IFS=,; echo "${urls[*]}")
srv_pids=$(IFS=,; echo "${gw_pids[*]}")
echo "## $total connections over $gateways gateways ($per each, ping every $ping, beat every $beat, --gogc $gogc), $workers bench workers, NATS on :$nats_port; hold $hold"
echo "## gwbench conns -n $total --dial-rate $dial_rate --hold $hold --broadcast --drain $drain --sample -1 --sources 64 --source-base $src_base --url ws://127.0.0.1:$base/...:$(( base + gateways - 1 ))/"
# Gateways and gwbench's processes run on one P each (GOMAXPROCS=1): a hundred
# processes of two Ps on two cores spend their time spinning for work.
GOMAXPROCS=1 nice -n "${NICE_GWBENCH:-0}" timeout --kill-after=30 "$max_seconds" "$bin/gwbench" conns -n "$total" --hold "$hold" --broadcast --drain "$drain" \
  --sample -1 --sources 64 --source-base "$src_base" --dial-parallel 256 --dial-rate "$dial_rate" --dial-timeout 30s \
  --server-pid "$srv_pids" --url "$url_list" --json > "$log/gwbench.json" 2> "$log/gwbench.txt" &
gwbench_pid=$!; pids+=("$gwbench_pid")
monitor_loop > "$log/monitor.txt" 2>&1 &
monitor=$!
tail -f "$log/monitor.txt" --pid "$monitor" 2>/dev/null | sed -u 's/^/## monitor: /' &
tailer=$!
rc=0
wait "$gwbench_pid" || rc=$?
kill "$monitor" "$tailer" 2>/dev/null || true
grep -v "level=" "$log/gwbench.txt" || true
# The budget at the peak: the monitor line with the most TCP sockets, and the
# quietest line (least CPU in all) with every connection open: the idle CPU.
awk -v total="$total" -v slab0="$slab0" 'NR > 1 && $1 ~ /^[0-9]+$/ {
  if ($2 > peak) { peak = $2; line = $0 }
  rows[NR] = $0 }
  END {
    if (!peak) exit
    split(line, f, " ")
    printf "## peak: %d TCP sockets, %d pages (%.0f MiB) of TCP buffers, kernel slab %d MiB (%d before), %d MiB available\n", f[2], f[3], f[3] * 4 / 1024, f[5], slab0, f[4]
    printf "## RSS at the peak: gateways %.0f MiB, NATS %.0f MiB, workers %.0f MiB, gwbench %.0f MiB\n", f[6] / 1024, f[7] / 1024, f[8] / 1024, f[9] / 1024
    printf "## per connection at the peak: gateways %.0f B, NATS %.0f B, workers %.0f B, gwbench %.0f B, kernel slab (both ends) %.0f B\n", f[6] * 1024 / total, f[7] * 1024 / total, f[8] * 1024 / total, f[9] * 1024 / total, (f[5] - slab0) * 1048576 / total
    best = -1
    for (i in rows) { split(rows[i], r, " "); if (r[2] >= 2 * total) { c = r[10] + r[11] + r[12] + r[13]; if (best < 0 || c < best) { best = c; q = rows[i] } } }
    split(q, r, " ")
    printf "## quietest 5 s with every socket open (CPU %% of one core): gateways %d, NATS %d, workers %d, gwbench %d; the whole box %d of 200\n", r[10], r[11], r[12], r[13], r[14]
  }' "$log/monitor.txt"
grep -h "^ABORT" "$log/monitor.txt" || true
echo "## loopback packets dropped at the backlog during the run: $(( $(softnet_drops) - drops0 ))"
cat /proc/net/sockstat | sed 's/^/## sockstat now: /'
if [ "$rc" -eq 0 ]; then echo "## PASS"; else echo "## FAIL (gwbench exit $rc)"; fi
exit "$rc"
