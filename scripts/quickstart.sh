#!/usr/bin/env bash
# The main job, on the embedded default: the device agent starts the cloud emulator
# in-process (Azure IoT Hub + DPS by default, AWS IoT Core with --aws), provisions itself,
# connects over TLS through the supervised actor tree, sends device stats, mirrors desired
# state to a file and reports a file back, runs an allow-listed method/job handler and
# refuses another, serves /metrics, prints its status — and, with --demo, plays the back
# end against itself. It exits 0 after 20 s. No cloud account needed.
#
#   ./scripts/quickstart.sh            # Azure flavour
#   ./scripts/quickstart.sh --aws      # AWS flavour (fleet provisioning, shadow, jobs)
#   ./scripts/quickstart.sh --mqtt [--broker URI]   # the plain-MQTT example on a mosquitto it starts
#
# Any other arguments go to the agent (`--exit-after 0` runs until Ctrl-C; see
# `cargo run -p connector-agent -- --help` and agent/config/*.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cloud=()
case "${1:-}" in
  --mqtt)
    shift
    exec cargo run --quiet -p connector-examples --example quickstart -- "$@"
    ;;
  --aws)
    shift
    cloud=(--cloud aws)
    ;;
esac
state="target/agent-quickstart${cloud:+-aws}"
exec cargo run --quiet -p connector-agent -- "${cloud[@]}" --demo --exit-after 20s \
  --state-dir "$state" --metrics-addr 127.0.0.1:0 --log-level warn "$@"
