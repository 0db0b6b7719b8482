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
. .ci/hub.sh
clients="$root/tests/clients"
document="$root/docs/openapi.json"

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
pinned_venv "$venv" "$clients/requirements.txt"
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

omnihub_bin
start_hub

step "the quickstart journey through the generated Python client"
PYTHONPATH="$work" "$venv/bin/python" "$clients/journey.py" "$base" "$admin_key"
hub_served_no_errors
