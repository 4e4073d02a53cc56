#!/usr/bin/env bash
# The test command: sets up what the tests need, then checks formatting,
# lints and runs every test (unit, file, conformance, models, robustness,
# fuzz corpora), then a short bounded run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all --check
(cd fuzz && cargo fmt --check)
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo test --locked --workspace
# 20 seconds per fuzz target; fails on any crash or hang.
scripts/fuzz.sh smoke 20
