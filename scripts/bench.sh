#!/usr/bin/env bash
# Runs one benchmark against a fresh server and prints loadgen's JSON line.
#
#   scripts/bench.sh native|legacy|bare|python [loadgen flags...]
#
# native and legacy start `cmd-chat serve --allow-legacy` (no password stretch,
# so logins are SRP only; native members are sealed exactly as in a native-only
# room), bare starts examples/bare_relay, python starts the original-protocol
# Python server (tests/python/legacy_server.py). Each server is stopped by its
# process id afterwards. Build first: cargo build --release --examples --bins
set -euo pipefail
cd "$(dirname "$0")/.."
kind=$1; shift
bin=target/release
# Below the kernel's ephemeral range (32768 and up by default): a port left
# in use by the previous run's thousands of client sockets cannot collide.
port=$((10000 + RANDOM % 20000))
log=$(mktemp)
extra=()
case $kind in
  native|legacy)
    # NATIVE_ONLY=1: a native-only room with the lightest Argon2id stretch
    # (8 MiB); loadgen's lean clients stretch once and reuse it.
    room=(--allow-legacy)
    [ -n "${NATIVE_ONLY:-}" ] && room=(--kdf-memory 8)
    "$bin/cmd-chat" serve 127.0.0.1 "$port" --password pw "${room[@]}" \
        --max-users 12000 --max-pending 1000 --rate 1000000 --history "${HISTORY:-1000}" \
        >/dev/null 2>"$log" &
    pid=$!
    [ "$kind" = legacy ] && extra=(--legacy) ;;
  bare)
    "$bin/examples/bare_relay" 127.0.0.1 "$port" >/dev/null 2>"$log" &
    pid=$!
    extra=(--bare) ;;
  python)
    portfile=$(mktemp -u)
    python3 tests/python/legacy_server.py "$portfile" pw >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 50); do [ -s "$portfile" ] && break; sleep 0.1; done
    port=$(cat "$portfile"); rm -f "$portfile"
    extra=(--legacy) ;;
  *) echo "usage: $0 native|legacy|bare|python [loadgen flags]" >&2; exit 2 ;;
esac
trap 'kill "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
sleep 0.5
if ! kill -0 "$pid" 2>/dev/null; then
    echo "the $kind server did not start:" >&2
    cat "$log" >&2
    exit 1
fi
"$bin/examples/loadgen" 127.0.0.1 "$port" pw "${extra[@]}" --server-pid "$pid" "$@" 2>/dev/null | tail -1
