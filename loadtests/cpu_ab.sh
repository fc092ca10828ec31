#!/usr/bin/env bash
# Before/after for a server change: the server's CPU time per scenario, two or more prefect-server
# builds interleaved on Postgres.
#
#   bash loadtests/cpu_ab.sh /tmp/prefect-server-before target/release/prefect-server
#
# Throughput on a shared 2-core machine drifts by a third within the hour, and the load generator
# and Postgres share the cores with the server, so a change worth 10% of the server's CPU is lost
# in the noise of flow runs/s. The server's own CPU time for a fixed amount of work (utime + stime
# of its process, from /proc) moves much less, and interleaving the builds round by round puts each
# pair minutes apart. Each round and build gets a fresh database, runs `ingest` (CPU_AB_EVENTS
# events over 8 sockets) and then `lifecycle` (CPU_AB_FLOWS runs x 10 task runs at 64 clients), and
# prints the CPU seconds each took with the scenario's own figures.
#
# Environment (defaults in brackets): CPU_AB_ROUNDS [3]  CPU_AB_EVENTS [20000]  CPU_AB_FLOWS [600]
#   LOAD_PG_URL [postgresql://postgres@127.0.0.1:5432]  CPU_AB_PORT [4388]
# Everything is bounded: each scenario by its count and by 60 s. Needs prefect-load
# (`cargo build --release -p prefect-load`).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
[ $# -ge 1 ] || { echo "usage: $0 <prefect-server binary>..." >&2; exit 2; }
ROUNDS=${CPU_AB_ROUNDS:-3}
EVENTS=${CPU_AB_EVENTS:-20000}
FLOWS=${CPU_AB_FLOWS:-600}
PG_URL=${LOAD_PG_URL:-postgresql://postgres@127.0.0.1:5432}
PORT=${CPU_AB_PORT:-4388}
LOAD_BIN=$ROOT/target/release/prefect-load
[ -x "$LOAD_BIN" ] || { echo "build the load generator first: cargo build --release -p prefect-load" >&2; exit 2; }

SERVER_PID=""
DB=""
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    [ -n "$DB" ] && psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
    SERVER_PID=""
    DB=""
}
trap cleanup EXIT

# utime + stime of a process, in seconds.
cpu_seconds() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"; }
json_field() { python3 -c "import json,sys; r=json.loads(sys.stdin.read() or '{}'); print($1)"; }

for round in $(seq 1 "$ROUNDS"); do
    for bin in "$@"; do
        DB="cpu_ab_$$_$round"
        psql "$PG_URL/postgres" -qc "CREATE DATABASE $DB" >/dev/null || exit 1
        PREFECT_SERVER_API_HOST=127.0.0.1 PREFECT_SERVER_API_PORT=$PORT PREFECT_HOME="$(mktemp -d)" \
            PREFECT_API_DATABASE_CONNECTION_URL="$PG_URL/$DB" PREFECT_MESSAGING_BROKER=memory \
            PREFECT_SERVER_LOGGING_LEVEL=WARNING "$bin" >/dev/null 2>&1 &
        SERVER_PID=$!
        for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/api/health" >/dev/null && break; sleep 0.1; done
        base="http://127.0.0.1:$PORT/api"
        c0=$(cpu_seconds "$SERVER_PID")
        ingest=$("$LOAD_BIN" ingest --url "$base" --max-seconds 60 --label ab --sockets 8 --events "$EVENTS" 2>/dev/null | tail -n 1)
        c1=$(cpu_seconds "$SERVER_PID")
        lifecycle=$("$LOAD_BIN" lifecycle --url "$base" --max-seconds 60 --label ab --flows "$FLOWS" --concurrency 64 --tasks 10 2>/dev/null | tail -n 1)
        c2=$(cpu_seconds "$SERVER_PID")
        rate=$(echo "$ingest" | json_field 'r.get("e2e_rate")')
        runs=$(echo "$lifecycle" | json_field '"%s flow runs/s, set_state p99 %s ms" % (r.get("rate"), r.get("set_state", {}).get("p99_ms"))')
        printf '%s round %s | ingest %s events/s, server CPU %.2f s | lifecycle %s, server CPU %.2f s\n' \
            "$bin" "$round" "$rate" "$(echo "$c1 - $c0" | bc)" "$runs" "$(echo "$c2 - $c1" | bc)"
        cleanup
    done
done
