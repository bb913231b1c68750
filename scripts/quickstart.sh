#!/usr/bin/env bash
# The main job, on the embedded default: starts a local broker on a free loopback port and
# runs the supervised connection tree against it (publish, subscribe, metrics, status).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
exec cargo run --quiet -p connector-examples --example quickstart -- "$@"
