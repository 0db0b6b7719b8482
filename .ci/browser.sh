#!/usr/bin/env bash
# The real browser SDK test: Segment's @segment/analytics-next (pinned in
# tests/browser/package-lock.json) on a page of another origin, in Debian's
# chromium driven by Playwright (playwright-core: it downloads no browser),
# against `target/debug/omnihub serve`. See tests/browser/sdk.test.mjs.
#
#   bash .ci/browser.sh            # builds the debug binary when missing
set -euo pipefail

cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "chromium (Debian package)"
if ! command -v chromium >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq chromium >/dev/null
fi
chromium --version

step "node packages (npm ci in tests/browser)"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

step "omnihub debug binary"
# OMNIHUB_BIN: a binary built already (.ci/run passes the one `cargo test` built).
if [ -z "${OMNIHUB_BIN:-}" ]; then
    export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}"
    cargo build -p omnihub --bin omnihub
    OMNIHUB_BIN="$PWD/target/debug/omnihub"
fi

step "Segment browser SDK in chromium"
OMNIHUB_BIN="$OMNIHUB_BIN" CHROMIUM="$(command -v chromium)" \
    node tests/browser/sdk.test.mjs
