#!/usr/bin/env bash
# The test command: formatting, lints, docs, then every test of the workspace, over the native
# transport (the default) and again over paho.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
cargo test --workspace -- --show-output
# The whole suite again over the paho transport (the native one is the default above).
CONNECTOR_TRANSPORT=paho cargo test --workspace
