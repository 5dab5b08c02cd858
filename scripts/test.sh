#!/bin/sh
# The whole test suite: dependencies, formatting, lints, every test.
# Privileged tests (kernel tmpfs mounts, credential switching) run when this runs as
# root and print why they skip otherwise. PROPTEST_CASES raises the differential
# test's case count.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
