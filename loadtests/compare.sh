#!/usr/bin/env bash
# Side-by-side load comparison: prefect-server (this repo) vs the Python Prefect server.
#
#   bash loadtests/compare.sh
#
# For each backend (sqlite, postgres) it starts one server at a time on a fresh database, runs
# the prefect-load scenarios (ingest, seed-events, filter, lifecycle, workers, scheduler, dashboard) against it, records
# start-up time to healthy, RSS after start and peak RSS (VmHWM, summed over the server's process
# tree), stops it, drops the database, and finally prints markdown tables.
# Everything is bounded: each scenario by a count and by LOAD_MAX_SECONDS (plus a hard `timeout`).
#
# Environment (defaults in brackets):
#   LOAD_BACKENDS [sqlite postgres]     LOAD_NATS [1]  also run prefect-server on postgres + NATS
#   LOAD_INGEST_EVENTS [10000]  LOAD_INGEST_SOCKETS [8]
#   LOAD_SEED_EVENTS [10000]
#   LOAD_FILTER_REQUESTS [300]  LOAD_FILTER_CONCURRENCY [4]
#   LOAD_FLOWS [100]  LOAD_FLOW_CONCURRENCY [4]  LOAD_TASKS [10]
#   LOAD_WORKERS [100]  LOAD_WORKER_POOLS [10]  LOAD_WORKER_RUNS [10000]  LOAD_WORKER_SECONDS [20]
#   LOAD_SCHED_DEPLOYMENTS [1000]  LOAD_SCHED_RUNS_EACH [3]
#   LOAD_REAL_FLOWS [200]  LOAD_REAL_TASKS [10]  LOAD_REAL_CONCURRENCY [20]   real-client: the real Prefect client (@flow/@task)
#   LOAD_DASH_FLOWS [500]  LOAD_DASH_TASKS [5]  LOAD_DASH_CLIENTS [8]  LOAD_DASH_ROUNDS [25]  LOAD_DASH_SECONDS [60]
#   LOAD_SCENARIOS [ingest seed-events filter lifecycle workers scheduler dashboard]   which scenarios to run;
#   LOAD_FILTER_EVENTS [1000000]  LOAD_FILTER_DAYS [7]   size of the filter-1m scenario (see below)
#       filter-1m (not in the default list) bulk-loads LOAD_FILTER_EVENTS events over the last
#       LOAD_FILTER_DAYS days straight into each server's events tables (seed-events-sql: it
#       measures the query, not ingestion), then runs the filter scenario against them
#   LOAD_REPLAY_FLOWS [3000]   replay (not in the default list; prefect-server only, Prefect has no
#       equivalent): seeds LOAD_REPLAY_FLOWS lifecycle runs x LOAD_TASKS task runs, stops the server and
#       times `prefect-server replay server --verify` (whole command, both fingerprints included)
#   LOAD_MAX_SECONDS [120]      per scenario
#   LOAD_PYTHON_PREFECT [tests/compat/.venv/bin/prefect, made by tests/run-all.sh]   "" skips the Python server
#   LOAD_PG_URL [postgresql://postgres@127.0.0.1:5432]   LOAD_NATS_URL [nats://127.0.0.1:4222]
#   LOAD_SKIP_BUILD [0]  LOAD_OUT [target/loadtests/<timestamp>]
#   LOAD_SERVER_BIN [target/release/prefect-server]   another prefect-server binary (e.g. an older build, for before/after)
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

