# Sourced (POSIX sh) by scripts/engines.sh and bench/engines.sh: the pieces both
# need to run podman with no registry and no state outside a temporary directory.

# busybox_tar DIR: a busybox-static rootfs in DIR/rootfs, tarred to DIR/busybox.tar
# (for `podman import` / `docker import`).
busybox_tar() {
    _r=$1/rootfs
    mkdir -p "$_r/bin" "$_r/sbin" "$_r/usr/bin" "$_r/usr/sbin" "$_r/etc" "$_r/tmp" "$_r/root" \
        "$_r/proc" "$_r/sys" "$_r/dev" "$_r/data" "$_r/var/tmp" "$_r/run" || return 1
    chmod 1777 "$_r/tmp" "$_r/var/tmp"
    cp "$(command -v busybox)" "$_r/bin/busybox" || return 1
    chroot "$_r" /bin/busybox --install -s || return 1
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$_r/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' > "$_r/etc/group"
    tar -C "$_r" -cf "$1/busybox.tar" . || return 1
}

# podman_confs DIR DEFAULT NAME=PATH...: containers.conf, storage.conf and
# registries.conf in DIR (state, events, networks and temporary files under DIR too;
# the runtimes NAME=PATH registered, DEFAULT the default one if not empty), exported
# through CONTAINERS_CONF, CONTAINERS_STORAGE_CONF and CONTAINERS_REGISTRIES_CONF.
# default_ulimits: podman as root asks for nofile=1048576 and nproc=4194304, which
# fail on a machine without CAP_SYS_RESOURCE or with a lower hard limit, with runc too.
podman_confs() {
    _d=$1 _default=$2
    shift 2
    mkdir -p "$_d/networks" "$_d/podman-tmp" "$_d/tmp"
    {
        echo '[containers]'
        echo 'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]'
        echo '[engine]'
        echo 'cgroup_manager = "cgroupfs"'
        echo 'events_logger = "file"'
        echo "events_logfile_path = \"$_d/podman-events.log\""
        echo "tmp_dir = \"$_d/podman-tmp\""
        echo "image_copy_tmp_dir = \"$_d/tmp\""
        [ -z "$_default" ] || echo "runtime = \"$_default\""
        echo '[engine.runtimes]'
        for _rt in "$@"; do echo "\"${_rt%%=*}\" = [\"${_rt#*=}\"]"; done
        echo '[network]'
        echo "network_config_dir = \"$_d/networks\""
    } > "$_d/containers.conf"
    printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s"\n' "$_d/storage" "$_d/run" > "$_d/storage.conf"
    printf 'unqualified-search-registries = []\nshort-name-mode = "permissive"\n' > "$_d/registries.conf"
    export CONTAINERS_CONF="$_d/containers.conf" CONTAINERS_STORAGE_CONF="$_d/storage.conf" \
        CONTAINERS_REGISTRIES_CONF="$_d/registries.conf"
}
