#!/bin/sh
# End-to-end flows through real container engines with a given OCI runtime binary:
# podman (--runtime PATH, via conmon) and docker (dockerd with its own managed
# containerd, the runtime registered as a named runtime and reached through
# containerd-shim-runc-v2). The same script runs with runc or crun (references) and
# with sandfs. Prints one line per check ("ok NAME", "FAIL NAME: reason",
# "skip NAME: reason") and a closing "engines: N passed, N failed[, N skipped]";
# exits non-zero when anything failed. Needs root; no image registry: the image is
# a busybox-static rootfs imported from a tar.
#
#   scripts/engines.sh RUNTIME_PATH [podman|docker|all]      (default: all)
#
#   ENGINES_CALL_LOG=FILE  reach the runtime through a wrapper (same basename, in the
#                          temp dir) that appends "[caller] args..." to FILE, one
#                          line per invocation, keeps the cwd, open fds and
#                          environment of each caller's (conmon, podman,
#                          containerd-shim) first call as FILE.CALLER.env, the
#                          first config.json it hands to create as
#                          FILE.CALLER.config.json and the first exec --process
#                          file as FILE.CALLER.process.json, then execs the runtime
#   ENGINES_TIMEOUT=S      limit for any one engine command (default 60)
#   ENGINES_ONLY="a b"     run only these checks (names as printed)
#   ENGINES_LOOPS=N        rounds of p-loop (default 50)
#   ENGINES_KEEP=1         keep the temp dir (state, daemon logs) for a look
#
# Isolation: everything lives in one mktemp -d dir $T, and the script re-executes
# itself in a private mount namespace and a new network namespace (unshare), where
# it mounts a tmpfs over /run and over /var/lib/containers. So the state that the
# engines keep at fixed paths (/run/runc, /run/crun, /run/libpod,
# /run/containers/networks, /run/containerd/s shim sockets, /run/netns, podman's
# blob-info cache in /var/lib/containers/cache), the bridge and firewall rules that
# netavark sets up for podman's default network, and every mount an engine makes
# go away with the namespaces, and nothing in /etc, /var/lib or /run is touched
# on the host. Cgroups are not namespaced: the containers go under cgroup parents
# named after $T (podman --cgroup-parent, dockerd --cgroup-parent; cgroupfs
# manager), removed at the end. The exit trap removes the containers, stops
# dockerd (which stops its containerd), ends any process left in the private
# mount namespace or in those cgroups, unmounts what is under $T and removes $T,
# even when a check failed or the run was interrupted.
#
# Docker client: Debian's /usr/bin/docker (20.10, the version of docker.io's
# dockerd, API 1.41) by full path, not the docker 28 CLI in /usr/local/bin that
# comes first in PATH: a client newer than the daemon has to negotiate the API
# down and may use flags the old daemon lacks.
#
# Machine quirks (Debian 12 in this sandbox): the bounding set lacks
# CAP_SYS_RESOURCE and the hard RLIMIT_NOFILE is 20000, while podman as root asks
# the runtime for nofile=1048576 and nproc=4194304; runc then fails with "error
# setting rlimit type 7: operation not permitted". containers.conf's
# default_ulimits (nofile=1024:1024, nproc=1024:1024) avoids that for every
# podman container, the same values as passing --ulimit to each run.
set -u

usage() {
    echo "usage: $0 RUNTIME_PATH [podman|docker|all]" >&2
    exit 2
}

[ $# -ge 1 ] || usage
WHICH=${2:-all}
case $WHICH in podman|docker|all) ;; *) usage ;; esac
TMO=${ENGINES_TIMEOUT:-60}

