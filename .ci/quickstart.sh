#!/usr/bin/env bash
# Runs docs/quickstart.md as written: extracts its ```sh blocks, in order,
# into one bash script and runs it against a fresh `omnihub serve` (the debug
# binary, target/debug/omnihub, as `omnihub` on PATH) in an empty directory.
# `curl` fails on any answer that is not 2xx (--fail-with-body), and the
# script stops at the first failing command.
#
#   bash .ci/quickstart.sh
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD

step() { printf '\n==> %s\n' "$*"; }

step "omnihub debug binary"
# OMNIHUB_BIN: a binary built already (.ci/run passes the one `cargo test` built).
if [ -z "${OMNIHUB_BIN:-}" ]; then
    export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}"
    cargo build -p omnihub --bin omnihub
    OMNIHUB_BIN="$PWD/target/debug/omnihub"
fi
command -v jq >/dev/null || { echo "jq is needed (apt-get install jq)"; exit 1; }

work=$(mktemp -d)
hub_pid=""
cleanup() {
    if [ -n "$hub_pid" ]; then kill "$hub_pid" 2>/dev/null || true; wait "$hub_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/bin" "$work/shop"
ln -s "$OMNIHUB_BIN" "$work/bin/omnihub"
export PATH="$work/bin:$PATH"

step "extract the sh blocks of docs/quickstart.md"
script="$work/quickstart.sh"
{
    echo 'set -euo pipefail'
    echo 'curl() { command curl --fail-with-body -sS "$@"; echo; }'
    awk '
        /^```sh[[:space:]]*$/ { inside = 1; block += 1; printf "echo \"--- block %d\"\n", block; next }
        /^```/ && inside     { inside = 0; next }
        inside               { print }
    ' docs/quickstart.md
} > "$script"
blocks=$(grep -c '^echo "--- block' "$script" || true)
echo "$blocks blocks"
[ "$blocks" -gt 0 ] || { echo "no sh blocks found"; exit 1; }

step "a fresh hub"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cd "$work/shop"
omnihub --listen "127.0.0.1:$port" --log-level warn serve > "$work/serve.log" 2>&1 &
hub_pid=$!
for _ in $(seq 1 100); do
    grep -q 'listening on' "$work/serve.log" && break
    kill -0 "$hub_pid" 2>/dev/null || { cat "$work/serve.log"; exit 1; }
    sleep 0.1
done
cat "$work/serve.log"

step "run the quickstart"
HUB="http://127.0.0.1:$port" bash "$script"
echo
echo "quickstart: all $blocks blocks ran"