BACKENDS=${LOAD_BACKENDS:-sqlite postgres}
WITH_NATS=${LOAD_NATS:-1}
INGEST_EVENTS=${LOAD_INGEST_EVENTS:-10000}
INGEST_SOCKETS=${LOAD_INGEST_SOCKETS:-8}
SEED_EVENTS=${LOAD_SEED_EVENTS:-10000}
FILTER_REQUESTS=${LOAD_FILTER_REQUESTS:-300}
FILTER_CONCURRENCY=${LOAD_FILTER_CONCURRENCY:-4}
FLOWS=${LOAD_FLOWS:-100}
FLOW_CONCURRENCY=${LOAD_FLOW_CONCURRENCY:-4}
TASKS=${LOAD_TASKS:-10}
WORKERS=${LOAD_WORKERS:-100}
WORKER_POOLS=${LOAD_WORKER_POOLS:-10}
WORKER_RUNS=${LOAD_WORKER_RUNS:-10000}
WORKER_SECONDS=${LOAD_WORKER_SECONDS:-20}
SCHED_DEPLOYMENTS=${LOAD_SCHED_DEPLOYMENTS:-1000}
SCHED_RUNS_EACH=${LOAD_SCHED_RUNS_EACH:-3}
REAL_FLOWS=${LOAD_REAL_FLOWS:-200}
REAL_TASKS=${LOAD_REAL_TASKS:-10}
REAL_CONCURRENCY=${LOAD_REAL_CONCURRENCY:-20}
DASH_FLOWS=${LOAD_DASH_FLOWS:-500}
DASH_TASKS=${LOAD_DASH_TASKS:-5}
DASH_CLIENTS=${LOAD_DASH_CLIENTS:-8}
DASH_ROUNDS=${LOAD_DASH_ROUNDS:-25}
DASH_SECONDS=${LOAD_DASH_SECONDS:-60}
SCENARIOS=" ${LOAD_SCENARIOS:-ingest seed-events filter lifecycle workers scheduler dashboard} "
FILTER_EVENTS=${LOAD_FILTER_EVENTS:-1000000}
FILTER_DAYS=${LOAD_FILTER_DAYS:-7}
MAX_SECONDS=${LOAD_MAX_SECONDS:-120}
REPLAY_FLOWS=${LOAD_REPLAY_FLOWS:-3000}
PY_PREFECT=${LOAD_PYTHON_PREFECT-$ROOT/tests/compat/.venv/bin/prefect}
PG_URL=${LOAD_PG_URL:-postgresql://postgres@127.0.0.1:5432}
NATS_URL=${LOAD_NATS_URL:-nats://127.0.0.1:4222}
RUN_ID=$(date +%Y%m%d%H%M%S)-$$
OUT=${LOAD_OUT:-$ROOT/target/loadtests/$RUN_ID}
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"

log() { echo "[compare $(date +%H:%M:%S)] $*" >&2; }

if [ "${LOAD_SKIP_BUILD:-0}" != 1 ]; then
    log "building release binaries"
    cargo build --release || exit 1
    cargo build --release -p prefect-load || exit 1
fi
SERVER_BIN=${LOAD_SERVER_BIN:-$ROOT/target/release/prefect-server}
LOAD_BIN=$ROOT/target/release/prefect-load

PG_HOSTPART=${PG_URL#postgresql://}
psql_admin() { psql "$PG_URL/postgres" -v ON_ERROR_STOP=1 -qAtc "$1"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Sum of a /proc status field (kB) over every process in the server's session.
tree_kb() {
    local sid=$1 field=$2 total=0 p v
    for p in $(pgrep -s "$sid" 2>/dev/null); do
        v=$(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$p/status" 2>/dev/null)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

SERVER_PID=""
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM -- "-$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 50); do
        pgrep -s "$SERVER_PID" >/dev/null 2>&1 || break
        sleep 0.2
    done
    kill -KILL -- "-$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
}

CLEANUP_DBS=()
CLEANUP_STREAMS=()
cleanup() {
    stop_server
    for db in "${CLEANUP_DBS[@]}"; do psql_admin "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" || true; done
    for s in "${CLEANUP_STREAMS[@]}"; do "$LOAD_BIN" nats-delete-stream --nats-url "$NATS_URL" --stream "$s" || true; done
    CLEANUP_DBS=()
    CLEANUP_STREAMS=()
}
trap 'cleanup; exit 130' INT TERM
trap cleanup EXIT

record() { echo "$1" >>"$RESULTS"; }

# The real Prefect client (from the compat venv) running @flow/@task against
# the server: loadtests/concurrent_flows.py, which ends with a JSON line.
real_client() {
    local base=$1 label=$2 home=$3 outf rc
    case "$SCENARIOS" in *" real-client "*) ;; *) return ;; esac
    local py=${LOAD_CLIENT_PYTHON:-$ROOT/tests/compat/.venv/bin/python}
    outf="$home/real-client.out"
    log "$label: real-client"
    env PREFECT_API_URL="$base" PREFECT_HOME="$home/client" PREFECT_SERVER_ANALYTICS_ENABLED=false \
        timeout -k 5 $((MAX_SECONDS + 120)) "$py" "$ROOT/loadtests/concurrent_flows.py" \
        --flows "$REAL_FLOWS" --tasks "$REAL_TASKS" --concurrency "$REAL_CONCURRENCY" --timeout "$MAX_SECONDS" --label "$label" >"$outf" 2>"$home/real-client.err"
    rc=$?
    grep -v '^{' "$outf" | sed 's/^/    /' >&2
    local last
    last=$(tail -n 1 "$outf")
    if [ "${last:0:1}" = "{" ]; then
        record "$last"
    else
        record "{\"scenario\":\"real-client\",\"label\":\"$label\",\"failed\":\"exit $rc: $(tail -n 1 "$home/real-client.err" | tr -d '"\\' | cut -c1-120)\"}"
    fi
}

# run_one <server: rust|python> <backend: sqlite|postgres> <broker: memory|nats>
run_one() {
    local kind=$1 backend=$2 broker=$3
    local label="$kind-$backend-$broker"
    local port home db_url db_name="" stream="" prefix
    port=$(free_port)
    home=$OUT/$label
    mkdir -p "$home"
    log "== $label on port $port"

    if [ "$backend" = postgres ]; then
        db_name="prefect_load_${kind}_${RUN_ID//-/_}"
        psql_admin "CREATE DATABASE \"$db_name\"" || { record "{\"scenario\":\"server\",\"label\":\"$label\",\"failed\":\"createdb failed\"}"; return; }
        CLEANUP_DBS+=("$db_name")
    fi

    if [ "$kind" = rust ]; then
        if [ "$backend" = postgres ]; then db_url="$PG_URL/$db_name"; else db_url="sqlite:///$home/prefect-server.db"; fi
        local env=(PREFECT_HOME="$home" PREFECT_SERVER_API_HOST=127.0.0.1 PREFECT_SERVER_API_PORT="$port"
            PREFECT_API_DATABASE_CONNECTION_URL="$db_url" PREFECT_MESSAGING_BROKER="$broker" PREFECT_SERVER_LOGGING_LEVEL=WARNING)
        if [ "$broker" = nats ]; then
            stream="LOAD_${RUN_ID//-/_}"
            prefix="load.$RUN_ID"
            env+=(PREFECT_NATS_URL="$NATS_URL" PREFECT_NATS_STREAM="$stream" PREFECT_NATS_SUBJECT_PREFIX="${prefix//-/_}")
            CLEANUP_STREAMS+=("$stream")
        fi
        local t0
        t0=$(date +%s.%N)
        env "${env[@]}" setsid "$SERVER_BIN" >"$home/server.log" 2>&1 &
        SERVER_PID=$!
    else
        if [ "$backend" = postgres ]; then db_url="postgresql+asyncpg://${PG_HOSTPART}/$db_name"; else db_url="sqlite+aiosqlite:///$home/prefect.db"; fi
        local t0
        t0=$(date +%s.%N)
        env PREFECT_HOME="$home" PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_UI_ENABLED=false \
            PREFECT_API_DATABASE_CONNECTION_URL="$db_url" PREFECT_SERVER_LOGGING_LEVEL=WARNING \
            setsid "$PY_PREFECT" server start --host 127.0.0.1 --port "$port" >"$home/server.log" 2>&1 &
        SERVER_PID=$!
    fi

    local base="http://127.0.0.1:$port/api" healthy=0 startup
    for _ in $(seq 1 600); do
        if curl -sf -m 2 "$base/health" >/dev/null 2>&1; then healthy=1; break; fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    startup=$(python3 -c "import sys; print(round($(date +%s.%N) - $t0, 2))")
    if [ "$healthy" != 1 ]; then
        log "$label did not become healthy; see $home/server.log"
        record "{\"scenario\":\"server\",\"label\":\"$label\",\"failed\":\"not healthy after start\"}"
        stop_server
        return
    fi
    sleep 2
    local rss_idle
    rss_idle=$(tree_kb "$SERVER_PID" VmRSS)
    log "$label healthy after ${startup}s, RSS ${rss_idle} kB"

    local common=(--url "$base" --max-seconds "$MAX_SECONDS" --label "$label")
    local hard=$((MAX_SECONDS + DASH_SECONDS + 60))
    scenario() {
        local name=$1
        shift
        case "$SCENARIOS" in *" $name "*) ;; *) return ;; esac
        local outf="$home/$name.out" rc
        log "$label: $name"
        timeout -k 5 "$hard" "$LOAD_BIN" "$name" "${common[@]}" "$@" >"$outf" 2>&1
        rc=$?
        sed 's/^/    /' "$outf" | grep -v '^    {' >&2
        local last
        last=$(tail -n 1 "$outf")
        if [ $rc = 0 ] && [ "${last:0:1}" = "{" ]; then
            record "$last"
        else
            record "{\"scenario\":\"$name\",\"label\":\"$label\",\"failed\":\"exit $rc: $(tail -n 1 "$outf" | tr -d '"\\' | cut -c1-120)\"}"
        fi
    }
    scenario ingest --sockets "$INGEST_SOCKETS" --events "$INGEST_EVENTS"
    scenario seed-events --events "$SEED_EVENTS"
    scenario filter --requests "$FILTER_REQUESTS" --concurrency "$FILTER_CONCURRENCY"
    case "$SCENARIOS" in *" filter-1m "*)
        # Seed the read model directly (the server is up, so its tables exist), then query it.
        local seed_url
        if [ "$backend" = postgres ]; then seed_url="$PG_URL/$db_name";
        elif [ "$kind" = rust ]; then seed_url="sqlite://$home/prefect-server.db"; else seed_url="sqlite://$home/prefect.db"; fi
        log "$label: seed-events-sql ($FILTER_EVENTS events over $FILTER_DAYS days)"
        if timeout -k 5 3600 "$LOAD_BIN" seed-events-sql --server "$kind" --database-url "$seed_url" --events "$FILTER_EVENTS" \
            --days "$FILTER_DAYS" --label "$label" >"$home/seed-events-sql.out" 2>&1; then
            grep -v '^{' "$home/seed-events-sql.out" | tail -n 1 | sed 's/^/    /' >&2
            record "$(tail -n 1 "$home/seed-events-sql.out")"
            log "$label: filter-1m"
            local outf="$home/filter-1m.out"
            timeout -k 5 "$hard" "$LOAD_BIN" filter "${common[@]}" --requests "$FILTER_REQUESTS" --concurrency "$FILTER_CONCURRENCY" >"$outf" 2>&1
            sed 's/^/    /' "$outf" | grep -v '^    {' >&2
            if [ "$(tail -c 2 "$outf" | head -c 1)" = "}" ]; then
                record "$(tail -n 1 "$outf" | python3 -c 'import json,sys; r=json.load(sys.stdin); r["scenario"]="filter-1m"; print(json.dumps(r))')"
            else
                record "{\"scenario\":\"filter-1m\",\"label\":\"$label\",\"failed\":\"$(tail -n 1 "$outf" | tr -d '"\\' | cut -c1-120)\"}"
            fi
        else
            record "{\"scenario\":\"seed-events-sql\",\"label\":\"$label\",\"failed\":\"$(tail -n 1 "$home/seed-events-sql.out" | tr -d '"\\' | cut -c1-120)\"}"
        fi
        ;;
    esac
    scenario lifecycle --flows "$FLOWS" --concurrency "$FLOW_CONCURRENCY" --tasks "$TASKS"
    scenario workers --pools "$WORKER_POOLS" --runs "$WORKER_RUNS" --workers "$WORKERS" --seconds "$WORKER_SECONDS"
    scenario scheduler --deployments "$SCHED_DEPLOYMENTS" --runs-each "$SCHED_RUNS_EACH"
    real_client "$base" "$label" "$home"
    scenario dashboard --flows "$DASH_FLOWS" --tasks "$DASH_TASKS" --clients "$DASH_CLIENTS" --rounds "$DASH_ROUNDS" --seconds "$DASH_SECONDS"

    local replay=0
    case "$SCENARIOS" in *" replay "*)
        if [ "$kind" = rust ]; then
            replay=1
            log "$label: replay, seeding $REPLAY_FLOWS lifecycle runs x $TASKS task runs"
            timeout -k 5 "$hard" "$LOAD_BIN" lifecycle --url "$base" --max-seconds $((MAX_SECONDS * 5)) --label "$label" \
                --flows "$REPLAY_FLOWS" --concurrency 32 --tasks "$TASKS" >"$home/replay-seed.out" 2>&1
        fi
        ;;
    esac

    local alive=true rss_peak
    kill -0 "$SERVER_PID" 2>/dev/null || alive=false
    rss_peak=$(tree_kb "$SERVER_PID" VmHWM)
    record "{\"scenario\":\"server\",\"label\":\"$label\",\"startup_s\":$startup,\"rss_idle_kb\":$rss_idle,\"rss_peak_kb\":$rss_peak,\"alive_at_end\":$alive}"
    local errs
    errs=$(grep -c -E ' 5[0-9][0-9] |Traceback|ERROR' "$home/server.log" 2>/dev/null)
    log "$label done (server log lines with errors: ${errs:-0})"
    stop_server
    if [ "$replay" = 1 ]; then
        # The server is stopped, so the rebuild has the machine to itself.
        log "$label: replay server --verify"
        local rout="$home/replay.out"
        env PREFECT_HOME="$home" PREFECT_API_DATABASE_CONNECTION_URL="$db_url" PREFECT_SERVER_LOGGING_LEVEL=WARNING \
            timeout -k 5 600 "$SERVER_BIN" replay server --verify >"$rout" 2>&1
        local rc=$?
        sed 's/^/    /' "$rout" | grep -E 'replayed|matches|DIFFERS' >&2
        record "$(python3 - "$rout" "$label" "$rc" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
m = re.search(r"replayed (\d+) events into the server model in ([\d.]+)s \((\d+) events/s\)", text)
if m and sys.argv[3] == "0":
    print(json.dumps({"scenario": "replay", "label": sys.argv[2], "events": int(m[1]), "seconds": float(m[2]),
                      "rate": int(m[3]), "matches": "rebuilt model matches" in text}))
else:
    print(json.dumps({"scenario": "replay", "label": sys.argv[2], "failed": f"exit {sys.argv[3]}: " + text.strip()[-120:].replace('"', "")}))
PY
)"
    fi
    cleanup
}

for backend in $BACKENDS; do
    run_one rust "$backend" memory
    if [ "$backend" = postgres ] && [ "$WITH_NATS" = 1 ]; then run_one rust postgres nats; fi
    if [ -n "$PY_PREFECT" ]; then run_one python "$backend" memory; fi
done

python3 "$ROOT/loadtests/table.py" "$RESULTS" | tee "$OUT/table.md"
log "raw results: $RESULTS"
