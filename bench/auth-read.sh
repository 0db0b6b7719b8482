#!/usr/bin/env bash
# Authenticated read vs a bare handler, end to end (see docs/benchmarks.md).
#
#   bench/auth-read.sh
#
# Builds the release binaries, starts the hub (`omnihub serve`, SQLite in a
# temporary data directory) and `omnihub-bench bare-server`, creates an admin
# key and a channel, loads `GET /v1/channels/{id}` on both with wrk
# (the hub with `Authorization: Bearer <key>`), prints req/s, latency and the
# ratio hub / bare, then stops both servers. Needs wrk:
#   apt-get update && apt-get install -y wrk
#
# Settings (environment): THREADS (2), CONNECTIONS (64), DURATION (10s),
# ROUNDS (2: bare, hub, bare, hub … averaged), HUB_PORT (18080), BARE_PORT (18090).
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-64}"
DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-2}"
HUB_PORT="${HUB_PORT:-18080}"
BARE_PORT="${BARE_PORT:-18090}"

command -v wrk >/dev/null || { echo "wrk is missing: apt-get update && apt-get install -y wrk" >&2; exit 1; }

cargo build --release -p omnihub -p omnihub-bench
hub_bin=target/release/omnihub
bench_bin=target/release/omnihub-bench

data="$(mktemp -d -t omnihub-auth-read.XXXXXX)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$data"
}
trap cleanup EXIT

hub() { "$hub_bin" --data-dir "$data" --log-level warn "$@"; }
key="$(hub keys create --scopes admin 2>/dev/null)"
key_id="$(hub keys list | head -n 1 | cut -f1)"
channel="$(hub channels create --kind web --name 'Bench web' | cut -f1)"

"$hub_bin" --data-dir "$data" --log-level warn --listen "127.0.0.1:$HUB_PORT" serve >"$data/hub.log" 2>&1 &
pids+=($!)
"$bench_bin" bare-server --listen "127.0.0.1:$BARE_PORT" >"$data/bare.log" 2>&1 &
pids+=($!)

sleep 0.5
if ! kill -0 "${pids[0]}" 2>/dev/null || ! kill -0 "${pids[1]}" 2>/dev/null; then
    echo "a server did not start (are ports $HUB_PORT and $BARE_PORT free?)" >&2
    cat "$data/hub.log" "$data/bare.log" >&2
    exit 1
fi

hub_url="http://127.0.0.1:$HUB_PORT/v1/channels/$channel"
bare_url="http://127.0.0.1:$BARE_PORT/v1/channels/$channel"
for _ in $(seq 1 100); do
    if curl -fs -o /dev/null -H "Authorization: Bearer $key" "$hub_url" &&
        curl -fs -o /dev/null "$bare_url"; then
        break
    fi
    sleep 0.1
done
echo "hub:  $(curl -fsS -H "Authorization: Bearer $key" "$hub_url")"
echo "bare: $(curl -fsS "$bare_url")"

# Warm both up (connections, caches, page cache) before measuring.
wrk -t"$THREADS" -c"$CONNECTIONS" -d2s -H "Authorization: Bearer $key" "$hub_url" >/dev/null
wrk -t"$THREADS" -c"$CONNECTIONS" -d2s "$bare_url" >/dev/null

run() { # name, url, extra wrk args…
    local name="$1" url="$2"
    shift 2
    local out
    out="$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url")"
    local rps p50 p99 errors
    rps="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
    p50="$(awk '$1 == "50%" {print $2}' <<<"$out")"
    p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
    errors="$(grep -E 'Non-2xx|Socket errors' <<<"$out" || true)"
    printf '%-6s %10.0f req/s   p50 %-9s p99 %-9s %s\n' "$name" "$rps" "$p50" "$p99" "$errors"
    echo "$rps" >>"$data/$name.rps"
    if [ -n "$errors" ]; then
        echo "$name answered errors; the figures are not valid" >&2
        exit 1
    fi
}

echo
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency, $ROUNDS round(s); $(nproc) cores, $(lscpu | sed -n 's/^Model name:[[:space:]]*//p')"
for _ in $(seq 1 "$ROUNDS"); do
    run bare "$bare_url"
    run hub "$hub_url" -H "Authorization: Bearer $key"
done
echo
echo "hub requests by status (from /metrics):"
curl -fsS "http://127.0.0.1:$HUB_PORT/metrics" | grep '^omnihub_http_requests_total' | grep 'channels/{id}' || true
# For reference, not in the ratio: an authenticated read that queries SQLite on
# every request (keys are not cached; channels are, see docs/benchmarks.md).
run hub-db "http://127.0.0.1:$HUB_PORT/v1/keys/$key_id" -H "Authorization: Bearer $key"
bare_mean="$(awk '{s+=$1} END {print s/NR}' "$data/bare.rps")"
hub_mean="$(awk '{s+=$1} END {print s/NR}' "$data/hub.rps")"
echo
awk -v b="$bare_mean" -v h="$hub_mean" 'BEGIN {
    printf "bare mean %.0f req/s, hub mean %.0f req/s: authenticated read = %.1f %% of bare (target >= 70 %%)\n", b, h, 100 * h / b
}'
