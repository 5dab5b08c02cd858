#!/bin/sh
# External test suites on a `sandfs mount` of a memory overlay over a host temp dir:
# pjdfstest (POSIX semantics), fsx (data integrity, 100,000 operations) and
# stress-ng's filesystem class (short run with --verify). Configs come from
# ../shared/suites/ (or $SUITES_DIR). Installs what is missing, prints one closing
# line per suite ("NAME: N passed, N failed"), checks the host dir was not written,
# unmounts on exit, and exits non-zero when anything failed. Needs root.
#
#   scripts/suites.sh [pjdfstest] [fsx] [stress-ng]     (default: all three)
#   FSX_OPS=N FSX_SEED=S to change the fsx run.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SUITES_DIR=${SUITES_DIR:-$ROOT/suites}
FSX_OPS=${FSX_OPS:-100000}
FSX_SEED=${FSX_SEED:-$(date +%s)}
SUITES=${*:-pjdfstest fsx stress-ng}

if [ "$(id -u)" -ne 0 ]; then
    echo "suites: needs root (FUSE mount, pjdfstest identity switches)" >&2
    exit 2
fi
if [ ! -d "$SUITES_DIR" ]; then
    echo "suites: no suite configs at $SUITES_DIR (set SUITES_DIR)" >&2
    exit 2
fi

# --- tools, installed only when missing ---
missing=""
for p in stress-ng busybox-static fuse3; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
PATH="$HOME/.cargo/bin:$PATH"
for t in pjdfstest fsx; do
    command -v "$t" >/dev/null 2>&1 || cargo install --locked "$t" || cargo install "$t" || exit 2
done

# --- sandfs ---
(cd "$ROOT" && cargo build -q -p sandfs-cli) || exit 2
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
SANDFS=$TARGET/debug/sandfs

WORK=$(mktemp -d /tmp/sandfs-suites.XXXXXX)
# pjdfstest switches to other users: they must reach the mount (mktemp made 0700).
chmod 755 "$WORK"
HOST=$WORK/host
MNT=$WORK/mnt
OTHER=$WORK/other
mkdir -p "$HOST/etc" "$MNT" "$OTHER"
chmod 755 "$HOST"
echo "host file" > "$HOST/etc/keep"
snapshot() { (cd "$HOST" && find . -printf '%p %m %s %T@\n' | sort; cat etc/keep) ; }
BEFORE=$(snapshot)

