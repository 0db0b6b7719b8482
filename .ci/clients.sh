#!/usr/bin/env bash
# Generated clients work: from the committed docs/openapi.json,
#   * openapi-python-client (pinned, tests/clients/requirements.txt) generates a
#     Python client with 0 warnings, and that client runs the quickstart journey
#     (tests/clients/journey.py) against a fresh `omnihub serve` on SQLite;
#   * openapi-typescript (pinned, tests/clients/package-lock.json) generates
#     TypeScript types with 0 warnings, and `tsc --strict` type-checks
#     tests/clients/journey.ts, the same journey written against those types.
#
#   bash .ci/clients.sh            # builds the debug binary when OMNIHUB_BIN is unset
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
clients="$root/tests/clients"
document="$root/docs/openapi.json"

step() { printf '\n==> %s\n' "$*"; }

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

# Fails when a generator said more than its progress lines: a warning (its
# exit status says only whether it produced something).
no_warnings() {
    local name=$1 log=$2
    # Every line but the generators' own progress lines ("Generating <path>",
    # "✨ openapi-typescript <version>", "🚀 <in> → <out>") is a problem.
    if [ -n "$(grep -vE '^(Generating |✨ |🚀 )' "$log" || true)" ]; then
        echo "$name reported problems:"
        cat "$log"
        return 1
    fi
    echo "$name: 0 warnings"
}

step "openapi-python-client (pinned, in target/clients-venv)"
venv="$root/target/clients-venv"
if ! cmp -s "$clients/requirements.txt" "$venv/requirements.txt" 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$clients/requirements.txt"
    cp "$clients/requirements.txt" "$venv/requirements.txt"
fi
"$venv/bin/openapi-python-client" --version

step "Python client from docs/openapi.json"
# ruff (pinned with the generator) formats the generated code; it must be on PATH.
PATH="$venv/bin:$PATH" "$venv/bin/openapi-python-client" generate \
    --path "$document" --config "$clients/python-client.yaml" \
    --output-path "$work/omnihub_client" --meta none > "$work/python.log" 2>&1 \
    || { cat "$work/python.log"; exit 1; }
no_warnings openapi-python-client "$work/python.log"

step "openapi-typescript and typescript (npm ci in tests/clients)"
(cd "$clients" && npm ci --no-audit --no-fund --loglevel=error)

step "TypeScript types from docs/openapi.json, tsc --strict"
(cd "$clients" && npx --no-install openapi-typescript "$document" -o "$work/ts/omnihub.d.ts") \
    > "$work/typescript.log" 2>&1 || { cat "$work/typescript.log"; exit 1; }
no_warnings openapi-typescript "$work/typescript.log"
cp "$clients/journey.ts" "$work/ts/journey.ts"
"$clients/node_modules/.bin/tsc" --strict --noEmit --target es2022 --module es2022 \
    --moduleResolution bundler --skipLibCheck false "$work/ts/journey.ts"
echo "tsc --strict: ok"

step "omnihub debug binary"
# OMNIHUB_BIN: a binary built already (.ci/run passes the one `cargo test` built).
if [ -z "${OMNIHUB_BIN:-}" ]; then
    export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}"
    cargo build -p omnihub --bin omnihub
    OMNIHUB_BIN="$root/target/debug/omnihub"
fi
bin="$OMNIHUB_BIN"

step "a fresh hub on SQLite"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" --data-dir "$work/data" --listen "127.0.0.1:$port" --log-level warn serve > "$work/serve.log" 2>&1 &
hub_pid=$!
for _ in $(seq 1 100); do
    grep -qs 'listening on' "$work/serve.log" && break
    kill -0 "$hub_pid" 2>/dev/null || { cat "$work/serve.log"; exit 1; }
    sleep 0.1
done
admin_key=$("$bin" --data-dir "$work/data" keys create --scopes admin 2>/dev/null)

step "the quickstart journey through the generated Python client"
PYTHONPATH="$work" "$venv/bin/python" "$clients/journey.py" "http://127.0.0.1:$port" "$admin_key"
if grep -qiE 'panicked|status=5[0-9][0-9]' "$work/serve.log"; then
    echo "the hub logged server errors:"; grep -iE 'panicked|status=5' "$work/serve.log" | head -20
    exit 1
fi
