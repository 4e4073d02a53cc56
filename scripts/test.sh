#!/usr/bin/env bash
# The test command: sets up what the tests need, then checks formatting,
# lints and runs every test (unit, file, conformance, models, robustness).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --workspace