cleanup() {
    umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
    umount "$OTHER" 2>/dev/null || umount -l "$OTHER" 2>/dev/null
    # The daemon ends with its mount; give it a moment, then make sure.
    if [ -n "${PID:-}" ]; then
        i=0
        while kill -0 "$PID" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
        kill -9 "$PID" 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mount -t tmpfs tmpfs "$OTHER" || exit 2
PID=$("$SANDFS" mount --daemon --rootfs "$HOST" "$MNT") || { echo "suites: sandfs mount failed" >&2; exit 2; }
echo "suites: sandfs mount (pid $PID) of a memory overlay over $HOST at $MNT"

FAILED=0

run_pjdfstest() {
    dir=$MNT/pjdfstest
    mkdir -p "$dir"
    log=$WORK/pjdfstest.log
    (cd "$dir" && pjdfstest -c "$SUITES_DIR/pjdfstest.toml" -p "$dir" -s "$OTHER") >"$log" 2>&1
    rc=$?
    summary=$(grep '^Summary:' "$log" | tail -1)
    echo "pjdfstest: $summary"
    grep -E 'FAILED$' "$log" | sed 's/^/  /'
    failed=$(echo "$summary" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
    skipped=$(echo "$summary" | sed -n 's/.* \([0-9]*\) skipped.*/\1/p')
    passed=$(echo "$summary" | sed -n 's/.* \([0-9]*\) passed.*/\1/p')
    [ -n "$failed" ] || { failed=1; passed=0; skipped=0; tail -20 "$log"; }
    [ "$rc" -eq 0 ] || [ "$failed" -gt 0 ] || failed=1
    echo "pjdfstest: $passed passed, $failed failed, $skipped skipped"
    [ "$failed" -eq 0 ] || FAILED=1
}

# fsx draws its operations from a seed, and a few seeds make fsx itself fail (a
# zero-length posix_fallocate is EINVAL on every filesystem, kernel tmpfs included).
# So a failing seed is run again on a kernel tmpfs (the oracle): when the kernel fails
# at the same operation, the seed is fsx's defect, said so, and the next seed runs.
run_fsx() {
    mkdir -p "$WORK/fsx-artifacts"
    log=$WORK/fsx.log
    klog=$WORK/fsx-kernel.log
    ok() { grep -q 'All operations completed A-OK!' "$1"; }
    # fsx_on DIR LOG: seed $seed in DIR, its output in LOG; fsx's status.
    fsx_on() {
        rm -f "$1/fsx.dat"
        fsx -f "$SUITES_DIR/fsx.toml" -S "$seed" -N "$FSX_OPS" -P "$WORK/fsx-artifacts" "$1/fsx.dat" >"$2" 2>&1
    }
    seed=$FSX_SEED
    for _ in 1 2 3; do
        fsx_on "$MNT" "$log"
        rc=$?
        if [ $rc -eq 0 ] && ok "$log"; then
            echo "fsx: seed $seed, $FSX_OPS operations, no corruption"
            echo "fsx: $FSX_OPS passed, 0 failed"
            return
        fi
        fsx_on "$OTHER" "$klog"
        if ! ok "$klog" && [ "$(tail -1 "$log")" = "$(tail -1 "$klog")" ]; then
            echo "fsx: seed $seed fails on kernel tmpfs too, at the same operation ($(tail -1 "$klog" | sed 's/^\[ERROR fsx\] *//')): fsx's defect; next seed"
            seed=$((seed + 1))
            continue
        fi
        tail -30 "$log"
        echo "fsx: seed $seed: corruption or error (exit $rc); kernel tmpfs: $(ok "$klog" && echo passes || tail -1 "$klog")"
        echo "fsx: 0 passed, 1 failed"
        FAILED=1
        return
    done
    echo "fsx: three seeds in a row fail on kernel tmpfs too"
    echo "fsx: 0 passed, 1 failed"
    FAILED=1
}

run_stress_ng() {
    mkdir -p "$MNT/x"
    log=$WORK/stress-ng.log
    (cd "$MNT/x" && stress-ng --class filesystem --sequential 1 --timeout 1s \
        --exclude binderfs,procfs,verity --temp-path "$MNT/x" --verify --metrics-brief) >"$log" 2>&1
    rc=$?
    total=$(grep -o 'dispatching hogs: .*' "$log" | tr ',' '\n' | grep -c '[0-9] ')
    skipped=$(grep -c 'skipping stressor' "$log")
    failed=$(grep -cE 'stress-ng: fail:|: FAILED|failed with error' "$log")
    grep -E 'skipping stressor|fail' "$log" | sed 's/^/  /'
    if [ $rc -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
    passed=$((total - skipped - failed))
    echo "stress-ng: exit $rc"
    echo "stress-ng: $passed passed, $failed failed, $skipped skipped"
    [ $rc -eq 0 ] && [ "$failed" -eq 0 ] || FAILED=1
}

for s in $SUITES; do
    case $s in
        pjdfstest) run_pjdfstest ;;
        fsx) run_fsx ;;
        stress-ng) run_stress_ng ;;
        *) echo "suites: unknown suite $s" >&2; FAILED=1 ;;
    esac
done

if [ "$(snapshot)" != "$BEFORE" ]; then
    echo "suites: the host directory changed under the overlay"
    echo "host: 0 passed, 1 failed"
    FAILED=1
else
    echo "host: 1 passed, 0 failed"
fi
exit $FAILED
