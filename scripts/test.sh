#!/bin/sh
# The whole test suite: dependencies, formatting, lints, every test.
# Privileged tests (kernel mounts, FUSE, namespaces, credential switching) run when this runs as
# root and print why they skip otherwise. PROPTEST_CASES raises the differential
# test's case count.
set -eu
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# External suites nobody here wrote (pjdfstest, fsx, stress-ng) on a `sandfs mount`,
# then real engines (podman; docker with containerd) driving sandfs as their runtime.
if [ "$(id -u)" -eq 0 ]; then
    ./scripts/suites.sh
    ./scripts/engines.sh "$PWD/target/debug/sandfs" all
else
    echo "test.sh: SKIP external suites and engines: they need root (FUSE mount, identity switches, dockerd)"
fi
