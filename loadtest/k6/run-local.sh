#!/usr/bin/env bash
# run-local.sh SCRIPT [extra k6 args]
#
# Runs one of the k6 scripts in this folder against a fresh local `sluice serve`:
# builds bin/sluice (and bin/k6 if missing), starts Sluice on 127.0.0.1 with a
# temporary data dir and non-default ports, waits for /readyz, runs k6, scrapes a
# few metrics, stops Sluice with SIGTERM, prints its shutdown log and exits with
# k6's exit code (or 1 if k6 passed but Sluice did not shut down cleanly).
#
#   ./loadtest/k6/run-local.sh steady
#   DURATION=30s ./loadtest/k6/run-local.sh browser-mix -e RATE=500
#   SLUICE_EXTRA_ARGS="--ack enqueue" ./loadtest/k6/run-local.sh steady --summary-mode=full
#
# Environment (defaults):
#   DURATION=60s            passed to k6 as -e DURATION (the scripts' own defaults are longer)
#   LISTEN=127.0.0.1:18080  Sluice's public address     ADMIN_LISTEN=127.0.0.1:19090  its admin address
#   KAFKA_LISTEN=127.0.0.1:19092                       the embedded broker's address
#   SLUICE_EXTRA_ARGS=      more `sluice serve` flags (word-split)
#   SLUICE=bin/sluice  K6=bin/k6   binaries; SKIP_BUILD=1 uses bin/sluice as it is
#   K6_GOGC=400             GOGC for k6 only (less CPU in its garbage collector)
#   READY_TIMEOUT=20        seconds to wait for /readyz
#   STOP_TIMEOUT=60         seconds to wait for Sluice to exit after SIGTERM (its drain timeout is 30s)
#   KEEP_DATA=1             keep the temporary directory (data dir and sluice.log)
# Other variables reach k6 as they are (RATE, MIX, P99_MS...: see README.md), and
# SLUICE_* variables reach Sluice (e.g. SLUICE_ACK=enqueue), except for the flags set
# here (--listen, --admin-listen, --embedded-kafka-listen, --data-dir, --log-format text).
set -euo pipefail

