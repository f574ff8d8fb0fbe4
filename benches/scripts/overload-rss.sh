#!/usr/bin/env bash
# Sustained overload of examples/backpressure.rs: wrk keeps CONNS connections (default 2200:
# 10x the pool's 220 slots) busy for DURATION seconds while this script samples the server's
# RSS every 5 s. A flat RSS means the overload is shed (503) instead of queued.
#
#   cargo build --release --example backpressure
#   benches/scripts/overload-rss.sh [DURATION] [CONNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${1:-60}
CONNS=${2:-2200}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 1; }
[ "$(ulimit -n)" -ge $((CONNS + 100)) ] || ulimit -n $((CONNS + 100)) || { echo "raise the open-files limit above $CONNS"; exit 1; }
PORT=$((20000 + RANDOM % 20000))
target/release/examples/backpressure --port "$PORT" --pool 20 --mailbox 10 --work-ms 1000 --cores 1 > /tmp/overload-server.log &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q listening /tmp/overload-server.log && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$SERVER/status"; }
echo "before load: RSS $(rss) KiB"
taskset -c 1 wrk -t2 -c"$CONNS" -d"${DURATION}s" --timeout 10s "http://127.0.0.1:$PORT/" > /tmp/overload-wrk.log 2>&1 &
WRK=$!
for t in $(seq 5 5 "$DURATION"); do
    sleep 5
    echo "t=${t}s RSS $(rss) KiB"
done
wait $WRK || true
echo "after load: RSS $(rss) KiB"
grep -E "Requests/sec|Non-2xx|requests in|Socket errors" /tmp/overload-wrk.log
curl -s "http://127.0.0.1:$PORT/stats"
