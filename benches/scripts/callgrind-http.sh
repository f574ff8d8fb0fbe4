#!/usr/bin/env bash
# Instructions per HTTP request of a server, counted by callgrind (independent of machine load):
# the server runs under valgrind on 127.0.0.1, wrk loads it for DURATION seconds (pipelined 16
# deep by default, or keep-alive with MODE=ka), then the profile is dumped and divided by the
# requests wrk completed. The count includes the server's idle turns: read it as ±2 %.
# MODE=low is a light load instead: single requests, RATE per second (default 2000) over 16
# keep-alive connections, each alone on the wire, N of them (default 5000) from a Python client
# after 200 to warm up; the counters are zeroed after the warm-up, so only those N count. Every
# request then costs the server a wake-up of its own: what it does per wake-up shows.
#
#   cargo build --profile perf --example hello
#   benches/scripts/callgrind-http.sh 'target/perf/examples/hello --port {port} --cores 1'
#   benches/scripts/callgrind-http.sh '../shared/bench/peers/target/release/may_minihttp {port}'
#   MODE=ka benches/scripts/callgrind-http.sh 'target/perf/examples/hello --port {port} --cores 1 --plain'
#   MODE=low benches/scripts/callgrind-http.sh 'target/perf/examples/hello --port {port} --cores 1'
#
# Environment: PORT (default 18290), DURATION (10), MODE (pipe | ka | low), RATE and N (low),
# OUT (profile path prefix, default a temporary file; `callgrind_annotate OUT.1` shows where the instructions go),
# VG_OPTS (more callgrind options: `--branch-sim=yes` adds mispredicted branches per request,
# `--cache-sim=yes` cache misses; each simulated event is printed per request too), LINES=1
# (then also where the instructions go, by function and by source line through inlining: see
# `callgrind-lines.py`).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 'SERVER COMMAND with {port}'" >&2; exit 2; }
for tool in valgrind callgrind_control callgrind_annotate wrk python3; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install valgrind wrk python3" >&2; exit 1; }
done
PORT=${PORT:-18290}
DURATION=${DURATION:-10}
MODE=${MODE:-pipe}
OUT=${OUT:-$(mktemp -u /tmp/callgrind-http.XXXXXX)}
HERE=$(cd "$(dirname "$0")" && pwd)
LUA="$HERE/../../../shared/bench/pipeline.lua"
CMD=${1//\{port\}/$PORT}
LOG=$(mktemp)

VG_OPTS=${VG_OPTS:-}
[ "${LINES:-0}" = 1 ] && VG_OPTS="$VG_OPTS --dump-instr=yes"
# shellcheck disable=SC2086 # the command is split into words on purpose
valgrind --tool=callgrind $VG_OPTS --callgrind-out-file="$OUT" $CMD >"$LOG" 2>&1 &
VG=$!
trap 'kill "$VG" 2>/dev/null || true; rm -f "$LOG"' EXIT
for _ in $(seq 1 60); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/plaintext" && break
    sleep 0.5
done
# MODE=low's client: N single requests at RATE per second over 16 connections, each answered
# before the next is due (bounded: a request unanswered after 10 s fails the run); prints N.
LOW_CLIENT='
import socket, sys, time
port, n, rate = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
conns = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(16)]
req = b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
start = time.perf_counter()
for i in range(n):
    while time.perf_counter() < start + i / rate:
        pass
    c = conns[i % 16]
    c.sendall(req)
    got = b""
    while b"Hello, World!" not in got:
        more = c.recv(4096)
        if not more:
            sys.exit("connection closed")
        got += more
print(n)
'
case "$MODE" in
    low)
        python3 -c "$LOW_CLIENT" "$PORT" 200 "${RATE:-2000}" >/dev/null
        callgrind_control -z "$VG" >/dev/null 2>&1
        REQ=$(python3 -c "$LOW_CLIENT" "$PORT" "${N:-5000}" "${RATE:-2000}") ;;
    pipe) REQ=$(wrk -t1 -c16 -d"${DURATION}s" -s "$LUA" "http://127.0.0.1:$PORT/plaintext" -- 16 | awk '/requests in/ {print $1}') ;;
    ka) REQ=$(wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$PORT/plaintext" | awk '/requests in/ {print $1}') ;;
    *) echo "MODE is pipe, ka or low" >&2; exit 2 ;;
esac
callgrind_control -d "$VG" >/dev/null 2>&1
sleep 1
kill "$VG"
wait "$VG" 2>/dev/null || true
# Every event callgrind counted (Ir, and with VG_OPTS Bc, Bcm, Bi, Bim, D1mr, ...), summed
# over the profile's parts and divided by the requests.
cat "$OUT".* | awk -v req="$REQ" -v mode="$MODE" -v out="$OUT" '
    /^events:/ { n = split($0, ev, " "); for (i = 2; i <= n; i++) name[i - 1] = ev[i]; k = n - 1 }
    /^summary:/ { for (i = 2; i <= NF; i++) sum[i - 1] += $i }
    END {
        # (%.0f, not %d: mawk clamps %d to 2^31 - 1, which a 10 s profile passes.)
        printf "mode=%s requests=%.0f instructions=%.0f per_request=%d", mode, req, sum[1], sum[1] / req
        for (i = 2; i <= k; i++) printf " %s/req=%.2f", name[i], sum[i] / req
        printf " profile=%s.1\n", out }'
if [ "${LINES:-0}" = 1 ]; then
    read -r -a WORDS <<<"$CMD"
    "$HERE/callgrind-lines.py" "$OUT.1" "${WORDS[0]}" "$REQ"
fi
