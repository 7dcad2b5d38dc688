#!/usr/bin/env bash
# Runs Flasher's main job on the embedded defaults: a simulated fleet (flasher-sim: Redfish BMCs
# on loopback addresses, simulated hosts each with a flasher-agent, a firmware image server, the
# inventory file it writes) and flasher-server on SQLite with that file inventory. It is a local
# trial: plaintext on loopback, agents trusted by header (`make demo` shows the TLS set-up).
# Ctrl-C stops everything. State lives in var/run/.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
RUN=${RUN_DIR:-var/run}
N=${FLEET_SIZE:-8}
HOSTS=${FLEET_HOSTS:-2}
GRPC=${FLASHER_GRPC_LISTEN:-127.0.0.1:9090}
mkdir -p "$RUN"
# Everything the banner below and the README's tour use (`make run` builds them all).
for tool in flasher-sim flasher-server flasherctl grpcurl; do
  [ -x "$BIN/$tool" ] || { echo "$BIN/$tool is missing: start with \`make run\`" >&2; exit 1; }
done

"$BIN/flasher-sim" -n "$N" -hosts "$HOSTS" -server "$GRPC" -inventory "$RUN/inventory.yaml" -state-dir "$RUN/sim" \
  -images-addr 127.0.0.1:8480 -control-addr 127.0.0.1:8481 -host-update-delay 2s \
  -install-duration 3s -apply-duration 1s -bmc-reboot-duration 3s >"$RUN/sim.log" 2>&1 &
sim=$!
trap 'kill $sim 2>/dev/null; wait $sim 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  [ -s "$RUN/inventory.yaml" ] && break
  kill -0 $sim 2>/dev/null || { cat "$RUN/sim.log"; exit 1; }
  sleep 0.1
done
echo "flasher-sim: $N simulated BMCs and $HOSTS simulated hosts with agents (log $RUN/sim.log, inventory $RUN/inventory.yaml)"
cat <<TXT
flasher-server: gRPC on $GRPC (plaintext, local only). In another terminal:
  bin/grpcurl -plaintext $GRPC list
  bin/grpcurl -plaintext -d '{}' $GRPC flasher.v1.InventoryService/ListServers
  bin/grpcurl -plaintext -d '{"task":{"server_id":"sim-0001","method":"METHOD_OUT_OF_BAND","resolve":{}}}' $GRPC flasher.v1.TaskService/PlanTask
See README.md for the full walk-through.
TXT
"$BIN/flasher-server" -insecure -grpc-listen "$GRPC" -data-dir "$RUN" -inventory "$RUN/inventory.yaml" \
  -artifact-schemes http -artifact-hosts 127.0.0.1:8480 -bmc-poll-interval 1s \
  -allow-unauthenticated-agents -agent-connect-timeout 1m "$@"
