#!/usr/bin/env bash
# The whole rkube test suite: set-up, formatting, lints, then every test in the workspace.
#
#   RKUBE_TEST_FILTER  a nextest filter expression (or, without nextest, a cargo test name filter)
#   CI=true            use the nextest `ci` profile (JUnit output in target/nextest/ci/junit.xml)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export RUST_BACKTRACE=1
start=$SECONDS

step() {
    echo "== step: $1"
}

finish() {
    local status=$?
    if [ "$status" -eq 0 ]; then
        echo "== passed in $((SECONDS - start))s"
    else
        echo "== FAILED (exit $status) after $((SECONDS - start))s"
    fi
}
trap finish EXIT

step setup
scripts/setup.sh

step fmt
cargo fmt --all -- --check

step clippy
cargo clippy --workspace --all-targets -- -D warnings

step test
if cargo nextest --version >/dev/null 2>&1; then
    args=(nextest run --workspace --no-fail-fast)
    if [ "${CI:-}" = true ]; then
        args+=(--profile ci)
    fi
    if [ -n "${RKUBE_TEST_FILTER:-}" ]; then
        args+=(-E "$RKUBE_TEST_FILTER")
    fi
    cargo "${args[@]}"
else
    args=(test --workspace --no-fail-fast)
    if [ -n "${RKUBE_TEST_FILTER:-}" ]; then
        args+=(-- "$RKUBE_TEST_FILTER")
    fi
    cargo "${args[@]}"
fi