# --- outer half: temp dir, namespaces, last-resort cleanup -------------------------
if [ "${ENGINES_INNER:-}" != 1 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "engines: needs root (container engines, namespaces)" >&2
        exit 2
    fi
    # Absolute, symlinks kept: a multicall binary may look at its name.
    case $1 in /*) RT=$1 ;; *) RT=$PWD/$1 ;; esac
    if [ ! -f "$RT" ] || [ ! -x "$RT" ]; then
        echo "engines: runtime $1 is not an executable file" >&2
        exit 2
    fi
    for tool in unshare timeout script; do
        command -v $tool >/dev/null 2>&1 || { echo "engines: $tool missing" >&2; exit 2; }
    done
    if [ "$WHICH" != docker ] && ! command -v podman >/dev/null 2>&1; then
        echo "engines: podman missing (scripts/install-deps.sh)" >&2; exit 2
    fi
    if [ "$WHICH" != podman ] && { [ ! -x /usr/bin/docker ] || ! command -v dockerd >/dev/null 2>&1; }; then
        echo "engines: docker.io missing (scripts/install-deps.sh)" >&2; exit 2
    fi
    # Mount points the inner half covers with a tmpfs, made below when absent (and
    # removed again at the end); the inner half's pid while it runs.
    made=""
    inner=""
    outer_cleanup() {
        trap '' INT TERM
        if [ -n "$inner" ]; then
            kill -TERM "$inner" 2>/dev/null
            wait "$inner" 2>/dev/null
        fi
        # Anything still alive in the inner mount namespace was started by this run.
        ns=$(cat "$T/mntns" 2>/dev/null)
        if [ -n "$ns" ]; then
            for p in /proc/[0-9]*; do
                [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$ns" ] && kill -KILL "${p#/proc/}" 2>/dev/null
            done
        fi
        if [ "${ENGINES_KEEP:-}" = 1 ]; then
            echo "engines: kept $T" >&2
        else
            rm -rf "$T"
        fi
        for d in $made; do rmdir "$d" 2>/dev/null; done
    }
    T=$(mktemp -d /tmp/engines.XXXXXX) || exit 2
    trap outer_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    chmod 755 "$T"
    for d in /var/lib/containers; do
        [ -d "$d" ] || { mkdir -p "$d" && made="$made $d"; }
    done
    # The inner half gets the signal too (same process group) and cleans up; wait for it.
    trap 'kill -TERM "$inner" 2>/dev/null' INT TERM
    if [ -n "${ENGINES_CALL_LOG:-}" ]; then
        case $ENGINES_CALL_LOG in /*) ;; *) ENGINES_CALL_LOG=$PWD/$ENGINES_CALL_LOG ;; esac
        export ENGINES_CALL_LOG
    fi
    ENGINES_INNER=1 ENGINES_T=$T ENGINES_RT=$RT \
        unshare --mount --net --propagation private -- /bin/sh "$0" "$@" &
    inner=$!
    while :; do
        wait "$inner"
        rc=$?
        # wait returns >128 when interrupted by a trapped signal; the child may live on.
        kill -0 "$inner" 2>/dev/null || break
    done
    inner=""
    exit $rc
fi

# --- inner half: in the private mount and network namespaces ---------------------
. "$(dirname "$0")/podman-env.sh"
T=$ENGINES_T
RT=$ENGINES_RT
readlink /proc/self/ns/mnt > "$T/mntns"
mkdir -p "$T/tmp" "$T/run" "$T/storage"
export TMPDIR="$T/tmp"
mount -t tmpfs -o mode=755 engines-run /run || { echo "engines: cannot mount a tmpfs on /run" >&2; exit 2; }
mount -t tmpfs -o mode=700 engines-varlib /var/lib/containers || exit 2
ip link set lo up

# The runtime the engines are given: the binary itself, or a logging wrapper of the
# same basename (podman decides some features from the runtime's name).
RTNAME=$(basename "$RT")
RUNTIME=$RT
if [ -n "${ENGINES_CALL_LOG:-}" ]; then
    mkdir -p "$T/rtwrap"
    RUNTIME=$T/rtwrap/$RTNAME
    cat > "$RUNTIME" <<EOF
#!/bin/sh
caller=\$(cat /proc/\$PPID/comm 2>/dev/null)
printf '[%s] %s\\n' "\$caller" "\$*" >> '$ENGINES_CALL_LOG'
if [ ! -e '$ENGINES_CALL_LOG'.\$caller.env ]; then
    # fds as the runtime gets them (10 and up are this shell's own)
    fds=\$(for f in /proc/\$\$/fd/*; do echo "# fd \${f##*/} -> \$(readlink "\$f")"; done)
    { echo "# \$*"; echo "# cwd \$(pwd -P)"; echo "\$fds"; env; } > '$ENGINES_CALL_LOG'.\$caller.env
fi
prev=
for a in "\$@"; do
    if [ "\$prev" = --bundle ] && [ ! -e '$ENGINES_CALL_LOG'.\$caller.config.json ]; then
        cp "\$a/config.json" '$ENGINES_CALL_LOG'.\$caller.config.json 2>/dev/null
    fi
    if [ "\$prev" = --process ] && [ ! -e '$ENGINES_CALL_LOG'.\$caller.process.json ]; then
        cp "\$a" '$ENGINES_CALL_LOG'.\$caller.process.json 2>/dev/null
    fi
    prev=\$a
done
exec '$RT' "\$@"
EOF
    chmod 755 "$RUNTIME"
fi

