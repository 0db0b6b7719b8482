#!/usr/bin/env bash
# Inventory benchmarks (see docs/benchmarks.md):
#   1. one hot SKU, 256 concurrent clients, one-unit durable reservations
#   2. the same once sold out (denials)
#   3. availability reads of the same SKU, alone and while reservations run
# Needs wrk (apt-get install wrk). Usage: bench/inventory.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
PORT=${PORT:-18480}
cargo build --release -q
BIN=target/release/omnihub
DATA=$(mktemp -d)
export OMNIHUB_DATA_DIR=$DATA OMNIHUB_LISTEN=127.0.0.1:$PORT OMNIHUB_LOG_LEVEL=warn
$BIN serve >"$DATA/serve.log" 2>&1 &
HUB=$!
trap 'kill $HUB 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
KEY=$($BIN keys create --scopes admin 2>/dev/null)
API="http://127.0.0.1:$PORT/v1"
post() { curl -sf -X POST -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' -d "$2" "$API$1"; }
post /products '{"titles":{"en":"Hot"},"variants":[{"sku":"HOT","prices":{"USD":1000}},{"sku":"GONE"}]}' >/dev/null
WH=$(post /locations '{"kind":"warehouse","name":"Central"}' | sed -E 's/.*"id":"([^"]+)".*/\1/')
# 5,000,000 units: 50 receipts of the largest allowed movement.
RECEIPTS=$(for i in $(seq 50); do printf '{"id":"r%d","sku":"HOT","location_id":"%s","reason":"receipt","quantity":100000},' "$i" "$WH"; done)
post /inventory/movements "{\"movements\":[${RECEIPTS%,}]}" >/dev/null

echo "== machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/{print $2}') GiB"
echo "== 1. hot-SKU reservations, 256 clients, ${SECONDS_PER_RUN}s (SQLite, synchronous=FULL)"
RESERVE_BODY="{\"lines\":[{\"sku\":\"HOT\",\"quantity\":1,\"location_id\":\"$WH\"}]}" \
  wrk -t2 -c256 -d"${SECONDS_PER_RUN}s" -s bench/reserve.lua -H "Authorization: Bearer $KEY" "$API/reservations"
echo "== 2. sold-out denials, 256 clients, ${SECONDS_PER_RUN}s"
RESERVE_BODY="{\"lines\":[{\"sku\":\"GONE\",\"quantity\":1,\"location_id\":\"$WH\"}]}" \
  wrk -t2 -c256 -d"${SECONDS_PER_RUN}s" -s bench/reserve.lua -H "Authorization: Bearer $KEY" "$API/reservations"
echo "== 3. availability reads, 64 clients, ${SECONDS_PER_RUN}s"
wrk -t2 -c64 -d"${SECONDS_PER_RUN}s" --latency -H "Authorization: Bearer $KEY" "$API/availability?sku=HOT" | grep -E 'Requests/sec|99%|50%'
echo "== 4. availability reads while hot-SKU reservations run"
RESERVE_BODY="{\"lines\":[{\"sku\":\"HOT\",\"quantity\":1,\"location_id\":\"$WH\"}]}" \
  wrk -t1 -c256 -d"$((SECONDS_PER_RUN + 2))s" -s bench/reserve.lua -H "Authorization: Bearer $KEY" "$API/reservations" >"$DATA/bg.txt" &
sleep 1
wrk -t1 -c64 -d"${SECONDS_PER_RUN}s" --latency -H "Authorization: Bearer $KEY" "$API/availability?sku=HOT" | grep -E 'Requests/sec|99%|50%'
wait %2 2>/dev/null || true
sed 's/^/   (background) /' "$DATA/bg.txt" | grep created || true
