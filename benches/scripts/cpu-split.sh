#!/usr/bin/env bash
# A server's user and system CPU time per HTTP request, and the TCP segments the machine sent
# per request, around one wrk run: the split that compare-http.sh's total CPU per request
# hides (system time is 70-90 % of it and moves between runs by more than user time differs
# between servers). The server runs pinned to SERVER_CPU on 127.0.0.1, wrk -t2 -c64 pinned to
# CLIENT_CPU loads it for 1 s (not counted) and then DURATION seconds; the server's utime and
# stime are read from /proc/PID/stat before and after, and `nstat` counts the segments.
#
#   cargo build --profile perf --example hello
#   benches/scripts/cpu-split.sh pinion-pool 'target/perf/examples/hello --port {port} --cores 1'
#   MODE=ka benches/scripts/cpu-split.sh monoio-epoll '../shared/bench/peers/target/release/monoio {port}'
#   (monoio-epoll: export MONOIO_FORCE_LEGACY_DRIVER=1 first, as compare-http.sh does)
#
# Prints one line: name, mode, req/s, user, system and total µs per request, TCP segments sent
# per request (loopback: both directions), and pure ACKs per request. Run servers alternately,
# several times each: one run says little on a noisy machine.
#
# Environment: PORT (default 18291), DURATION (5, at most 30), MODE (pipe | ka), SERVER_CPU (0),
# CLIENT_CPU (1), DEPTH (16, pipelined requests per write).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 NAME 'SERVER COMMAND with {port}'" >&2; exit 2; }
for tool in wrk nstat taskset curl; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install wrk iproute2 util-linux curl" >&2; exit 1; }
done
NAME=$1
PORT=${PORT:-18291}
DURATION=${DURATION:-5}
MODE=${MODE:-pipe}
DEPTH=${DEPTH:-16}
((DURATION >= 1 && DURATION <= 30)) || { echo "DURATION is 1..30 seconds" >&2; exit 2; }
HERE=$(cd "$(dirname "$0")" && pwd)
LUA="$HERE/../../../shared/bench/pipeline.lua"
CMD=${2//\{port\}/$PORT}
URL="http://127.0.0.1:$PORT/plaintext"
LOG=$(mktemp)
OUT=$(mktemp)

# shellcheck disable=SC2086 # the command is split into words on purpose
taskset -c "${SERVER_CPU:-0}" $CMD >"$LOG" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; rm -f "$LOG" "$OUT"' EXIT
for _ in $(seq 1 50); do
    curl -s -o /dev/null "$URL" && break
    kill -0 "$PID" 2>/dev/null || { echo "the server exited:" >&2; cat "$LOG" >&2; exit 1; }
    sleep 0.1
done
load() { # $1 seconds
    case "$MODE" in
        pipe) taskset -c "${CLIENT_CPU:-1}" wrk -t2 -c64 -d"$1s" -s "$LUA" "$URL" -- "$DEPTH" ;;
        ka) taskset -c "${CLIENT_CPU:-1}" wrk -t2 -c64 -d"$1s" "$URL" ;;
        *) echo "MODE is pipe or ka" >&2; exit 2 ;;
    esac
}
load 1 >/dev/null
# Fields 14 and 15 of /proc/PID/stat: utime and stime in clock ticks (the name in field 2
# holds no spaces for these servers).
read -r U0 S0 < <(awk '{print $14, $15}' "/proc/$PID/stat")
nstat -n >/dev/null
load "$DURATION" >"$OUT"
SEGS=$(nstat TcpOutSegs TcpExtTCPPureAcks | awk '$1 == "TcpOutSegs" {o = $2} $1 == "TcpExtTCPPureAcks" {p = $2} END {print o + 0, p + 0}')
read -r U1 S1 < <(awk '{print $14, $15}' "/proc/$PID/stat")
REQ=$(awk '/ requests in / {print $1}' "$OUT")
RPS=$(awk '/^Requests\/sec:/ {print $2}' "$OUT")
[ -n "$REQ" ] && [ "$REQ" -gt 0 ] || { echo "wrk completed no request:" >&2; cat "$OUT" >&2; exit 1; }
awk -v n="$NAME" -v m="$MODE" -v rps="$RPS" -v req="$REQ" -v u=$((U1 - U0)) -v s=$((S1 - S0)) \
    -v hz="$(getconf CLK_TCK)" -v segs="$SEGS" 'BEGIN {
        split(segs, g, " ")
        printf "%s %s req/s=%s user=%.3f sys=%.3f total=%.3f us/req segments/req=%.3f pure_acks/req=%.4f\n",
            n, m, rps, u / hz * 1e6 / req, s / hz * 1e6 / req, (u + s) / hz * 1e6 / req, g[1] / req, g[2] / req }'