# crun (1.8, Debian 12) refuses a hybrid cgroup layout whose v2 hierarchy has any
# controller ("cgroups in hybrid mode not supported, drop all controllers from
# cgroupv2"); here hugetlb is bound to v2 and the rest to v1. For crun only, a
# private tmpfs covers the unified mount in this mount namespace, so crun sees
# plain v1; runc and other runtimes see the host's layout. (Not a bare umount:
# crun then makes its directories and cgroup.procs files for the "0::" line in the
# host's /sys/fs/cgroup tmpfs under the unified mount point.) The leftover probe
# skips that fake tree: crun leaves its directories there.
CG_PRUNE=/nonexistent
if [ "$RTNAME" = crun ] && [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]; then
    mount -t tmpfs -o mode=755 engines-no-cgroup2 /sys/fs/cgroup/unified || exit 2
    CG_PRUNE=/sys/fs/cgroup/unified
fi

# Cgroup parents of this run's containers (and of conmon), removed at the end.
PODMAN_CGPARENT=$(basename "$T")-podman
DOCKER_CGPARENT=$(basename "$T")-docker
# cgdirs NAME: that cgroup in every hierarchy (v1 controllers, v2 unified or root)
cgdirs() {
    for d in /sys/fs/cgroup/"$1" /sys/fs/cgroup/*/"$1"; do
        [ -d "$d" ] && [ "${d#"$CG_PRUNE"}" = "$d" ] && echo "$d"
    done
}

PASS=0
FAILN=0
SKIPN=0
START=$(date +%s)
DOCKERD_PID=""

# --- helpers ----------------------------------------------------------------------
# Run a command with the time limit; stdout to $T/o, stderr to $T/e.
t() { timeout -k 5 "$TMO" "$@" >"$T/o" 2>"$T/e"; }
# Why the last t failed, for a reason: its last stderr line that says error, else
# the last lines of stderr and stdout.
why() {
    { grep -i error "$T/e" | tail -n 1 | grep . || { tail -n 2 "$T/e"; tail -n 2 "$T/o"; }; } |
        tr '\n' ' ' | cut -c1-300
}
# Inside a check (a subshell): end it with a reason.
fail() { printf '%s\n' "$*" > "$T/reason"; exit 1; }
skip() { printf '%s\n' "$*" > "$T/reason"; exit 3; }
# Run a command that must succeed: must DESC cmd...
must() {
    d=$1; shift
    t "$@"; r=$?
    [ $r -eq 0 ] || fail "$d: exit $r: $(why)"
}
# Poll up to N tenths of a second until cmd succeeds: poll N cmd...
poll() {
    n=$1; shift
    while [ "$n" -gt 0 ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
        n=$((n - 1))
    done
    return 1
}
# Run one check: check NAME function. Each check runs in a subshell; then the
# engine's containers are removed (ENGINE, set by run_podman / run_docker).
check() {
    name=$1; fn=$2
    if [ -n "${ENGINES_ONLY:-}" ]; then
        case " $ENGINES_ONLY " in *" $name "*) ;; *) return 0 ;; esac
    fi
    rm -f "$T/reason"
    ( "$fn" ) </dev/null
    r=$?
    reason=$(cat "$T/reason" 2>/dev/null)
    case $r in
        0) echo "ok $name"; PASS=$((PASS + 1)) ;;
        3) echo "skip $name: $reason"; SKIPN=$((SKIPN + 1)) ;;
        *) echo "FAIL $name: ${reason:-exit $r}"; FAILN=$((FAILN + 1)) ;;
    esac
    "${ENGINE}_clean"
}

# --- the checks both engines run ----------------------------------------------------
# run_podman / run_docker set, for the engine under test:
#   ENGINE  podman or docker (also picks ENGINE_clean after each check)
#   E       the client command        ER  E run with the engine's per-container options
#   EIMG    the image                 EN  prefix of check, container and dir names (p, d)
#   ERMF    forced removal: podman's rm -f first waits for a stop timeout (-t 0: none),
#           docker's kills at once
#   EPAUSED the engine's words when it refuses exec into a paused container (podman
#           4.3: "can only create exec sessions on running containers: container
#           state improper"; docker 20.10: "Container NAME is paused, unpause the
#           container before exec")
#   EPROBE  the kinds of leftovers (see leftovers) a running container of the engine
#           shows under its id

# Run a detached container: erun NAME ARGS... (id recorded in $T/cid).
erun() {
    n=$1; shift
    t $ER -d --name "$n" "$@"; r=$?
    [ $r -eq 0 ] || fail "run -d: exit $r: $(why)"
    cat "$T/o" > "$T/cid"
}
# The container's output (stdout or stderr) in its logs: elogs_have NAME STRING.
elogs_have() { t $E logs "$1" && grep -q -e "$2" "$T/o" "$T/e"; }
einspect() { t $E inspect --format "$2" "$1" && cat "$T/o"; }

SLEEPER='trap "exit 0" TERM; echo ready; while :; do sleep 0.1; done'

e_run_rm() {
    must "run --rm" $ER --rm $EIMG echo hello-run
    [ "$(cat "$T/o")" = hello-run ] || fail "output '$(cat "$T/o")'"
    must "ps -aq" $E ps -aq
    [ ! -s "$T/o" ] || fail "container left after --rm: $(cat "$T/o")"
}

e_run_d_logs() {
    erun "$EN-logs" $EIMG sh -c 'echo out-line; echo err-line >&2; exec sleep 1000'
    poll 100 elogs_have "$EN-logs" out-line || fail "stdout line not in logs: $(why)"
    poll 50 elogs_have "$EN-logs" err-line || fail "stderr line not in logs: $(why)"
    [ "$(einspect "$EN-logs" '{{.State.Status}}')" = running ] || fail "state $(cat "$T/o"), not running"
}

e_exec() {
    erun "$EN-exec" $EIMG sleep 1000
    must "exec" $E exec "$EN-exec" sh -c 'echo exec-ok; cat /proc/1/cmdline | tr "\0" " "'
    grep -q exec-ok "$T/o" || fail "exec output: $(why)"
    grep -q 'sleep 1000' "$T/o" || fail "exec did not see the container's pid 1: $(why)"
    t $E exec "$EN-exec" sh -c 'exit 7'; r=$?
    [ $r -eq 7 ] || fail "exec exit code $r, not 7"
    must "exec -u" $E exec -u 65534 "$EN-exec" id -u
    [ "$(cat "$T/o")" = 65534 ] || fail "exec -u 65534 ran as $(cat "$T/o")"
}

# Run a command line under a pty from script(1) (-it wants a terminal on stdin),
# script's own stdin a pipe that stays open: at EOF on its stdin script passes an
# end-of-file to the terminal, which raced with the engine's attach (an empty output
# now and then).
ttyrun() {
    rm -f "$T/ttyin"
    mkfifo "$T/ttyin"
    sleep $((TMO + 10)) > "$T/ttyin" &
    w=$!
    t script -qec "$1" /dev/null < "$T/ttyin"; r=$?
    kill "$w" 2>/dev/null
    wait "$w" 2>/dev/null
    return $r
}

e_exec_tty() {
    erun "$EN-tty" $EIMG sleep 1000
    ttyrun "$E exec -it $EN-tty sh -c 'tty; echo tty-done'"; r=$?
    [ $r -eq 0 ] || fail "exec -it: exit $r: $(why)"
    grep -q '/dev/pts/' "$T/o" || fail "no pty in the exec: $(why)"
    grep -q tty-done "$T/o" || fail "exec output: $(why)"
}

e_run_tty() {
    ttyrun "$ER -it --rm $EIMG sh -c 'tty; echo tty-done'"; r=$?
    [ $r -eq 0 ] || fail "run -it: exit $r: $(why)"
    grep -q '/dev/pts/' "$T/o" || fail "no pty in the container: $(why)"
    grep -q tty-done "$T/o" || fail "output: $(why)"
}

# SIGTERM reaches a trap: the exit code is the trap's, not SIGKILL's.
e_stop_term() {
    erun "$EN-stop" $EIMG sh -c 'trap "exit 42" TERM; echo ready; while :; do sleep 0.1; done'
    poll 100 elogs_have "$EN-stop" ready || fail "container never ready"
    must "stop" $E stop -t 30 "$EN-stop"
    [ "$(einspect "$EN-stop" '{{.State.ExitCode}}')" = 42 ] || fail "exit code $(cat "$T/o"), not 42 from the TERM trap"
}

# SIGTERM ignored: stop -t 2 falls back to SIGKILL.
e_stop_kill() {
    erun "$EN-stopk" $EIMG sh -c 'trap "" TERM; echo ready; while :; do sleep 0.1; done'
    poll 100 elogs_have "$EN-stopk" ready || fail "container never ready"
    must "stop -t 2" $E stop -t 2 "$EN-stopk"
    [ "$(einspect "$EN-stopk" '{{.State.ExitCode}}')" = 137 ] || fail "exit code $(cat "$T/o"), not 137"
}

e_kill_hup() {
    erun "$EN-hup" $EIMG sh -c 'trap "echo got-hup" HUP; echo ready; while :; do sleep 0.1; done'
    poll 100 elogs_have "$EN-hup" ready || fail "container never ready"
    must "kill -s HUP" $E kill -s HUP "$EN-hup"
    poll 100 elogs_have "$EN-hup" got-hup || fail "trap never saw HUP"
    [ "$(einspect "$EN-hup" '{{.State.Status}}')" = running ] || fail "state $(cat "$T/o") after HUP"
}

e_top() {
    erun "$EN-top" $EIMG sleep 1000
    if [ "$ENGINE" = podman ]; then
        # ps(1) run in the container (podman falls back to it for ps's own options).
        must "top -ef" $E top "$EN-top" -ef
        grep -q 'sleep 1000' "$T/o" || fail "top -ef lacks the container's process: $(why)"
        # podman's own top (psgo) reads /proc from the host after joining only the
        # container's mount namespace. sandfs's view is a FUSE mount owned by the
        # container's user namespace, which the kernel closes to every process outside
        # it, host root included (fuse.allow_sys_admin_access=N): refused, by design.
        if [ "$RTNAME" = sandfs ]; then
            if t $E top "$EN-top"; then fail "podman top reached into the view from the host"; fi
            grep -q 'permission denied' "$T/e" "$T/o" || fail "podman top failed otherwise: $(why)"
            return 0
        fi
    fi
    # (docker's top runs ps(1) on the host for the container's pids)
    must "top" $E top "$EN-top"
    grep -q 'sleep 1000' "$T/o" || fail "top lacks the container's process: $(why)"
}

# A counter in a host dir: unchanged while paused (state "paused"; exec refused),
# advancing again after.
e_pause() {
    v=$T/$EN-vol-pause
    mkdir -p "$v"
    erun "$EN-pause" -v "$v:/data" $EIMG sh -c 'i=0; while :; do i=$((i+1)); echo $i > /data/n; sleep 0.05; done'
    poll 100 test -s "$v/n" || fail "counter never written"
    must "pause" $E pause "$EN-pause"
    [ "$(einspect "$EN-pause" '{{.State.Status}}')" = paused ] || fail "state $(cat "$T/o"), not paused"
    a=$(cat "$v/n")
    sleep 1
    b=$(cat "$v/n")
    [ "$a" = "$b" ] || fail "counter went on while paused ($a -> $b)"
    # refused for the state, not for a timeout or a missing container
    t $E exec "$EN-pause" true; r=$?
    [ $r -ne 0 ] || fail "exec into a paused container was accepted"
    grep -qi -e "$EPAUSED" "$T/e" || fail "exec into the paused container failed otherwise: exit $r: $(why)"
    must "unpause" $E unpause "$EN-pause"
    [ "$(einspect "$EN-pause" '{{.State.Status}}')" = running ] || fail "state $(cat "$T/o") after unpause"
    advanced() { c=$(cat "$v/n"); [ -n "$c" ] && [ "$c" != "$b" ]; }
    poll 100 advanced || fail "counter stuck after unpause"
}

e_rm_f() {
    erun "$EN-rmf" $EIMG sleep 1000
    pid=$(einspect "$EN-rmf" '{{.State.Pid}}')
    [ -n "$pid" ] && [ "$pid" -gt 0 ] || fail "no pid: $(why)"
    must "rm -f" $E $ERMF "$EN-rmf"
    must "ps -aq" $E ps -aq
    [ ! -s "$T/o" ] || fail "container still listed"
    poll 50 sh -c "! kill -0 $pid" || fail "container process $pid still alive"
}

e_volume() {
    v=$T/$EN-vol
    mkdir -p "$v"
    echo from-host > "$v/in"
    must "run -v" $ER --rm -v "$v:/data" $EIMG sh -c 'cat /data/in; echo from-container > /data/out'
    grep -q from-host "$T/o" || fail "host file not seen inside: $(why)"
    [ "$(cat "$v/out" 2>/dev/null)" = from-container ] || fail "file written inside not on the host"
}

e_read_only() {
    must "run --read-only" $ER --rm --read-only $EIMG sh -c 'if touch /x 2>/dev/null; then echo root-writable; else echo root-ro; fi'
    [ "$(cat "$T/o")" = root-ro ] || fail "a write to / worked: $(why)"
}

e_tmpfs() {
    must "run --tmpfs" $ER --rm --read-only --tmpfs /scratch $EIMG sh -c 'echo x > /scratch/f && cat /scratch/f; touch /rootfile 2>/dev/null || echo root-ro'
    grep -q '^x$' "$T/o" || fail "/scratch not writable: $(why)"
    grep -q '^root-ro$' "$T/o" || fail "/ writable beside the tmpfs: $(why)"
    # A kernel tmpfs under runc; sandfs's own memory filesystem inside its view
    # (gVisor's semantics), which the kernel's /proc/mounts does not list.
    if [ "$RTNAME" != sandfs ]; then
        must "run --tmpfs" $ER --rm --tmpfs /scratch $EIMG grep " /scratch " /proc/mounts
        grep -q ' /scratch tmpfs ' "$T/o" || fail "/scratch is no tmpfs: $(why)"
    fi
}

e_network_none() {
    must "run --network none" $ER --rm --network none $EIMG ip -o link
    [ "$(wc -l < "$T/o")" -eq 1 ] && grep -q ': lo:' "$T/o" || fail "links other than lo: $(why)"
}

# What is left of the engine's and the runtime's state: mount points, processes,
# cgroup dirs and files or dirs named after a container id.
# (/run/netns itself becomes a mount point at podman's first network namespace and
# stays one; the namespaces' own mounts under it are counted.)
mounts() { awk '$5 != "/run/netns" {print $5}' /proc/self/mountinfo | sort; }
mountdiff() {
    printf '%s\n' "$1" > "$T/m1"
    printf '%s\n' "$2" > "$T/m2"
    diff "$T/m1" "$T/m2" | grep '^[<>]' | head -5 | tr '\n' ';'
}
leftovers() { # leftovers ID...
    for id in "$@"; do
        grep -F "$id" /proc/self/mountinfo | awk '{print "mount " $5}'
        for p in /proc/[0-9]*; do
            c=$(tr '\0' ' ' 2>/dev/null < "$p/cmdline")
            case $c in *"$id"*) echo "process ${p#/proc/}: $(echo "$c" | cut -c1-120)" ;; esac
        done
        find /sys/fs/cgroup -maxdepth 5 -path "$CG_PRUNE" -prune -o -type d -name "*$id*" -print 2>/dev/null | sed 's/^/cgroup /'
        find /run "$T" -name "*$id*" 2>/dev/null | sed 's/^/file /'
    done
}

# probe_sees ID KIND...: leftovers reports at least one line of each KIND for ID.
probe_sees() {
    _seen=$(leftovers "$1"); shift
    for _k in "$@"; do
        printf '%s\n' "$_seen" | grep -q "^$_k " || fail "leftover probe sees no $_k of the running container"
    done
}

# SIGKILL of the container's pid 1 from the host: exit code 137, and after rm
# nothing of it is left.
e_sigkill_host() {
    before=$(mounts)
    erun "$EN-k9" $EIMG sh -c "$SLEEPER"
    id=$(cat "$T/cid")
    poll 100 elogs_have "$EN-k9" ready || fail "container never ready"
    pid=$(einspect "$EN-k9" '{{.State.Pid}}')
    [ -n "$pid" ] && [ "$pid" -gt 0 ] || fail "no pid: $(why)"
    # the probe is not blind: it sees what the running container has under its id
    probe_sees "$id" $EPROBE
    kill -KILL "$pid" || fail "kill -9 $pid failed"
    must "wait" $E wait "$EN-k9"
    [ "$(cat "$T/o")" = 137 ] || fail "$ENGINE wait says $(cat "$T/o"), not 137"
    [ "$(einspect "$EN-k9" '{{.State.ExitCode}}')" = 137 ] || fail "inspect exit code $(cat "$T/o"), not 137"
    must "rm" $E rm "$EN-k9"
    kill -0 "$pid" 2>/dev/null && fail "pid $pid still alive"
    if [ "$ENGINE" = docker ]; then
        # the shim goes away on its own after the delete
        gone() { [ -z "$(leftovers "$id")" ]; }
        poll 50 gone || fail "left after rm: $(leftovers "$id" | head -5 | tr '\n' ';')"
    else
        left=$(leftovers "$id")
        [ -z "$left" ] || fail "left after rm: $(echo "$left" | head -5 | tr '\n' ';')"
    fi
    after=$(mounts)
    [ "$before" = "$after" ] || fail "mounts differ: $(mountdiff "$before" "$after")"
}

# --- podman ------------------------------------------------------------------------
podman_setup() {
    podman_confs "$T" "$RTNAME" "$RTNAME=$RUNTIME"
    P="podman --root $T/storage --runroot $T/run --cgroup-manager cgroupfs --events-backend file --runtime $RUNTIME"
    PR="$P run --cgroup-parent /$PODMAN_CGPARENT"
    PC="$P create --cgroup-parent /$PODMAN_CGPARENT"
    IMG=localhost/engines-busybox:latest
    # overlay on ext4 works; fall back to vfs where it does not.
    if ! t $P import --change 'CMD ["/bin/sh"]' "$T/busybox.tar" $IMG; then
        echo "engines: podman import with overlay failed ($(why)); trying vfs" >&2
        sed -i 's/^driver = .*/driver = "vfs"/' "$T/storage.conf"
        rm -rf "$T/storage" "$T/run"
        P="$P --storage-driver vfs"
        PR="$P run --cgroup-parent /$PODMAN_CGPARENT"
        PC="$P create --cgroup-parent /$PODMAN_CGPARENT"
        t $P import --change 'CMD ["/bin/sh"]' "$T/busybox.tar" $IMG || return 1
    fi
}

