#!/usr/bin/env bash
# Quickstart on a fresh Debian 12 machine: installs missing packages, builds, generates a
# throwaway CA + server certificate, starts dify-emulator over HTTPS on 127.0.0.1:5001,
# and prints ready-to-paste curl calls. Ctrl-C stops everything.
# Environment: EMULATOR_PORT (default 5001), TOKEN_DELAY_MS (default 40).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
deploy/install_deps.sh build

export CCACHE_DIR=${CCACHE_DIR:-$root/.ccache}
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target dify-emulator dify-gateway

state="$root/.quickstart"
[ -f "$state/server.pem" ] || deploy/make_certs.sh "$state"
export QUICKSTART_CA_FILE="$state/ca.pem"
port=${EMULATOR_PORT:-5001}

pids=()
stop() {
    trap - INT TERM EXIT
    echo
    echo "stopping..."
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "stopped."
}
trap stop INT TERM EXIT

build/gateway/dify-emulator --listen "127.0.0.1:$port" --tls-cert "$state/server.pem" --tls-key "$state/server.key" \
    --token-delay-ms "${TOKEN_DELAY_MS:-40}" > "$state/emulator.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    grep -q "listening on" "$state/emulator.log" 2>/dev/null && break
    kill -0 "${pids[0]}" 2>/dev/null || { cat "$state/emulator.log"; exit 1; }
    sleep 0.1
done
cat "$state/emulator.log"

base="https://localhost:$port"
cat <<MSG

dify-emulator is serving Dify's Service API at $base/v1 (log: $state/emulator.log).
Try it (the built-in chat app's key is app-emuchat00000000000000001):

  curl --cacert $state/ca.pem $base/v1/chat-messages \\
    -H 'Authorization: Bearer app-emuchat00000000000000001' -H 'Content-Type: application/json' \\
    -d '{"inputs": {}, "query": "What is the refund policy?", "response_mode": "blocking", "user": "user-123"}'

  curl -N --cacert $state/ca.pem $base/v1/chat-messages \\
    -H 'Authorization: Bearer app-emuchat00000000000000001' -H 'Content-Type: application/json' \\
    -d '{"inputs": {}, "query": "Explain SSE", "response_mode": "streaming", "user": "user-123"}'

  curl --cacert $state/ca.pem $base/_emulator/stats

Validate the gateway configuration that fronts it:

  QUICKSTART_CA_FILE=$state/ca.pem build/gateway/dify-gateway --check-config config/quickstart.json

Press Ctrl-C to stop.
MSG
wait "${pids[@]}"
