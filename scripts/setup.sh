#!/usr/bin/env bash
# Installs everything nnc's tests need on a fresh Debian machine with Rust.
# Idempotent: what is already there is not installed again.
set -euo pipefail
cd "$(dirname "$0")/.."

need_cmd() { command -v "$1" >/dev/null 2>&1; }

if ! need_cmd cargo; then
    echo "setup: cargo not found; install Rust (rustup) first" >&2
    exit 1
fi
# The C toolchain links test programs and the Rust build scripts.
if ! need_cmd cc; then
    apt-get update -qq && apt-get install -y -qq build-essential
fi
echo "setup: ok"