podman_clean() {
    t $P ps -aq
    [ -s "$T/o" ] && t $P rm -f -t 0 $(cat "$T/o")
    return 0
}

# Podman's default network (netavark bridge; in this script's own network namespace).
p_network_bridge() {
    must "run (default network)" $PR --rm $IMG ip -o addr
    grep -q 'eth0.*inet ' "$T/o" || fail "no eth0 address: $(why)"
}

# 50 rounds of create+rm and run --rm: nothing left behind, probed by the ids of both
# (create's output, run's --cidfile).
P_LOOPS=${ENGINES_LOOPS:-50}
p_loop() {
    before=$(mounts)
    i=0
    ids=""
    while [ $i -lt "$P_LOOPS" ]; do
        i=$((i + 1))
        must "create #$i" $PC --name "p-loop-c$i" $IMG true
        ids="$ids $(cat "$T/o")"
        must "rm #$i" $P rm "p-loop-c$i"
        must "run --rm #$i" $PR --rm --cidfile "$T/loop-r$i.cid" --name "p-loop-r$i" $IMG true
        [ -s "$T/loop-r$i.cid" ] || fail "run --rm #$i wrote no --cidfile"
        ids="$ids $(cat "$T/loop-r$i.cid")"
    done
    must "ps -aq" $P ps -aq
    [ ! -s "$T/o" ] || fail "containers left: $(cat "$T/o" | tr '\n' ' ')"
    left=$(leftovers $ids p-loop-r)
    [ -z "$left" ] || fail "left: $(echo "$left" | head -5 | tr '\n' ';')"
    after=$(mounts)
    [ "$before" = "$after" ] || fail "mounts differ: $(mountdiff "$before" "$after")"
    # and no container cgroup of any id under the parent
    n=$(for d in $(cgdirs "$PODMAN_CGPARENT"); do find "$d" -mindepth 1 -maxdepth 1 -type d -name 'libpod-*'; done | wc -l)
    [ "$n" -eq 0 ] || fail "$n container cgroups left under $PODMAN_CGPARENT"
}

