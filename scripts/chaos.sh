#!/usr/bin/env bash
# The long chaos run: the device agent behind a TCP fault proxy for MINUTES (default 20):
# a 90 s blackhole, a 90 s refused port, a 10-minute outage, a blackhole that heals, then a
# random fault every 20-60 s (blackholes, refused ports, resets, a slow path, the agent
# SIGKILLed and restarted, token expiry), 200 lines/s into its ingestion socket. Writes the
# figures to docs/RELIABILITY.md ("Last long run"). CHAOS_SEED picks the random faults.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
minutes="${1:-20}"
CHAOS_MINUTES="$minutes" CHAOS_SEED="${CHAOS_SEED:-1}" CHAOS_REPORT="$PWD/docs/RELIABILITY.md" \
  cargo test --release -p connector-agent --test agent_chaos -- --ignored --nocapture chaos_long
