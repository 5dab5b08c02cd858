#!/bin/bash
# bench/requests.sh -- the profile behind issue 7's remaining gaps: for each workload of
# ../shared/bench/harness.sh, the FUSE requests the kernel sends sandfs (perf tracepoint
# fuse:fuse_request_send, recorded system-wide, counted per workload window), by opcode, with the wall
# time and the wall time per request. On a fresh `sandfs mount --rootfs LOWER
# --overlay2 root:memory MNT --daemon` over the same kind of lower layer bench/run.sh uses
# (/usr/include as lowertree/, a 256 MiB lower256.bin). Writes the section "## FUSE requests
# per workload (bench/requests.sh)" of BENCHMARKS.md. As root, with perf.
#
# Environment: SANDFS=path (default: cargo build --release here), BENCHMARKS=path,
# TAR=path (default: the harness's tree.tar in $BENCH_CACHE or /tmp/sandfs-bench).
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/bench/lib.sh"
OUT_MD=${BENCHMARKS:-$REPO/BENCHMARKS.md}
HEADING="## FUSE requests per workload (bench/requests.sh)"
CACHE=${BENCH_CACHE:-${TMPDIR:-/tmp}/sandfs-bench}
TAR=${TAR:-$CACHE/tree.tar}
die() { echo "bench/requests.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (mounts FUSE)"
command -v perf >/dev/null || die "needs perf"
if [ -z "${SANDFS:-}" ]; then
  (cd "$REPO" && cargo build --release -q -p sandfs-cli) || die "build failed"
  SANDFS=$REPO/target/release/sandfs
fi
mkdir -p "$CACHE" || die "mkdir $CACHE"
[ -f "$TAR" ] || { tar -cf "$TAR.tmp" -C /usr include && mv "$TAR.tmp" "$TAR"; } || die "tar"
STORM=$CACHE/storm
[ -x "$STORM" ] || gcc -O2 -o "$STORM" "$REPO/../shared/bench/storm.c" || die "storm.c"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sandfs-requests.XXXXXX") || die "mktemp"
L=$TMP/lower M=$TMP/mnt
cleanup() {
  cd / || true
  if mountpoint -q "$M" 2>/dev/null; then umount "$M" 2>/dev/null || umount -l "$M"; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$L/lowertree" "$M" || die "mkdir"
tar -xf "$TAR" -C "$L/lowertree" || die "lowertree"
head -c 268435456 /dev/urandom >"$L/lower256.bin" || die "lower256.bin"
"$SANDFS" mount --rootfs "$L" --overlay2 root:memory "$M" --daemon >"$TMP/mount.log" 2>&1 || die "mount: $(cat "$TMP/mount.log")"
W=$M/work
mkdir "$W" "$W/s" || die "mkdir work"
cd "$W" || die "cd"

# One system-wide recording for the whole run; each workload is the window between two
# CLOCK_MONOTONIC stamps (perf's -k mono clock), its wall time taken without perf in the way.
mono() { python3 -c 'import time; print("%.6f" % time.clock_gettime(time.CLOCK_MONOTONIC))'; }
windows=$TMP/windows
: >"$windows"
perf record -q -a -k mono -e fuse:fuse_request_send -o "$TMP/perf.data" 2>"$TMP/perf.err" &
PERF=$!
trap 'kill -INT $PERF 2>/dev/null; wait $PERF 2>/dev/null; cleanup' EXIT
sleep 1
# measure NAME ITEMS CMD...: run CMD, note its window and wall time (ITEMS: what a per-item
# count divides by, 0 for none).
measure() {
  local name=$1 items=$2 m0 m1 t0 t1
  shift 2
  m0=$(mono)
  t0=$(date +%s%N)
  "$@" >/dev/null 2>"$TMP/err" || die "$name failed: $(head -c 300 "$TMP/err")"
  t1=$(date +%s%N)
  sleep 0.05 # the last RELEASEs of the workload are sent after its processes end
  m1=$(mono)
  echo "$name $items $m0 $m1 $(((t1 - t0) / 1000000))" >>"$windows"
  echo "== $name: $(((t1 - t0) / 1000000)) ms" >&2
}

# As harness.sh, but without git's background gc/maintenance, whose requests would land in
# the next workload's window.
G="git -c user.name=h -c user.email=h@h -c init.defaultBranch=m -c gc.auto=0 -c maintenance.auto=false -C tree"
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
files=$(tar -tf "$TAR" | grep -vc '/$')
lower_files=$(find "$L/lowertree" -type f | wc -l)
lower_entries=$(find "$L/lowertree" | wc -l)
measure a_create 10000 "$STORM" c s
measure a_stat 10000 "$STORM" s s
measure a_list 100 "$STORM" l s
measure a_delete 10000 "$STORM" d s
mkdir tree
measure b_untar "$files" tar -xf "$TAR" -C tree
measure b_find "$files" sh -c 'find tree | wc -l'
measure b_du "$files" du -s tree
$G init -q
measure e_git_add "$files" $G add -A
measure e_git_status "$files" $G status --porcelain
measure e_git_commit "$files" $G commit -q -m x
measure e_rm_tree "$files" rm -rf tree
measure d_read_lower 0 dd if="$M/lower256.bin" of=/dev/null bs=1M
measure f_find "$lower_entries" sh -c "find '$M/lowertree' | wc -l"
measure f_du "$lower_entries" du -s "$M/lowertree"
measure f_cat_all "$lower_files" sh -c "find '$M/lowertree' -type f -print0 | xargs -0 cat >/dev/null"

kill -INT $PERF
wait $PERF
perf script -i "$TMP/perf.data" -F time,trace 2>/dev/null | sed -n 's/^ *\([0-9.]*\):.*(FUSE_\([A-Z_]*\)).*/\1 \2/p' >"$TMP/events"
rows=$(python3 - "$windows" "$TMP/events" <<'PY'
import sys, bisect, collections
wins = [l.split() for l in open(sys.argv[1])]
ev = sorted((float(t), op) for t, op in (l.split() for l in open(sys.argv[2])))
times = [t for t, _ in ev]
for name, items, m0, m1, ms in wins:
    lo, hi = bisect.bisect_left(times, float(m0)), bisect.bisect_right(times, float(m1))
    ops = collections.Counter(op for _, op in ev[lo:hi])
    n = sum(ops.values())
    per = f"{n / int(items):.1f}" if int(items) > 0 else "-"
    us = f"{int(ms) * 1000 / n:.1f}" if n else "-"
    by = ", ".join(f"{op} {c}" for op, c in ops.most_common())
    print(f"| {name} | {ms} ms | {n} | {per} | {us} | {by} |")
PY
)
sec=$TMP/section
{
  echo "$HEADING"
  echo
  echo "Why the metadata workloads stay above their goals: they are bound by FUSE round trips, not by"
  echo "sandfs's own work. Each workload of \`harness.sh\` once, on a fresh sandfs mount (memory overlay over"
  echo "a lower layer of the same kind as bench/run.sh's), timed on its own, with the requests the kernel"
  echo "sent during it counted by the perf tracepoint \`fuse:fuse_request_send\` (recorded system-wide)."
  echo "\"Per item\" divides by the files of the workload (a_list: directories; f_*: the lower tree's"
  echo "entries, or files for f_cat_all); \"µs per request\" is wall time over requests: how long the"
  echo "program waited for each, sandfs's work and both wake-ups included. git runs without its"
  echo "background gc (\`gc.auto=0\`), whose requests would otherwise land in the next window."
  echo
  echo "| workload | wall | FUSE requests | per item | µs per request | by opcode |"
  echo "|---|---|---|---|---|---|"
  echo "$rows"
  echo
  machine_line
  echo
} >"$sec"
cat "$sec"
replace_section "$OUT_MD" "$HEADING" "$sec"