run_podman() {
    ENGINE=podman
    if ! podman_setup; then
        echo "FAIL podman-setup: $(why)"
        FAILN=$((FAILN + 1))
        return
    fi
    E=$P ER=$PR EIMG=$IMG EN=p ERMF="rm -f -t 0"
    EPAUSED='exec sessions on running containers'
    # podman's shm mount for the container, conmon and the runtime's processes, the
    # container's cgroups, its state files
    EPROBE="mount process cgroup file"
    check p-run-rm e_run_rm
    check p-run-d-logs e_run_d_logs
    check p-exec e_exec
    check p-exec-tty e_exec_tty
    check p-run-tty e_run_tty
    check p-stop-term e_stop_term
    check p-stop-kill e_stop_kill
    check p-kill-hup e_kill_hup
    check p-top e_top
    check p-pause e_pause
    check p-rm-f e_rm_f
    check p-volume e_volume
    check p-read-only e_read_only
    check p-tmpfs e_tmpfs
    check p-network-none e_network_none
    check p-network-bridge p_network_bridge
    check p-sigkill-host e_sigkill_host
    check p-loop p_loop
}

# --- docker ------------------------------------------------------------------------
D=/usr/bin/docker
docker_setup() {
    mkdir -p "$T/docker" "$T/dexec" "$T/docker-cli"
    cat > "$T/daemon.json" <<EOF
{
  "runtimes": { "undertest": { "path": "$RUNTIME" } },
  "default-runtime": "runc"
}
EOF
    export DOCKER_HOST="unix://$T/docker.sock"
    export DOCKER_CONFIG="$T/docker-cli"
    # dockerd starts its own containerd (config, root and state under --data-root and
    # --exec-root); no iptables, no bridge, no userland proxy.
    dockerd --config-file "$T/daemon.json" --data-root "$T/docker" --exec-root "$T/dexec" \
        --pidfile "$T/docker.pid" --host "$DOCKER_HOST" --storage-driver overlay2 \
        --exec-opt native.cgroupdriver=cgroupfs --cgroup-parent "/$DOCKER_CGPARENT" \
        --iptables=false --ip6tables=false --bridge=none --ip-masq=false --ip-forward=false \
        --userland-proxy=false --log-level warn >"$T/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    up() { t $D version; }
    if ! poll 300 up; then
        echo "engines: dockerd did not come up: $(tail -3 "$T/dockerd.log" | tr '\n' ' ')" > "$T/e"
        : > "$T/o"
        return 1
    fi
    DIMG=engines-busybox:latest
    t $D import --change 'CMD ["/bin/sh"]' "$T/busybox.tar" $DIMG || return 1
    DR="$D run --runtime undertest"
}

