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
# ROUNDS (2: bare, hub, bare, hub … averaged), HUB_PORT (18080), BARE_PORT (18090),
# HUB_BIN (target/release/omnihub).
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
# HUB_BIN measures another build of the hub, e.g. one of an older commit.
hub_bin="${HUB_BIN:-target/release/omnihub}"
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

# CPU time (user + system, clock ticks) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tick_us=$((1000000 / $(getconf CLK_TCK)))

run() { # name, server pid, url, extra wrk args…
    local name="$1" pid="$2" url="$3"
    shift 3
    local out before after
    before="$(cpu_ticks "$pid")"
    out="$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url")"
    after="$(cpu_ticks "$pid")"
    local rps p50 p99 errors requests cpu_us
    rps="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
    requests="$(awk '/requests in/ {print $1}' <<<"$out")"
    # Server CPU per request: far less sensitive than req/s to other load on the machine.
    cpu_us="$(awk -v t="$((after - before))" -v us="$tick_us" -v n="$requests" 'BEGIN {printf "%.1f", t * us / n}')"
    p50="$(awk '$1 == "50%" {print $2}' <<<"$out")"
    p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
    errors="$(grep -E 'Non-2xx|Socket errors' <<<"$out" || true)"
    printf '%-6s %10.0f req/s   p50 %-9s p99 %-9s server CPU %6s us/req %s\n' "$name" "$rps" "$p50" "$p99" "$cpu_us" "$errors"
    echo "$rps" >>"$data/$name.rps"
    echo "$cpu_us" >>"$data/$name.cpu"
    if [ -n "$errors" ]; then
        echo "$name answered errors; the figures are not valid" >&2
        exit 1
    fi
}

echo
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency, $ROUNDS round(s); $(nproc) cores, $(lscpu | sed -n 's/^Model name:[[:space:]]*//p')"
for _ in $(seq 1 "$ROUNDS"); do
    run bare "${pids[1]}" "$bare_url"
    run hub "${pids[0]}" "$hub_url" -H "Authorization: Bearer $key"
done
echo
echo "hub requests by status (from /metrics):"
curl -fsS "http://127.0.0.1:$HUB_PORT/metrics" | grep '^omnihub_http_requests_total' | grep 'channels/{id}' || true
# For reference, not in the ratio: an authenticated read that queries SQLite on
# every request (keys are not cached; channels are, see docs/benchmarks.md).
run hub-db "${pids[0]}" "http://127.0.0.1:$HUB_PORT/v1/keys/$key_id" -H "Authorization: Bearer $key"
bare_mean="$(awk '{s+=$1} END {print s/NR}' "$data/bare.rps")"
hub_mean="$(awk '{s+=$1} END {print s/NR}' "$data/hub.rps")"
echo
bare_cpu="$(awk '{s+=$1} END {print s/NR}' "$data/bare.cpu")"
hub_cpu="$(awk '{s+=$1} END {print s/NR}' "$data/hub.cpu")"
awk -v b="$bare_mean" -v h="$hub_mean" -v bc="$bare_cpu" -v hc="$hub_cpu" 'BEGIN {
    printf "bare mean %.0f req/s, hub mean %.0f req/s: authenticated read = %.1f %% of bare (target >= 70 %%)\n", b, h, 100 * h / b
    printf "server CPU per request: bare %.1f us, hub %.1f us: bare/hub = %.1f %%\n", bc, hc, 100 * bc / hc
}'
