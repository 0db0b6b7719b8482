#!/usr/bin/env bash
# Carts and checkout benchmarks (see docs/benchmarks.md): add-to-cart at a
# fixed arrival rate, a flash sale of 256 concurrent checkouts on one SKU,
# and cart sync between two channels on the live stream. SQLite by default;
# set OMNIHUB_DATABASE_URL for PostgreSQL. Usage: bench/carts.sh [flash | flash-idempotent]
# (`flash`: only the flash sale; `flash-idempotent`: only the flash sale, each
# checkout with an Idempotency-Key).
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-18481}
cargo build --release -q --bin omnihub --example carts_bench
BIN=target/release/omnihub
DATA=$(mktemp -d)
export OMNIHUB_DATA_DIR=$DATA OMNIHUB_LISTEN=127.0.0.1:$PORT OMNIHUB_LOG_LEVEL=warn
$BIN serve >"$DATA/serve.log" 2>&1 &
HUB=$!
trap 'kill $HUB 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
KEY=$($BIN keys create --scopes admin 2>/dev/null)
echo "== machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/{print $2}') GiB; load average $(cut -d' ' -f1-3 /proc/loadavg)"
OMNIHUB_PID=$HUB target/release/examples/carts_bench "http://127.0.0.1:$PORT" "$KEY" "$@"
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
