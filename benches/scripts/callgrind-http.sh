#!/usr/bin/env bash
# Instructions per HTTP request of a server, counted by callgrind (independent of machine load):
# the server runs under valgrind on 127.0.0.1, wrk loads it for DURATION seconds (pipelined 16
# deep by default, or keep-alive with MODE=ka), then the profile is dumped and divided by the
# requests wrk completed. The count includes the server's idle turns: read it as ±2 %.
#
#   cargo build --profile perf --example hello
#   benches/scripts/callgrind-http.sh 'target/perf/examples/hello --port {port} --cores 1'
#   benches/scripts/callgrind-http.sh '../shared/bench/peers/target/release/may_minihttp {port}'
#   MODE=ka benches/scripts/callgrind-http.sh 'target/perf/examples/hello --port {port} --cores 1 --plain'
#
# Environment: PORT (default 18290), DURATION (10), MODE (pipe | ka), OUT (profile path prefix,
# default a temporary file; `callgrind_annotate OUT.1` shows where the instructions go),
# VG_OPTS (more callgrind options: `--branch-sim=yes` adds mispredicted branches per request,
# `--cache-sim=yes` cache misses; each simulated event is printed per request too), LINES=1
# (then also where the instructions go, by function and by source line through inlining: see
# `callgrind-lines.py`).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 'SERVER COMMAND with {port}'" >&2; exit 2; }
for tool in valgrind callgrind_control callgrind_annotate wrk; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install valgrind wrk" >&2; exit 1; }
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
case "$MODE" in
    pipe) REQ=$(wrk -t1 -c16 -d"${DURATION}s" -s "$LUA" "http://127.0.0.1:$PORT/plaintext" -- 16 | awk '/requests in/ {print $1}') ;;
    ka) REQ=$(wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$PORT/plaintext" | awk '/requests in/ {print $1}') ;;
    *) echo "MODE is pipe or ka" >&2; exit 2 ;;
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
        printf "mode=%s requests=%d instructions=%d per_request=%d", mode, req, sum[1], sum[1] / req
        for (i = 2; i <= k; i++) printf " %s/req=%.2f", name[i], sum[i] / req
        printf " profile=%s.1\n", out }'
if [ "${LINES:-0}" = 1 ]; then
    read -r -a WORDS <<<"$CMD"
    "$HERE/callgrind-lines.py" "$OUT.1" "${WORDS[0]}" "$REQ"
fi
