#!/usr/bin/env bash
# Installs everything nnc's tests need on a fresh Debian machine with Rust:
# a C compiler, the Arm embedded toolchain with newlib, qemu-system-arm for
# the Cortex-M4 test, Python's numpy, onnx and onnxruntime for the
# onnxruntime.quantization comparison, and AFL++ with cargo-afl for the fuzz
# targets. Idempotent: what is already there is skipped.
#
# qemu-system-arm is unpacked into $NNC_TOOLS_DIR (default
# ~/.cache/nnc-tools) instead of being installed, because the Debian
# package conflicts with the newer qemu-utils some machines carry.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS="${NNC_TOOLS_DIR:-$HOME/.cache/nnc-tools}"
QEMU="$TOOLS/qemu/usr/bin/qemu-system-arm"

have() { command -v "$1" >/dev/null 2>&1; }

SUDO=""
if [ "$(id -u)" != 0 ] && have sudo; then SUDO="sudo"; fi

updated=0
apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ $updated = 0 ]; then
        $SUDO apt-get update -qq
        updated=1
    fi
    echo "setup: installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
}

if ! have cargo; then
    echo "setup: cargo not found; install Rust (rustup) first" >&2
    exit 1
fi

# C compiler (generated C, the runtime harness) and the Arm toolchain.
apt_install build-essential cmake gcc-arm-none-eabi libnewlib-arm-none-eabi

# qemu-system-arm, unpacked beside the project, plus the libraries it needs.
if [ ! -x "$QEMU" ]; then
    echo "setup: unpacking qemu-system-arm into $TOOLS/qemu"
    tmp="$(mktemp -d)"
    chmod 777 "$tmp"
    if [ $updated = 0 ]; then
        $SUDO apt-get update -qq
        updated=1
    fi
    (cd "$tmp" && apt-get download qemu-system-arm qemu-system-common qemu-system-data >/dev/null 2>&1)
    mkdir -p "$TOOLS/qemu"
    for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$TOOLS/qemu"; done
    rm -rf "$tmp"
fi
apt_install libfdt1 libcapstone4 libpmem1 librdmacm1 libibverbs1 libslirp0 libvdeplug2
if ldd "$QEMU" | grep -q "not found"; then
    echo "setup: $QEMU is missing libraries:" >&2
    ldd "$QEMU" | grep "not found" >&2
    exit 1
fi
# Fuzzing: AFL++ (afl-cc, afl-fuzz) from Debian, cargo-afl from crates.io
# and its instrumentation runtime for this Rust version (built once).
apt_install afl++
if ! cargo afl --version >/dev/null 2>&1; then
    echo "setup: installing cargo-afl"
    cargo install cargo-afl --locked --version "^0.18" >/dev/null 2>&1
fi
if ! afl_out="$(cargo afl config --build 2>&1)"; then
    if ! grep -q "already built" <<<"$afl_out"; then
        echo "$afl_out" >&2
        exit 1
    fi
fi

# Python with numpy, onnx and onnxruntime for the onnxruntime.quantization
# comparison (tests/tests/ort_quant.rs runs scripts/ort_quant.py). Pinned:
# the comparison's figures are ONNX Runtime's, so a new release must not
# change them unannounced.
PY_PINS="numpy==2.4.6 onnx==1.23.2 onnxruntime==1.32.0"
have python3 || apt_install python3 python3-pip
if ! python3 - "$PY_PINS" >/dev/null 2>&1 <<'PY'
import sys
from importlib.metadata import version
for pin in sys.argv[1].split():
    name, want = pin.split("==")
    assert version(name) == want, (name, version(name), want)
PY
then
    echo "setup: installing $PY_PINS with pip"
    # shellcheck disable=SC2086
    python3 -m pip install -q $PY_PINS 2>/dev/null \
        || python3 -m pip install -q --break-system-packages $PY_PINS
fi
python3 -c "import onnxruntime; print('setup: onnxruntime', onnxruntime.__version__)"
"$QEMU" --version | head -1 | sed 's/^/setup: /'
arm-none-eabi-gcc --version | head -1 | sed 's/^/setup: /'
cargo afl --version | head -1 | sed 's/^/setup: /'
echo "setup: ok"