docker_clean() {
    t $D ps -aq
    [ -s "$T/o" ] && t $D rm -f $(cat "$T/o")
    return 0
}

run_docker() {
    ENGINE=docker
    if ! docker_setup; then
        echo "FAIL docker-setup: $(why)"
        FAILN=$((FAILN + 1))
        return
    fi
    E=$D ER=$DR EIMG=$DIMG EN=d ERMF="rm -f"
    EPAUSED='is paused'
    # the shim's and the runtime's processes, the container's cgroups, its state
    # files. No mount carries a docker container's id (the rootfs is under the
    # layer's id, /dev/shm private to the container): the before/after mount lists
    # cover mounts.
    EPROBE="process cgroup file"
    check d-run-rm e_run_rm
    check d-run-d-logs e_run_d_logs
    check d-exec e_exec
    check d-exec-tty e_exec_tty
    check d-run-tty e_run_tty
    check d-stop-term e_stop_term
    check d-stop-kill e_stop_kill
    check d-kill-hup e_kill_hup
    check d-pause e_pause
    check d-rm-f e_rm_f
    check d-volume e_volume
    check d-read-only e_read_only
    check d-tmpfs e_tmpfs
    check d-network-none e_network_none
    check d-top e_top
    check d-sigkill-host e_sigkill_host
}