usage() {
  echo "usage: $0 SCRIPT [extra k6 args]   (SCRIPT: steady, ramp-spike, soak, browser-mix)" >&2
  exit 2
}
[[ $# -ge 1 ]] || usage
script=$1
shift
script=${script%.js}
script=${script##*/}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

js="loadtest/k6/$script.js"
[[ -f $js ]] || { echo "run-local: no script $js" >&2; usage; }

LISTEN=${LISTEN:-127.0.0.1:18080}
ADMIN_LISTEN=${ADMIN_LISTEN:-127.0.0.1:19090}
KAFKA_LISTEN=${KAFKA_LISTEN:-127.0.0.1:19092}
SLUICE=${SLUICE:-bin/sluice}
K6=${K6:-bin/k6}
READY_TIMEOUT=${READY_TIMEOUT:-20}
STOP_TIMEOUT=${STOP_TIMEOUT:-60}
export DURATION=${DURATION:-60s}

log() { printf 'run-local: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

command -v curl >/dev/null || die "curl is needed"

# --- binaries
if [[ ${SKIP_BUILD:-} != 1 ]] && command -v go >/dev/null; then
  log "building $SLUICE"
  go build -o "$SLUICE" ./cmd/sluice
fi
[[ -x $SLUICE ]] || die "$SLUICE is missing: run \`make build\`"
if [[ ! -x $K6 ]] && ! command -v "$K6" >/dev/null; then
  log "$K6 is missing; building it with \`make k6\` (about 2 minutes the first time)"
  make k6
fi

# --- ports: each must be free (nothing answering a connect)
port_in_use() { # host:port
  local host=${1%:*} port=${1##*:}
  (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}
for addr in "$LISTEN" "$ADMIN_LISTEN" "$KAFKA_LISTEN"; do
  if port_in_use "$addr"; then
    die "$addr is already in use (another sluice? \`make run\`?): stop it, or set LISTEN / ADMIN_LISTEN / KAFKA_LISTEN"
  fi
done

# --- start Sluice
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sluice-k6.XXXXXX")
slog=$tmp/sluice.log
pid=

cleanup() {
  # No more signal traps here: a closed output pipe must not cut the cleanup short.
  trap '' PIPE HUP INT TERM
  set +e
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    log "stopping sluice (pid $pid) after a failure" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  if [[ ${KEEP_DATA:-} == 1 ]]; then
    log "kept $tmp (data dir and sluice.log)" 2>/dev/null
    return
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
# Signals end the script through the EXIT trap, so Sluice never outlives it
# (also when its output pipe closes: SIGPIPE).
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM

# shellcheck disable=SC2086 # SLUICE_EXTRA_ARGS is word-split on purpose
"$SLUICE" serve \
  --listen "$LISTEN" --admin-listen "$ADMIN_LISTEN" --embedded-kafka-listen "$KAFKA_LISTEN" \
  --data-dir "$tmp/data" --log-format text ${SLUICE_EXTRA_ARGS:-} >"$slog" 2>&1 &
pid=$!
log "sluice pid $pid, public http://$LISTEN, admin http://$ADMIN_LISTEN, data $tmp/data"

ready=0
for _ in $(seq 1 $((READY_TIMEOUT * 10))); do
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" && rc=0 || rc=$?
    pid=
    log "sluice exited (status $rc) before it was ready; its log:"
    cat "$slog" >&2
    exit 1
  fi
  if curl -fsS -o /dev/null --max-time 1 "http://$ADMIN_LISTEN/readyz" 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
if [[ $ready != 1 ]]; then
  log "sluice not ready after ${READY_TIMEOUT}s; its log:"
  cat "$slog" >&2
  exit 1
fi
log "sluice is ready"

# --- CPU accounting (Linux): host busy ticks from /proc/stat, Sluice's from
# /proc/PID/stat, k6's from the shell's reaped-children times (`times`).
hz=$(getconf CLK_TCK 2>/dev/null || echo 100)
host_busy() { [[ -r /proc/stat ]] && awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat || echo 0; }
proc_ticks() { [[ -r /proc/$1/stat ]] && sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12+$13}' || echo 0; }
# `times` must run in this shell (not in a pipe or $(...)), hence the file.
children_secs() { # VAR
  times >"$tmp/times"
  printf -v "$1" '%s' "$(awk 'NR==2{gsub(/s/,""); split($1,u,"m"); split($2,s,"m"); print u[1]*60+u[2]+s[1]*60+s[2]}' "$tmp/times")"
}
ncpu=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)

# --- k6
# k6 spends much of its CPU in its garbage collector; a larger GOGC trades
# memory (plenty here) for CPU the gateway can use instead.
log "GOGC=${K6_GOGC:-400} $K6 run -e BASE_URL=http://$LISTEN -e DURATION=$DURATION $* $js"
h0=$(host_busy); s0=$(proc_ticks "$pid"); children_secs c0; t0=$(date +%s.%N)
set +e
GOGC=${K6_GOGC:-400} "$K6" run -e "BASE_URL=http://$LISTEN" -e "DURATION=$DURATION" "$@" "$js"
k6rc=$?
set -e
h1=$(host_busy); s1=$(proc_ticks "$pid"); children_secs c1; t1=$(date +%s.%N)
log "k6 exited with status $k6rc"

# --- a few metrics, before stopping
metrics=$(curl -fsS --max-time 5 "http://$ADMIN_LISTEN/metrics" || true)
if [[ -n $metrics ]]; then
  echo
  echo "== sluice metrics after the run"
  grep -E '^sluice_(events_total|buffer_backlog_records|wal_group_commit_records_(sum|count)|wal_last_index|wal_acked_index|shipped_records_total|ship_errors_total|http_requests_total)[ {]' <<<"$metrics" || true
  awk '/^sluice_wal_group_commit_records_sum /{s=$2} /^sluice_wal_group_commit_records_count /{c=$2}
       END{if (c > 0) printf "records per group commit (sum/count): %.1f\n", s/c}' <<<"$metrics"
else
  log "could not scrape http://$ADMIN_LISTEN/metrics"
fi

echo
echo "== CPU during the k6 run (cores, of $ncpu)"
awk -v h="$((h1 - h0))" -v s="$((s1 - s0))" -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$hz" 'BEGIN{
  w = t1 - t0; if (w <= 0) exit
  host = h / hz / w; sl = s / hz / w; k6 = (c1 - c0) / w; other = host - sl - k6; if (other < 0) other = 0
  printf "host busy %.2f   k6 %.2f   sluice %.2f (with its embedded broker)   other processes %.2f\n", host, k6, sl, other
  if (other > 0.3) printf "note: other processes used %.2f cores: latencies were measured on a busy machine\n", other
}'

# --- stop Sluice
echo
echo "== sluice shutdown (SIGTERM)"
kill -TERM "$pid"
stopped=0
for _ in $(seq 1 $((STOP_TIMEOUT * 10))); do
  if ! kill -0 "$pid" 2>/dev/null; then stopped=1; break; fi
  sleep 0.1
done
if [[ $stopped == 1 ]]; then
  wait "$pid" && src=0 || src=$?
else
  log "sluice did not exit within ${STOP_TIMEOUT}s of SIGTERM; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  src=timeout
fi
pid=
grep -E 'shutdown' "$slog" || true
echo "sluice exit status: $src"
# Warnings and errors, but the embedded development broker's notice.
warnings=$(grep -E 'level=(WARN|ERROR)' "$slog" | grep -v 'embedded DEVELOPMENT Kafka broker' || true)
if [[ -n $warnings ]]; then
  echo "sluice logged $(wc -l <<<"$warnings") warning/error lines; the first ones:"
  head -20 <<<"$warnings"
else
  echo "sluice logged no warnings or errors (besides the development-broker notice)"
fi

if [[ $k6rc -ne 0 ]]; then
  exit "$k6rc"
fi
if [[ $src != 0 ]]; then
  log "k6 passed but sluice did not shut down cleanly (status $src)"
  exit 1
fi
exit 0
