#!/usr/bin/env bash
# The Flasher demo (`make demo`): builds everything, starts a simulated fleet (flasher-sim: Dell
# and OpenBMC Redfish BMCs on loopback addresses, plus simulated hosts each running its own
# flasher-agent over stand-in vendor tools) and flasher-server on the embedded defaults (SQLite,
# the generated file inventory), then walks through flasherctl: a plan, a refused plan (a
# dependency cycle), an out-of-band firmware-set install and an in-band NIC install watched
# live, and a failure injected on one BMC. Everything it starts is stopped on exit.
#
# Non-interactive mode (CI=true, DEMO_ASSERT=1, or stdout not a terminal) asserts every outcome
# through flasherctl's exit codes and exits non-zero on any surprise. See docs/demo.md.
#
# Settings (environment): BIN (binaries, default bin), DEMO_DIR (state, default var/demo, wiped
# first), DEMO_KEEP=1 (keep DEMO_DIR), DEMO_SKIP_BUILD=1, DEMO_GRPC, DEMO_HTTP, DEMO_IMAGES,
# DEMO_CONTROL (listen addresses), DEMO_FIRST_IP (first BMC address), DEMO_BMCS, DEMO_HOSTS.
# The defaults differ from `make run`'s, so the demo runs beside a running fleet.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

BIN=${BIN:-bin}
DIR=${DEMO_DIR:-var/demo}
GRPC=${DEMO_GRPC:-127.0.0.1:9190}
HTTP=${DEMO_HTTP:-127.0.0.1:9191}
IMAGES=${DEMO_IMAGES:-127.0.0.1:8580}
CONTROL=${DEMO_CONTROL:-127.0.0.1:8581}
FIRST_IP=${DEMO_FIRST_IP:-127.0.2.1}
BMCS=${DEMO_BMCS:-8}
HOSTS=${DEMO_HOSTS:-2}
(( BMCS >= 7 && HOSTS >= 2 )) || { echo "demo: needs DEMO_BMCS >= 7 and DEMO_HOSTS >= 2" >&2; exit 2; }

assert=0
if [[ ${CI:-} == true || ${DEMO_ASSERT:-} == 1 || ! -t 1 ]]; then assert=1; fi

if [[ -t 1 ]]; then
  B=$'\e[1m' DIM=$'\e[2m' GRN=$'\e[32m' RED=$'\e[31m' R=$'\e[0m'
else
  B='' DIM='' GRN='' RED='' R=''
fi
step=0
timings=() mark=$SECONDS
section() {
  ((step == 0)) || timings+=("$step:$((SECONDS - mark))s")
  mark=$SECONDS step=$((step + 1))
  printf '\n%s== %d. %s ==%s\n' "$B" "$step" "$1" "$R"
}
say() { printf '%s%s%s\n' "$DIM" "$*" "$R"; }
surprises=0
# expect CODE WHAT CMD...: runs a command shown as typed, and checks its exit code.
expect() {
  local want=$1 what=$2
  shift 2
  local shown=("$(basename "$1")" "${@:2}")
  printf '%s$ %s%s\n' "$B" "${shown[*]}" "$R"
  local rc=0
  "$@" || rc=$?
  if [[ $rc == "$want" ]]; then
    printf '%s✓ %s (exit %d, as expected)%s\n' "$GRN" "$what" "$rc" "$R"
  else
    printf '%s✗ %s: exit %d, expected %d%s\n' "$RED" "$what" "$rc" "$want" "$R"
    surprises=$((surprises + 1))
    if ((assert)); then exit 1; fi
  fi
}
die() { printf '%sdemo: %s%s\n' "$RED" "$*" "$R" >&2; exit 1; }

