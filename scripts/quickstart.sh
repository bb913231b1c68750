#!/usr/bin/env bash
# The main job, on the embedded default: an Azure IoT Hub device (telemetry, direct
# methods, twin) through the supervised actor tree, against the IoT Hub emulator started
# in-process — no cloud account needed. `AZURE_IOT_CONNECTION_STRING=… ./scripts/quickstart.sh`
# connects to a real hub instead; `./scripts/quickstart.sh --mqtt [--broker URI]` runs the
# plain-MQTT example against a mosquitto it starts (or your broker).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
if [ "${1:-}" = "--mqtt" ]; then
  shift
  exec cargo run --quiet -p connector-examples --example quickstart -- "$@"
fi
exec cargo run --quiet -p connector-examples --bin azure_device -- "$@"
