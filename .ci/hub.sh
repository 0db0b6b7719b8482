# Shared by the CI scripts that run the hub as its users do (.ci/contract.sh,
# .ci/clients.sh): a pinned Python venv, the omnihub binary, a fresh hub on
# SQLite in a temporary folder, and the check that it logged no server error.
# Source it after `cd` to the repository root; it sets `root`, `work` and a
# trap that stops the hub and removes `work`.

root=$PWD
work=$(mktemp -d)
hub_pid=""
stop_hub() {
    if [ -n "$hub_pid" ]; then
        kill "$hub_pid" 2>/dev/null || true
        # A graceful stop, or after 10 s a forced one (the run is over).
        for _ in $(seq 1 50); do kill -0 "$hub_pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$hub_pid" 2>/dev/null || true
        wait "$hub_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap stop_hub EXIT

step() { printf '\n==> %s\n' "$*"; }

# pinned_venv DIR REQUIREMENTS: (re)creates the venv when the pins changed.
pinned_venv() {
    local venv=$1 requirements=$2
    if ! cmp -s "$requirements" "$venv/requirements.txt" 2>/dev/null; then
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
        cp "$requirements" "$venv/requirements.txt"
    fi
}

# omnihub_bin: sets `bin`; OMNIHUB_BIN names a binary built already (.ci/run
# passes the one `cargo test` built), else the debug binary is built.
omnihub_bin() {
    step "omnihub debug binary"
    if [ -z "${OMNIHUB_BIN:-}" ]; then
        export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}"
        cargo build -p omnihub --bin omnihub
        OMNIHUB_BIN="$root/target/debug/omnihub"
    fi
    bin="$OMNIHUB_BIN"
}

# start_hub [SERVE FLAGS…]: a fresh hub on SQLite; sets `base` and `admin_key`.
start_hub() {
    step "a fresh hub on SQLite"
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$bin" --data-dir "$work/data" --listen "127.0.0.1:$port" --log-level warn "$@" \
        serve > "$work/serve.log" 2>&1 &
    hub_pid=$!
    for _ in $(seq 1 100); do
        grep -qs 'listening on' "$work/serve.log" && break
        kill -0 "$hub_pid" 2>/dev/null || { cat "$work/serve.log"; exit 1; }
        sleep 0.1
    done
    base="http://127.0.0.1:$port"
    admin_key=$("$bin" --data-dir "$work/data" keys create --scopes admin 2>/dev/null)
}

# hub_served_no_errors: fails when the hub logged a panic or a 5xx answer.
hub_served_no_errors() {
    if grep -qiE 'panicked|status=5[0-9][0-9]' "$work/serve.log"; then
        echo "the hub logged server errors:"; grep -iE 'panicked|status=5' "$work/serve.log" | head -20
        return 1
    fi
}