# http METHOD URL [BODY]: a tiny HTTP client for the sim's control API (curl when present,
# else bash's /dev/tcp, so a fresh machine needs nothing more).
http() {
  local method=$1 url=$2 body=${3:-}
  if command -v curl >/dev/null; then
    local args=(-fsS -X "$method")
    [[ -z $body ]] || args+=(-H 'Content-Type: application/json' -d "$body")
    curl "${args[@]}" "$url"
    return
  fi
  local hostport=${url#http://}; hostport=${hostport%%/*}
  local path=/${url#http://*/}
  exec 3<>"/dev/tcp/${hostport%:*}/${hostport#*:}"
  printf '%s %s HTTP/1.0\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' \
    "$method" "$path" "$hostport" "${#body}" "$body" >&3
  local status
  read -r _ status _ <&3
  cat <&3 >/dev/null
  exec 3<&-
  [[ $status == 2* ]]
}

# --- build ------------------------------------------------------------------------------------
if [[ ${DEMO_SKIP_BUILD:-} != 1 ]]; then
  section "Build"
  binabs=$(mkdir -p "$BIN" && cd "$BIN" && pwd)
  make --no-print-directory build BIN="$binabs"
  # The stand-in vendor tools of the simulated hosts (sim/hosttools).
  CGO_ENABLED=0 go build -o "$BIN/flasher-hosttool" ./sim/hosttools/cmd/flasher-hosttool
fi
for b in flasher-sim flasher-server flasherctl flasher-agent flasher-hosttool; do
  [[ -x $BIN/$b ]] || die "$BIN/$b is missing: run without DEMO_SKIP_BUILD"
done

# --- start ------------------------------------------------------------------------------------
rm -rf "$DIR"
mkdir -p "$DIR"
pids=()
cleanup() {
  local rc=$?
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if ((rc != 0 && rc != 130)); then
    # A failed run keeps its state and shows the end of every log, for CI.
    for log in "$DIR"/server.log "$DIR"/sim.log "$DIR"/sim/hosts/*/agent.log; do
      [[ -f $log ]] || continue
      printf '\n--- last lines of %s\n' "$log" >&2
      tail -n 25 "$log" >&2
    done
    printf '\ndemo failed (exit %d); state and logs kept in %s\n' "$rc" "$DIR" >&2
    DEMO_KEEP=1
  fi
  if [[ ${DEMO_KEEP:-} != 1 ]]; then rm -rf "$DIR"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

section "Start a simulated fleet and flasher-server"
# Security, set up the way an operator would: a Flasher CA, the server's certificate, one
# client certificate per agent naming its server id, and an operator token with the scopes the
# tour needs. DEMO_INSECURE=1 runs the plaintext lab mode instead (agents trusted by header).
# flasherctl reads its server, CA and token from a config file, as an operator's would.
export FLASHER_CTL_CONFIG=$DIR/ctl.yaml
echo "server: $GRPC" >"$FLASHER_CTL_CONFIG"
CTL=("$BIN/flasherctl")
GRPCURL=(bin/grpcurl -plaintext)
SIM_SEC=() SRV_SEC=()
if [[ ${DEMO_INSECURE:-} == 1 ]]; then
  SRV_SEC=(-insecure -allow-unauthenticated-agents)
  security="INSECURE lab mode: plaintext on loopback, agents trusted by their x-flasher-server-id header"
else
  CA=$DIR/ca
  "$BIN/flasher-server" ca init --dir "$CA" >/dev/null
  "$BIN/flasher-server" ca issue-server --dir "$CA" --ip "${GRPC%:*}" --dns localhost \
    --cert "$CA/server.crt" --key "$CA/server.key" >/dev/null
  mkdir -p "$DIR/agents"
  for ((i = 1; i <= HOSTS; i++)); do
    id=$(printf 'host-%04d' "$i")
    "$BIN/flasher-server" ca issue-agent --dir "$CA" --server-id "$id" \
      --cert "$DIR/agents/$id.crt" --key "$DIR/agents/$id.key" >/dev/null
  done
  "$BIN/flasher-server" ca token --name demo-operator \
    --scopes tasks:read,tasks:write,tasks:cancel,inventory:read,agents:read,audit:read >"$DIR/token.out"
  awk 'f {print; exit} /^token \(shown once/ {f=1}' "$DIR/token.out" >"$DIR/token"
  { echo "tokens:"; awk 'f {print} /^add this entry under tokens:/ {f=1}' "$DIR/token.out"; } >"$DIR/tokens.yaml"
  rm "$DIR/token.out"
  chmod 600 "$DIR/token" "$DIR/tokens.yaml"
  [[ -s $DIR/token ]] || die "no token generated"
  SIM_SEC=(-agent-tls-ca "$CA/ca.crt" -agent-cert-dir "$DIR/agents")
  SRV_SEC=(-tls-cert "$CA/server.crt" -tls-key "$CA/server.key" -ca-file "$CA/ca.crt" -token-file "$DIR/tokens.yaml")
  printf 'ca: ca/ca.crt\ntoken_file: token\n' >>"$FLASHER_CTL_CONFIG"
  GRPCURL=(bin/grpcurl -cacert "$CA/ca.crt" -H "'authorization: Bearer \$(cat $DIR/token)'")
  security="TLS with a fresh Flasher CA ($CA), agents authenticated by client certificates naming their server, flasherctl by a bearer token ($DIR/token)"
fi

"$BIN/flasher-sim" -n "$BMCS" -hosts "$HOSTS" -first-ip "$FIRST_IP" -inventory "$DIR/inventory.yaml" \
  -state-dir "$DIR/sim" -images-addr "$IMAGES" -control-addr "$CONTROL" -server "$GRPC" \
  -install-duration 2s -apply-duration 1s -bmc-reboot-delay 200ms -bmc-reboot-duration 2s \
  -agent-heartbeat 2s -host-update-delay 3s "${SIM_SEC[@]}" >"$DIR/sim.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do
  [[ -s $DIR/inventory.yaml ]] && break
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$DIR/sim.log"; die "flasher-sim did not start"; }
  sleep 0.1
done
[[ -s $DIR/inventory.yaml ]] || die "flasher-sim wrote no inventory in 30s (log $DIR/sim.log)"
grep -v -e '^flasher-sim: host' -e '^  host-' "$DIR/sim.log" | sed 's/^/  /'

"$BIN/flasher-server" -grpc-listen "$GRPC" -http-listen "$HTTP" -data-dir "$DIR/server" -bmc-poll-interval 1s \
  -inventory "$DIR/inventory.yaml" -artifact-schemes http -artifact-hosts "$IMAGES" \
  -agent-connect-timeout 60s "${SRV_SEC[@]}" >"$DIR/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do
  "${CTL[@]}" --timeout 1s inventory sets >/dev/null 2>&1 && break
  kill -0 "${pids[1]}" 2>/dev/null || { cat "$DIR/server.log"; die "flasher-server did not start"; }
  sleep 0.1
done
"${CTL[@]}" --timeout 1s inventory sets >/dev/null 2>&1 || die "flasher-server not ready in 30s (log $DIR/server.log)"
echo "  flasher-server: gRPC $GRPC (SQLite in $DIR/server, inventory $DIR/inventory.yaml)"
echo "  security: $security"
connected() { "${CTL[@]}" --timeout 1s agents 2>/dev/null | grep -c '^host-' || true; }
for _ in $(seq 300); do
  (($(connected) >= HOSTS)) && break
  sleep 0.1
done
(($(connected) >= HOSTS)) || die "agents did not connect in 30s (logs $DIR/sim/hosts/*/agent.log)"
echo "  $HOSTS simulated hosts, each with its own flasher-agent:"
grep '^  host-' "$DIR/sim.log" | sed -e 's/, agent pid [0-9]*//' -e 's/ (log .*//' -e 's/^/  /'

# --- the tour ---------------------------------------------------------------------------------
section "The fleet as Flasher sees it"
expect 0 "servers listed" "${CTL[@]}" inventory servers
expect 0 "agents listed" "${CTL[@]}" agents

section "Plan: what --resolve would install on a Dell R6515 (dry run)"
say "The server's BMC and BIOS are behind the firmware set labelled for its vendor and model;"
say "NIC and drive firmware install in-band, so an out-of-band plan skips them, and says why."
expect 0 "plan shown" "${CTL[@]}" plan --server sim-0001 --resolve

section "A refused plan: a dependency cycle"
say "Set dell-r6515-test-cycle holds iDRAC 7.10 (needs BIOS >= 2.20.0) and BIOS 2.20.0 (needs"
say "iDRAC >= 7.10). No order satisfies both, so the planner refuses before touching anything."
expect 3 "plan refused with DEPENDENCY_CYCLE" "${CTL[@]}" plan --server sim-0001 --set dell-r6515-test-cycle

section "Out-of-band: install a firmware set through an OpenBMC BMC, watched live"
say "flasher-server uploads each image to the BMC (bmclib over Redfish), polls the BMC's task,"
say "powers the host off for the BIOS, and re-reads every version to verify."
expect 0 "out-of-band install succeeded" "${CTL[@]}" task create --server sim-0002 --resolve --watch

section "In-band: a NIC update applied by the host's agent, watched live"
say "host-0001 is a simulated Supermicro X11DPH-T. Its flasher-agent downloads the image from the"
say "server's artifact cache, verifies it, and runs ironlib, which runs (stand-in) mlxup."
expect 0 "in-band NIC install succeeded" "${CTL[@]}" task create --server host-0001 --method inband \
  --set host-supermicro-x11dph-t-nic --watch
nic=$("$DIR/sim/hosts/host-0001/host/bin/mlxup" --query 2>/dev/null | awk '$1 == "FW" {print $2; exit}' || true)
echo "  mlxup on host-0001 now reports NIC firmware ${nic:-?}"
say "host-0002 is a simulated Dell R6515: the same task shape runs a Dell update package."
expect 0 "in-band Dell NIC install succeeded" "${CTL[@]}" task create --server host-0002 --method inband \
  --set host-dell-r6515-nic --watch

section "A failure injected on one BMC"
say "The simulator's control API makes sim-0007's next install task end in Exception, as a BMC"
say "rejecting a bad image would. Flasher stops at the first failure and says what happened."
fault='{"kind":"exception","count":1,"message":"Firmware image verification failed: signature mismatch (injected)"}'
printf "%s$ curl -X PUT http://%s/v1/bmcs/sim-0007/faults/install -d '%s'%s\n" "$B" "$CONTROL" "$fault" "$R"
http PUT "http://$CONTROL/v1/bmcs/sim-0007/faults/install" "$fault" || die "fault injection failed"
expect 10 "install failed as injected" "${CTL[@]}" task create --server sim-0007 --resolve --watch
http DELETE "http://$CONTROL/v1/bmcs/sim-0007/faults" >/dev/null || true

section "All tasks, and who asked for them"
expect 0 "tasks listed" "${CTL[@]}" task list
expect 0 "audit trail shown" "${CTL[@]}" audit --server sim-0007

elapsed=$((SECONDS - start))
echo
if ((surprises)); then
  printf '%s%d step(s) did not go as expected%s\n' "$RED" "$surprises" "$R"
  exit 1
fi
timings+=("$step:$((SECONDS - mark))s")
printf '%sDemo complete in %ds: every step went as expected.%s (seconds per section: %s)\n' "$GRN" "$elapsed" "$R" "${timings[*]}"
if [[ ${DEMO_STAY:-} == 1 ]]; then
  cat <<TXT

The demo fleet keeps running (DEMO_STAY=1) until you press Ctrl-C. In another terminal:

  export FLASHER_CTL_CONFIG=$FLASHER_CTL_CONFIG   # server address, CA and token
  bin/flasherctl inventory servers
  bin/flasherctl task create --server sim-0003 --resolve --watch
  bin/flasherctl task create --server host-0002 --method inband --set host-dell-r6515-inband --watch
  bin/flasherctl task watch                               # every task, live
  bin/flasherctl audit                                    # who did what
  ${GRPCURL[*]} $GRPC list
  curl http://$CONTROL/v1/bmcs                            # the simulator's control API
  logs: $DIR/server.log $DIR/sim.log $DIR/sim/hosts/*/agent.log
TXT
  trap 'exit 0' INT
  wait "${pids[1]}" || true
  exit 0
fi
cat <<TXT

Everything the demo started is stopped now. To explore further:

  DEMO_STAY=1 make demo                      # run the demo and keep its fleet and agents running
  make run                                   # or: flasher-sim (8 BMCs) + flasher-server on 127.0.0.1:9090
  bin/flasherctl inventory servers           # then, in another terminal
  bin/flasherctl plan --server sim-0001 --resolve
  bin/flasherctl task create --server sim-0002 --resolve --watch
  bin/flasherctl task list
  bin/grpcurl -plaintext 127.0.0.1:9090 list
  bin/grpcurl -plaintext -d '{}' 127.0.0.1:9090 flasher.v1.InventoryService/ListServers

docs/demo.md explains each step; docs/flasherctl.md lists every command and exit code.
TXT
