#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: the Rust unit and
# integration tests (SQLite and Postgres), then the compatibility suite with
# the real Prefect client against the release binary, once on SQLite and once
# on Postgres. Sets up what it needs: the Postgres service if it is down,
# nats-server (JetStream) for tests/broker.rs if it is down, the Python venv
# for the compat suite, the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

PG_URL=${PREFECT_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/postgres}
export PREFECT_TEST_POSTGRES_URL=$PG_URL

ensure_postgres() {
  if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then return 0; fi
  echo "== starting PostgreSQL"
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  for _ in $(seq 1 30); do
    pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null && return 0
    sleep 1
  done
  echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2
  return 1
}

# tests/broker.rs needs NATS with JetStream on 127.0.0.1:4222 (override with
# PREFECT_TEST_NATS_URL).
ensure_nats() {
  if [ -n "${PREFECT_TEST_NATS_URL:-}" ] || (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then return 0; fi
  echo "== starting nats-server"
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  for _ in $(seq 1 30); do
    (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null && return 0
    sleep 1
  done
  echo "NATS is not reachable on 127.0.0.1:4222" >&2
  return 1
}

ensure_venv() {
  local venv="$ROOT/tests/compat/.venv"
  local stamp="$venv/.requirements.sha"
  local want
  want=$(cat tests/compat/requirements*.txt | sha256sum | cut -d' ' -f1)
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "== creating the compat venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip >/dev/null
    "$venv/bin/pip" install -q -r tests/compat/requirements-test.txt
    echo "$want" > "$stamp"
  fi
}

ensure_postgres
ensure_nats

echo "== cargo build --release"
cargo build --release --locked 2>&1 | tail -n 3

echo "== Rust tests (unit + integration, SQLite and Postgres)"
LOG=$(mktemp)
if ! cargo test --release --locked >"$LOG" 2>&1; then
  grep -vE "^test .* ok$" "$LOG" | tail -n 150
  echo "Rust tests failed" >&2
  exit 1
fi
grep -E "^test result:" "$LOG"

ensure_venv
export PREFECT_SERVER_BIN="$ROOT/target/release/prefect-server"
for backend in sqlite postgres; do
  echo "== compat suite on $backend"
  PREFECT_COMPAT_BACKEND=$backend "$ROOT/tests/compat/.venv/bin/python" -m pytest -q -p no:cacheprovider tests/compat
done
