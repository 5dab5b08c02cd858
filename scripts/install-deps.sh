#!/bin/sh
# Install what the test suite needs, idempotently: Debian packages with apt-get,
# Rust components with rustup. Safe to run again; does nothing when all is present.
set -eu

PACKAGES="util-linux mount"

missing=""
for p in $PACKAGES; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
    else
        echo "install-deps: missing packages:$missing (not root: skipping apt-get)" >&2
    fi
fi

for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done
