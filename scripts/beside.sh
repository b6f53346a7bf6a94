#!/usr/bin/env bash
# Chat latency with and without logins at full rate beside it.
#
#   scripts/beside.sh [rounds]
#
# One server; loadgen A sends 1,000 messages/s into 100 members for 15 s,
# alone, then again while loadgen B logs in and out at full rate (16 in
# flight) from 127.0.0.2 at nice 19. Prints A's and B's JSON lines.
# Build first: cargo build --release --examples --bins
# SERVER=path runs another build of cmd-chat as the server (A/B runs).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release
port=$((10000 + RANDOM % 20000))
"${SERVER:-$bin/cmd-chat}" serve 127.0.0.1 "$port" --password pw --allow-legacy \
    --max-users 12000 --max-pending 1000 --rate 1000000 >/dev/null 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
sleep 0.5
chat() {
    "$bin/examples/loadgen" 127.0.0.1 "$port" pw --server-pid "$pid" \
        --receivers 100 --senders 4 --messages 15000 --rate 1000 2>/dev/null | tail -1
}
for round in $(seq "${1:-2}"); do
    echo "chat alone, round $round: $(chat)"
    nice -n 19 "$bin/examples/loadgen" 127.0.0.1 "$port" pw --server-pid "$pid" \
        --handshakes 20000 --concurrency 16 --timeout 17 --name-prefix hs \
        --bind 127.0.0.2 2>/dev/null | tail -1 > "${TMPDIR:-/tmp}/beside-logins.$$" &
    logins=$!
    sleep 0.5
    echo "chat beside logins, round $round: $(chat)"
    wait "$logins"
    echo "logins, round $round: $(cat "${TMPDIR:-/tmp}/beside-logins.$$")"
    rm -f "${TMPDIR:-/tmp}/beside-logins.$$"
done
