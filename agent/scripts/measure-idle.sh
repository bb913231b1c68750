#!/usr/bin/env bash
# Idle footprint of connector-agent: RSS and CPU share while it idles, connected through
# DPS to a standalone emulator (a separate process, so its cost is not counted), with the
# default settings (device stats every 10 s, status every 10 s, metrics, ingest socket,
# state sync, on-disk store).
#
#   agent/scripts/measure-idle.sh                 # IDLE_SECS=60 WARMUP_SECS=15
#
# Prints one line: idle RSS (VmRSS, KiB), peak RSS (VmHWM) and CPU % of one core over the
# idle window (utime+stime from /proc/PID/stat).
set -euo pipefail
IDLE_SECS=${IDLE_SECS:-60}
WARMUP_SECS=${WARMUP_SECS:-15}
cd "$(dirname "$0")/../.."
cargo build --release -q -p connector-agent -p connector-emulator
BIN=target/release
W=$(mktemp -d)
cleanup() { kill "${AGENT:-}" "${EMU:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MQTT=$(free_port); CTL=$(free_port)
$BIN/connector-emulator serve --mqtt-port "$MQTT" --control-port "$CTL" --no-websocket --no-aws \
  --state-dir "$W/emu" >"$W/emu.log" 2>&1 &
EMU=$!
URL="http://127.0.0.1:$CTL"
for _ in $(seq 100); do
  $BIN/connector-emulator ctl --url "$URL" enrollment list >/dev/null 2>&1 && break
  sleep 0.1
done
KEY=$(head -c 32 /dev/urandom | base64)
$BIN/connector-emulator ctl --url "$URL" enrollment create idle-agent --key "$KEY" >/dev/null
printf '%s' "$KEY" >"$W/key"; chmod 600 "$W/key"
cat >"$W/agent.toml" <<TOML
[agent]
state_dir = "$W/state"
[azure]
ca_file = "$W/emu/ca.pem"
port = $MQTT
[azure.dps]
id_scope = "0ne00000EMU"
registration_id = "idle-agent"
endpoint = "localhost"
port = $MQTT
symmetric_key_file = "$W/key"
[metrics]
addr = "127.0.0.1:0"
[logging]
level = "warn"
TOML
$BIN/connector-agent --config "$W/agent.toml" >"$W/agent.out" 2>&1 &
AGENT=$!
for _ in $(seq 300); do grep -q '^status: connected' "$W/agent.out" && break; sleep 0.1; done
grep -q '^status: connected' "$W/agent.out" || { cat "$W/agent.out"; echo "agent did not connect" >&2; exit 1; }
sleep "$WARMUP_SECS"
ticks() { awk '{print $14 + $15}' "/proc/$AGENT/stat"; }
HZ=$(getconf CLK_TCK)
T0=$(ticks); S0=$(date +%s.%N)
sleep "$IDLE_SECS"
T1=$(ticks); S1=$(date +%s.%N)
RSS=$(awk '/^VmRSS/ {print $2}' "/proc/$AGENT/status")
HWM=$(awk '/^VmHWM/ {print $2}' "/proc/$AGENT/status")
CPU=$(awk -v t0="$T0" -v t1="$T1" -v s0="$S0" -v s1="$S1" -v hz="$HZ" 'BEGIN { printf "%.3f", 100 * (t1 - t0) / hz / (s1 - s0) }')
echo "connector-agent idle (${IDLE_SECS}s after ${WARMUP_SECS}s warm-up, release build): RSS ${RSS} KiB (peak ${HWM} KiB), CPU ${CPU}% of one core"
