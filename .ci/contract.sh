#!/usr/bin/env bash
# The contract run: schemathesis (pinned with every dependency in
# .ci/contract/requirements.txt) against a fresh `omnihub serve` on SQLite,
# every operation of the served OpenAPI document, with its conformance checks
# (status codes, content types, response headers and schemas, positive and
# negative data acceptance, …). Required by .ci/run at 0 failures. Fixed seed
# and a bounded number of examples, so a failure reproduces and the run stays
# short enough for CI.
#
#   bash .ci/contract.sh                 # SCHEMATHESIS_EXAMPLES=… to go deeper
#
# Not run: GET /v1/stream (an endless event stream; tests/api/stream.rs and
# the browser test cover it). Settings and hooks: .ci/contract/ (why each one).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD

SCHEMATHESIS_VERSION=4.32.5
SEED="${SCHEMATHESIS_SEED:-20261202}"
EXAMPLES="${SCHEMATHESIS_EXAMPLES:-20}"

step() { printf '\n==> %s\n' "$*"; }

step "schemathesis ${SCHEMATHESIS_VERSION} (pinned with its dependencies: .ci/contract/requirements.txt; in target/contract-venv)"
venv="$root/target/contract-venv"
requirements="$root/.ci/contract/requirements.txt"
if ! cmp -s "$requirements" "$venv/requirements.txt" 2>/dev/null \
    || ! "$venv/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/requirements.txt"
fi
"$venv/bin/st" --version

step "omnihub debug binary"
# OMNIHUB_BIN: a binary built already (.ci/run passes the one `cargo test` built).
if [ -z "${OMNIHUB_BIN:-}" ]; then
    export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}"
    cargo build -p omnihub --bin omnihub
    OMNIHUB_BIN="$root/target/debug/omnihub"
fi
bin="$OMNIHUB_BIN"

work=$(mktemp -d)
hub_pid=""
cleanup() {
    if [ -n "$hub_pid" ]; then
        kill "$hub_pid" 2>/dev/null || true
        # A graceful stop, or after 10 s a forced one (the run is over).
        for _ in $(seq 1 50); do kill -0 "$hub_pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$hub_pid" 2>/dev/null || true
        wait "$hub_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

step "a fresh hub on SQLite"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The failed-authentication throttle is off: schemathesis sends thousands of
# requests without a key from one address on purpose (the throttle's 429 is
# documented on every operation and tested in tests/api). Webhooks may point
# anywhere: generated URLs name private and unspecified addresses, which the
# destination guard refuses by configuration (tested in tests/api). A short
# shutdown grace: the deliveries in flight to those made-up endpoints would
# otherwise hold the stop for the whole default grace period.
"$bin" --data-dir "$work/data" --listen "127.0.0.1:$port" --log-level warn \
    --auth-failures-per-minute 0 --webhook-allowed-networks 0.0.0.0/0,::/0 \
    --shutdown-grace-secs 2 \
    serve > "$work/serve.log" 2>&1 &
hub_pid=$!
for _ in $(seq 1 100); do
    grep -qs 'listening on' "$work/serve.log" && break
    kill -0 "$hub_pid" 2>/dev/null || { cat "$work/serve.log"; exit 1; }
    sleep 0.1
done
OMNIHUB_CONTRACT_KEY=$("$bin" --data-dir "$work/data" keys create --scopes admin 2>/dev/null)
export OMNIHUB_CONTRACT_KEY
base="http://127.0.0.1:$port"

step "schemathesis run (seed ${SEED}, at most ${EXAMPLES} examples per operation)"
status=0
(cd "$root" && "$venv/bin/st" --config-file .ci/contract/schemathesis.toml run "$base/v1/openapi.json" \
    --url "$base" \
    --checks all \
    --phases examples,coverage,fuzzing \
    --exclude-path /v1/stream \
    --max-examples "$EXAMPLES" \
    --seed "$SEED" \
    --workers 2 \
    --request-timeout 10 \
    --report junit --report-dir "$root/target/contract-report") \
    || status=$?
if grep -qiE 'panicked|status=5[0-9][0-9]' "$work/serve.log"; then
    echo "the hub logged server errors:"; grep -iE 'panicked|status=5' "$work/serve.log" | head -20
    status=1
fi
exit "$status"