# --- teardown ----------------------------------------------------------------------
inner_cleanup() {
    trap '' INT TERM
    if [ -n "${P:-}" ]; then
        TMO=30 podman_clean
    fi
    if [ -n "$DOCKERD_PID" ]; then
        TMO=30 docker_clean
        kill -TERM "$DOCKERD_PID" 2>/dev/null
        n=150
        while [ $n -gt 0 ] && kill -0 "$DOCKERD_PID" 2>/dev/null; do sleep 0.1; n=$((n - 1)); done
        kill -KILL "$DOCKERD_PID" 2>/dev/null
        wait "$DOCKERD_PID" 2>/dev/null
    fi
    # Processes left in the engines' cgroups (containers) and in this mount
    # namespace (conmon, shims, containerd): all started by this run.
    self=$(readlink /proc/self/ns/mnt)
    for round in 1 2; do
        for d in $(cgdirs "$PODMAN_CGPARENT") $(cgdirs "$DOCKER_CGPARENT"); do
            find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null
        done
        for p in /proc/[0-9]*; do
            pid=${p#/proc/}
            [ "$pid" = $$ ] && continue
            [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$self" ] || continue
            # not this shell's own helpers (subshells, the command substitution here)
            case " $(cat "$p/stat" 2>/dev/null | awk '{print $4}') " in " $$ ") continue ;; esac
            kill -KILL "$pid" 2>/dev/null
        done
        sleep 0.2
    done
    # Unmount what is under $T, deepest first.
    awk -v t="$T" 'index($5, t) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
    done
    for d in $(cgdirs "$PODMAN_CGPARENT") $(cgdirs "$DOCKER_CGPARENT"); do
        find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
}
trap inner_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! busybox_tar "$T"; then
    echo "engines: cannot build the busybox rootfs" >&2
    exit 2
fi
case $WHICH in
    podman) run_podman ;;
    docker) run_docker ;;
    all) run_podman; run_docker ;;
esac
echo "engines: $RTNAME, $(($(date +%s) - START))s"
if [ $SKIPN -gt 0 ]; then
    echo "engines: $PASS passed, $FAILN failed, $SKIPN skipped"
else
    echo "engines: $PASS passed, $FAILN failed"
fi
[ $FAILN -eq 0 ]
