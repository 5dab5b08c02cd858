#!/bin/sh
# Install what the test suite needs, idempotently: Debian packages with apt-get,
# Rust components with rustup, external test suites with cargo install. Safe to run
# again; does nothing when all is present.
set -eu

# util-linux/mount: setpriv, umount; fuse3: the FUSE tools (fusermount3, for
# comparisons; sandfs itself mounts without them); stress-ng and busybox-static:
# external suites and real programs in the FUSE tests; runc: the reference OCI
# runtime the bundle tests compare with; uidmap: newuidmap/newgidmap for rootless
# runs with subordinate ids; iproute2: ip, for the network escape probes; passt:
# pasta, for --network pasta; podman, docker.io and containerd: the container
# engines scripts/engines.sh drives with a given OCI runtime (conmon, netavark,
# fuse-overlayfs and containerd-shim-runc-v2 come as their dependencies); crun: a
# second reference OCI runtime for those flows; catatonit: podman's --init binary;
# python3: the OCI state-directory test connects to a control socket with it.
PACKAGES="util-linux mount fuse3 stress-ng busybox-static runc uidmap iproute2 passt
podman docker.io containerd crun catatonit python3"

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

# External suites run on a `sandfs mount` (scripts/suites.sh).
PATH="$HOME/.cargo/bin:$PATH"
for t in pjdfstest fsx; do
    command -v "$t" >/dev/null 2>&1 || cargo install --locked "$t" || cargo install "$t"
done
