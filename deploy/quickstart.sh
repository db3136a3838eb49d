#!/usr/bin/env bash
# Quickstart on a fresh Debian 12 machine: installs missing packages, builds, generates a
# throwaway CA + server certificate, starts dify-emulator over HTTPS on localhost:5001 and
# dify-gateway with config/quickstart.json on 127.0.0.1:8080, and prints ready-to-paste
# curl calls. Ctrl-C stops both.
# Environment: TOKEN_DELAY_MS (delay between streamed events, default 40).
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

# Starts a server in the background and waits for its "listening on" line.
start() {
    local log=$1
    shift
    "$@" > "$log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 100); do
        grep -q "listening on" "$log" 2>/dev/null && { head -n 1 "$log"; return 0; }
        kill -0 "${pids[-1]}" 2>/dev/null || { cat "$log"; exit 1; }
        sleep 0.1
    done
    echo "timed out waiting for $1"; cat "$log"; exit 1
}

start "$state/emulator.log" build/gateway/dify-emulator --listen 127.0.0.1:5001 \
    --tls-cert "$state/server.pem" --tls-key "$state/server.key" --token-delay-ms "${TOKEN_DELAY_MS:-40}"
start "$state/gateway.log" build/gateway/dify-gateway --config config/quickstart.json

cat <<'MSG'

dify-gateway is serving on http://127.0.0.1:8080 in front of dify-emulator (https://localhost:5001).
Tenant "demo" has the key gw-demo-key-0123456789; /v1 is its default app (chat), and
/apps/<app>/v1 selects chat, agent, chatflow, workflow or completion. Try:

  curl http://127.0.0.1:8080/v1/chat-messages \
    -H 'Authorization: Bearer gw-demo-key-0123456789' -H 'Content-Type: application/json' \
    -d '{"inputs": {}, "query": "What is the refund policy?", "response_mode": "blocking", "user": "user-123"}'

  curl -N http://127.0.0.1:8080/v1/chat-messages \
    -H 'Authorization: Bearer gw-demo-key-0123456789' -H 'Content-Type: application/json' \
    -d '{"inputs": {}, "query": "Explain SSE", "response_mode": "streaming", "user": "user-123"}'

  curl http://127.0.0.1:8080/apps/workflow/v1/workflows/run \
    -H 'Authorization: Bearer gw-demo-key-0123456789' -H 'Content-Type: application/json' \
    -d '{"inputs": {"topic": "heat pumps"}, "response_mode": "blocking", "user": "user-123"}'

MSG
echo "What the emulator saw (Dify keys, namespaced users):  curl --cacert $state/ca.pem https://localhost:5001/_emulator/stats"
echo "Logs: $state/gateway.log, $state/emulator.log. Press Ctrl-C to stop."
wait "${pids[@]}"
