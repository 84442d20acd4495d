#!/usr/bin/env bash
# Installs what rkube's build and test suite need on a fresh Debian 12 machine that has only the
# Rust toolchain. Idempotent: when everything is present it only checks and exits quickly.
#
#   clang, libclang-dev  bindgen (librocksdb-sys)
#   librocksdb-dev       the system RocksDB the store links against (see .cargo/config.toml)
#   etcd-server/client   the reference cluster for the benchmark
#   python3-venv         the Python gRPC client test
#   cargo-nextest        the test runner scripts/test.sh uses
set -euo pipefail

PACKAGES=(clang libclang-dev librocksdb-dev etcd-server etcd-client python3-venv)

# Run a command as root: directly if we are root, through sudo if it exists.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "setup: need root to run: $*; run this script as root or install sudo" >&2
        exit 1
    fi
}

is_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    if is_installed "$pkg"; then
        echo "setup: $pkg already installed"
    else
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    for pkg in "${missing[@]}"; do
        if [ "$pkg" = etcd-server ]; then
            # Debian's package starts an etcd service on 2379/2380; the benchmark starts its own
            # reference cluster, so nothing may be left listening there.
            echo "setup: stopping the etcd service the etcd-server package started"
            as_root systemctl disable --now etcd >/dev/null 2>&1 || true
            as_root pkill -x etcd || true
        fi
    done
fi

if cargo nextest --version >/dev/null 2>&1; then
    echo "setup: cargo-nextest already installed"
else
    echo "setup: installing cargo-nextest"
    cargo install --locked cargo-nextest
fi

echo "setup: done"
