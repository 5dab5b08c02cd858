#!/bin/bash
# bench/run.sh -- issue 7's benchmark in one command (as root):
#
#   1. the container-filesystem workloads of ../shared/bench/harness.sh (metadata storm, untar,
#      find/du, git, 1 GiB sequential I/O, fio random 4k, copy-up of a 256 MiB lower file, a walk
#      of a lower tree) on fresh mounts of kernel tmpfs, kernel overlayfs (a tmpfs upper over a
#      host lower directory), fuse-overlayfs (the same layers) and sandfs (`sandfs mount
#      --rootfs LOWER --overlay2 root:memory MNT --daemon`: a memory overlay over the same lower
#      directory, through the gofer); REPS reps, the order of the systems rotated every rep;
#   2. start-to-exit latency of `true` under `sandfs run`, `runc run` (a busybox bundle made by
#      `sandfs spec`), `bwrap --ro-bind / /` and `unshare --mount --pid --fork` (hyperfine);
#   3. resident memory of all sandfs processes (the mount server and its gofer) after creating
#      10,000 and 100,000 files in the upper layer (empty ones, and 100-byte ones);
#   4. the cold walks of bench/cold.sh (issue 14: find, git status, grep in a fresh `sandfs run`
#      against the host and bwrap; with BEFORE, against an earlier build too), last.
#
# It writes the section "## Container filesystem workloads" of BENCHMARKS.md (medians, ratios to
# kernel overlayfs, the goals of issue 7, machine and date), the chart bench/ratios.png and the
# raw lines bench/last-run.txt; part 4, bench/cold.sh's sections and its chart bench/cold.png.
# Everything it mounts lives under its own temporary directory and is unmounted by an EXIT trap,
# also when a step fails or the run is interrupted.
#
# Environment (RENDER=bench/last-run.txt re-renders a saved run and exits):
#   REPS=3            reps of the workload set per system
#   FIO_S=10          seconds of fio per rep (harness.sh's own default is 20)
#   SKIP=""           harness.sh workloads to skip ("c_ c_fio_randrw": prefixes or names)
#   TARGETS="tmpfs ovl fovl sandfs"
#   PARTS="fs startup memory cold"   which parts to run
#   STARTUP_RUNS=30   hyperfine runs per startup command
#   MEM_FILES="10000 100000"  MEM_SIZES="0 100"   the memory part's file counts and sizes
#   SANDFS=path       the sandfs binary (default: `cargo build --release -p sandfs-cli` here)
#   BEFORE=path  BEFORE_LABEL=text  PROFILE=0|1   for the cold part: an earlier sandfs build
#                     to compare with and what to call it, and whether to profile (see bench/cold.sh)
#   HARNESS=path      harness.sh (default ../shared/bench/harness.sh beside the repository)
#   BENCHMARKS=path   the Markdown file to update (default BENCHMARKS.md in the repository)
#   HARNESS_TIMEOUT=1800  seconds one harness run may take before it is stopped
#   NO_INSTALL=1      do not apt-get missing tools
#   SANDFS_NOFILE=n   start `sandfs mount` with RLIMIT_NOFILE n (soft and hard); by default it
#                     inherits this shell's limits, as a user's mount would
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
HERE=$REPO/bench
. "$HERE/lib.sh"
REPS=${REPS:-3}
export FIO_S=${FIO_S:-10}
export SKIP=${SKIP:-}
read -r -a TARGETS <<<"${TARGETS:-tmpfs ovl fovl sandfs}"
PARTS=${PARTS:-fs startup memory cold}
STARTUP_RUNS=${STARTUP_RUNS:-30}
MEM_FILES=${MEM_FILES:-10000 100000}
MEM_SIZES=${MEM_SIZES:-0 100}
HARNESS=${HARNESS:-$REPO/../shared/bench/harness.sh}
OUT_MD=${BENCHMARKS:-$REPO/BENCHMARKS.md}
HARNESS_TIMEOUT=${HARNESS_TIMEOUT:-1800}
HEADING="## Container filesystem workloads"

say() { echo "== bench/run.sh: $*" >&2; }
die() { echo "bench/run.sh: $*" >&2; exit 1; }
has_part() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }

if [ -n "${RENDER:-}" ]; then  # re-render a saved run: RENDER=bench/last-run.txt bench/run.sh
  sec=$(mktemp)
  "$(plot_python)" "$HERE/report.py" "$RENDER" "$sec" "$HERE/ratios.png" || exit 1
  replace_section "$OUT_MD" "$HEADING" "$sec"
  rm -f "$sec"; exit 0
fi
[ "$(id -u)" -eq 0 ] || die "needs root (it mounts tmpfs, overlayfs and FUSE filesystems)"
[ -f "$HARNESS" ] || die "no harness at $HARNESS (set HARNESS=path/to/harness.sh)"
HARNESS=$(cd "$(dirname "$HARNESS")" && pwd)/$(basename "$HARNESS")

# ----- tools, installed idempotently -----
# PY: a python3 with matplotlib, or empty.
with_matplotlib() { PY=$(plot_python); "$PY" -c 'import matplotlib' 2>/dev/null || PY=; }
with_matplotlib
need=()
for t in fuse-overlayfs:fuse-overlayfs fio:fio hyperfine:hyperfine bwrap:bubblewrap runc:runc \
         unshare:util-linux gcc:gcc git:git busybox:busybox-static; do
  command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
# bench/cold.sh's profile needs perf: without it the cold part would fail after all the others
if has_part cold && [ "${PROFILE:-1}" != 0 ] && ! command -v perf >/dev/null; then need+=(linux-perf); fi
[ -z "$PY" ] && need+=(python3-matplotlib)
if [ ${#need[@]} -gt 0 ]; then
  if [ -n "${NO_INSTALL:-}" ]; then
    say "missing: ${need[*]} (NO_INSTALL set; going on without them)"
  else
    say "installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null ||
      say "apt-get install failed; going on with what there is"
  fi
fi
[ -n "$PY" ] || with_matplotlib
if [ -z "$PY" ] && [ -z "${NO_INSTALL:-}" ] && command -v python3 >/dev/null; then
  python3 -m pip install --quiet matplotlib >/dev/null 2>&1 ||
    python3 -m pip install --quiet --break-system-packages matplotlib >/dev/null 2>&1
  python3 -c 'import matplotlib' 2>/dev/null && PY=python3
fi
[ -n "$PY" ] || { PY=$(command -v python3) || die "no python3"; say "no matplotlib: no chart"; }

if [ -z "${SANDFS:-}" ]; then
  say "building sandfs (release)"
  (cd "$REPO" && cargo build --release -q -p sandfs-cli) || die "cargo build --release -p sandfs-cli failed"
  SANDFS=$REPO/target/release/sandfs
fi
SANDFS=$(cd "$(dirname "$SANDFS")" && pwd)/$(basename "$SANDFS")
[ -x "$SANDFS" ] || die "no sandfs binary at $SANDFS"

# ----- our own temporary directory, and a trap that leaves nothing behind -----
W=$(mktemp -d "${TMPDIR:-/tmp}/sandfs-bench.XXXXXX") || die "mktemp"
export BENCH_CACHE=$W/cache
L=$W/lower; U=$W/up; M=$W/mnt; RUN=$W/run; RUNC_ROOT=$W/runc-state
mkdir -p "$BENCH_CACHE" "$U" "$M" "$RUN" || die "mkdir under $W"
SERVERS=()   # pids of FUSE servers this script started
HPID=        # the running harness (a subshell of this script)

mounts_under() {  # every mount point under $W, deepest first
  awk -v w="$W" '$2 == w || index($2, w "/") == 1 { print $2 }' /proc/self/mounts | sort -r
}
cleanup() {
  local rc=$? m p i
  set +e
  trap - EXIT INT TERM
  # a harness still running (interrupted): end it and everything it started
  [ -n "${HPID:-}" ] && kill -TERM $(tree_pids "$HPID") 2>/dev/null
  if [ -d "$RUNC_ROOT" ]; then
    for c in $(runc --root "$RUNC_ROOT" list -q 2>/dev/null); do runc --root "$RUNC_ROOT" delete -f "$c"; done
  fi
  for m in $(mounts_under); do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
  for p in "${SERVERS[@]}"; do
    for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && { kill -TERM "$p"; sleep 0.5; kill -KILL "$p" 2>/dev/null; }
  done
  for m in $(mounts_under); do umount -l "$m" 2>/dev/null; done
  if [ -n "$(mounts_under)" ]; then
    echo "bench/run.sh: still mounted, left in place: $(mounts_under | tr '\n' ' ')" >&2
  else
    rm -rf "$W"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

waitmnt() { local i; for i in $(seq 400); do mountpoint -q "$1" && return 0; sleep 0.05; done; return 1; }
# Wait up to $2 seconds for pid $1 to exit (it need not be our child); then kill it.
end_server() {
  local p=$1 i
  for i in $(seq $((${2:-10} * 10))); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  say "server $p still running after unmount: killing it"
  kill -TERM "$p" 2>/dev/null; sleep 1; kill -KILL "$p" 2>/dev/null
  return 0
}
# descendants of pid $1 (itself included)
tree_pids() {
  local f p line q=("$1") out=()
  local -A kids=()
  for f in /proc/[0-9]*/stat; do
    read -r line 2>/dev/null <"$f" || continue
    p=${f#/proc/}; p=${p%/stat}
    line=${line##*) }            # after "(comm) ": state ppid ...
    set -- $line
    kids[$2]+=" $p"
  done
  while [ ${#q[@]} -gt 0 ]; do
    p=${q[0]}; q=("${q[@]:1}"); out+=("$p")
    q+=(${kids[$p]:-})
  done
  echo "${out[@]}"
}

# ----- the lower layer: a 256 MiB file and a source tree, as harness.sh expects -----
say "seeding the lower layer in $L"
TAR=$BENCH_CACHE/tree.tar; export TAR
tar -cf "$TAR" -C /usr include || die "tar of /usr/include"
mkdir -p "$L/lowertree" || die "mkdir"
head -c 268435456 /dev/urandom >"$L/lower256.bin" || die "lower256.bin"
tar -xf "$TAR" -C "$L/lowertree" || die "lowertree"
sync

# ----- meta -----
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine=$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | sed 's/^[^:]*: *//'), $(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo); Linux $(uname -r)"
  echo "machine_short=$(nproc) vCPU, Linux $(uname -r | cut -d- -f1)"
  echo "load=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "reps=$REPS"
  echo "fio_s=$FIO_S"
  echo "skip=$SKIP"
  echo "harness=$(realpath --relative-to="$REPO" "$HARNESS")"
  echo "lower_desc=lower256.bin (256 MiB) + lowertree/ (/usr/include, $(find "$L/lowertree" | wc -l) entries) on $(df --output=fstype "$L" | tail -1)"
  echo "fovl_version=$(fuse-overlayfs --version 2>/dev/null | sed -n 's/^fuse-overlayfs: version *//p' | head -1)"
  echo "sandfs_rev=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null)$(cd "$REPO" && git diff --quiet HEAD 2>/dev/null || echo '+uncommitted changes')"
  echo "startup_runs=$STARTUP_RUNS"
  echo "startup_tool=hyperfine"
  echo "nofile=$(ulimit -Sn)/$(ulimit -Hn)${SANDFS_NOFILE:+, sandfs mount started with $SANDFS_NOFILE}"
} >"$RUN/meta.txt"

# ----- part 1: the harness on each system -----
SRV=
setup() {  # sets DIR (where the harness runs) and SRV (FUSE server pid, or empty)
  SRV=; DIR=
  mkdir -p "$M/$1"
  case $1 in
    tmpfs)  mount -t tmpfs -o size=6g none "$U" || return 1
            DIR=$U; cp "$L/lower256.bin" "$U"/ && cp -a "$L/lowertree" "$U"/ ;;
    ovl)    mount -t tmpfs -o size=6g none "$U" || return 1
            mkdir "$U/u" "$U/w"; DIR=$M/ovl
            mount -t overlay overlay -o "lowerdir=$L,upperdir=$U/u,workdir=$U/w" "$DIR" ;;
    fovl)   mount -t tmpfs -o size=6g none "$U" || return 1
            mkdir "$U/u" "$U/w"; DIR=$M/fovl
            fuse-overlayfs -f -o "lowerdir=$L,upperdir=$U/u,workdir=$U/w" "$DIR" >>"$RUN/fovl.log" 2>&1 </dev/null &
            SRV=$!; SERVERS+=("$SRV"); waitmnt "$DIR" ;;
    sandfs) DIR=$M/sandfs
            SRV=$(exec 2>>"$RUN/sandfs.log" </dev/null
                  if [ -n "${SANDFS_NOFILE:-}" ]; then ulimit -n "$SANDFS_NOFILE" || exit 1; fi
                  exec "$SANDFS" mount --rootfs "$L" --overlay2 root:memory "$DIR" --daemon) ||
              { echo "sandfs mount: $(tail -1 "$RUN/sandfs.log")"; SRV=; return 1; }
            SERVERS+=("$SRV"); waitmnt "$DIR" ;;
    *) echo "unknown target $1"; return 1 ;;
  esac
}
teardown() {
  case $1 in
    ovl|fovl|sandfs) mountpoint -q "$M/$1" && { umount "$M/$1" 2>/dev/null || umount -l "$M/$1"; } ;;
  esac
  [ -n "$SRV" ] && end_server "$SRV" 10
  mountpoint -q "$U" && { umount "$U" 2>/dev/null || umount -l "$U"; }
  SRV=
}

if has_part fs; then
  sync
  for ((r = 1; r <= REPS; r++)); do
    n=${#TARGETS[@]}
    for ((i = 0; i < n; i++)); do
      t=${TARGETS[$(((i + r - 1) % n))]}
      if ! setup "$t" >"$RUN/setup.err" 2>&1; then
        echo "# rep=$r target=$t setup failed: $(tail -2 "$RUN/setup.err" | tr '\n' ' ')" | tee -a "$RUN/harness.raw" >&2
        teardown "$t"; continue
      fi
      say "rep $r/$REPS: $t ($DIR)"
      echo "# rep=$r target=$t load=$(cut -d' ' -f1 /proc/loadavg)" >>"$RUN/harness.raw"
      # In the background and waited for, so that a signal to this script runs the trap at once.
      (
        SRV_PID=$SRV timeout -k 10 "$HARNESS_TIMEOUT" bash "$HARNESS" "$DIR" 2>>"$RUN/harness.err" |
          sed "s/^/$r $t /" | tee -a "$RUN/harness.raw" >&2
        exit "${PIPESTATUS[0]}"
      ) &
      HPID=$!
      wait "$HPID"; hrc=$?; HPID=
      [ "$hrc" = 124 ] && echo "# rep=$r target=$t timeout after ${HARNESS_TIMEOUT}s" >>"$RUN/harness.raw"
      if [ "$t" = sandfs ] && ! kill -0 "$SRV" 2>/dev/null; then
        echo "# rep=$r target=sandfs error: the sandfs mount server died during the run ($(tail -1 "$RUN/sandfs.log"))" >>"$RUN/harness.raw"
      fi
      teardown "$t"
    done
  done
fi

# ----- part 2: start-to-exit latency of `true` -----
startup_one() {  # NAME NOTE CMD...
  local name=$1 note=$2; shift 2
  local json=$RUN/startup-$name.json cmd="$*" err shown
  shown=${cmd//"$SANDFS"/sandfs}  # BENCHMARKS.md names no machine's paths
  if ! err=$( ( cd / && "$@" ) 2>&1 >/dev/null); then
    err=$(echo "$err" | sed '/^Stack backtrace/,$d' | grep -v '^[[:space:]]*$' | head -4 | tr '\t\n' '  ' | cut -c1-240)
    case $name:$SANDFS in sandfs_run:/tmp/*)
      err="$err (the binary is under /tmp, which sandfs run covers with its scratch tmpfs before re-executing itself by path)" ;;
    esac
    printf '%s\tfailed\t-\t-\t-\t0\t%s\t%s\n' "$name" "$cmd" "$err" >>"$RUN/startup.tsv"
    return
  fi
  if (cd / && hyperfine -N --style none --warmup 3 --runs "$STARTUP_RUNS" --export-json "$json" "$cmd") >/dev/null 2>"$RUN/hyperfine-$name.err"; then
    "$PY" - "$json" "$name" "$shown" "$note" >>"$RUN/startup.tsv" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print("\t".join([sys.argv[2], "ok", str(r["median"]), str(r["mean"]), str(r["stddev"] or 0), str(len(r["times"])), sys.argv[3], sys.argv[4]]))
EOF
  else
    printf '%s\tfailed\t-\t-\t-\t0\t%s\t%s\n' "$name" "$cmd" "hyperfine: $(tail -1 "$RUN/hyperfine-$name.err" | cut -c1-200)" >>"$RUN/startup.tsv"
  fi
}
if has_part startup; then
  say "startup latency"
  : >"$RUN/startup.tsv"
  startup_one sandfs_run "host / as the lower layer of a memory overlay, through FUSE" "$SANDFS" run -- true
  B=$W/bundle
  if bb_err=$("$SANDFS" spec --rootfs-busybox auto --bundle "$B" 2>&1) &&
     "$PY" - "$B/config.json" <<'EOF'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["args"] = ["true"]; c["process"]["terminal"] = False
json.dump(c, open(p, "w"), indent=1)
EOF
  then
    mkdir -p "$RUNC_ROOT"
    startup_one runc_run "busybox bundle from \`sandfs spec --rootfs-busybox auto\`, process.args [\"true\"]" \
      runc --root "$RUNC_ROOT" run -b "$B" sandfs-bench-$$
  else
    printf 'runc_run\tfailed\t-\t-\t-\t0\trunc run\tno bundle: %s\n' "$(echo "$bb_err" | tail -1 | cut -c1-200)" >>"$RUN/startup.tsv"
  fi
  startup_one bwrap "read-only bind of /" bwrap --ro-bind / / true
  startup_one unshare "new mount and pid namespaces" unshare --mount --pid --fork true
fi

# ----- part 3: memory of the sandfs processes per file in the upper layer -----
mem_sample() {  # LABEL BYTES FILES NOTE: sum VmRSS/VmHWM over the server and its descendants
  local rss=0 hwm=0 n=0 p v
  for p in $(tree_pids "$SRV"); do
    [ -r /proc/"$p"/status ] || continue
    v=$(awk '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 } END { print r + 0, h + 0 }' /proc/"$p"/status)
    rss=$((rss + ${v% *})); hwm=$((hwm + ${v#* })); n=$((n + 1))
  done
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$rss" "$hwm" "$n" "$4" >>"$RUN/memory.tsv"
}
if has_part memory; then
  : >"$RUN/memory.tsv"
  for size in $MEM_SIZES; do
    say "memory: files of $size bytes"
    if ! setup sandfs >"$RUN/setup.err" 2>&1 || [ -z "$SRV" ]; then
      printf 'setup\t%s\t-\t-\t-\t-\tsandfs mount failed: %s\n' "$size" "$(tail -1 "$RUN/setup.err")" >>"$RUN/memory.tsv"
      teardown sandfs; continue
    fi
    mem_sample mounted "$size" 0 "fresh mount"
    done_n=0; ok=1
    for want in $MEM_FILES; do
      if ! out=$("$PY" - "$DIR/memtest" "$done_n" "$want" "$size" 2>&1 <<'EOF'
import os, sys
top, lo, hi, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
data = b"x" * size
for i in range(lo, hi):
    d = f"{top}/d{i % 100:03d}"
    if i < 100:
        os.makedirs(d, exist_ok=True)
    fd = os.open(f"{d}/f{i:06d}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    if data:
        os.write(fd, data)
    os.close(fd)
EOF
      ); then
        printf 'create\t%s\t%s\t-\t-\t-\tFAILED creating files %s..%s: %s\n' "$size" "$want" "$done_n" "$want" "$(echo "$out" | tail -1 | cut -c1-200)" >>"$RUN/memory.tsv"
        ok=0; break
      fi
      done_n=$want
      sleep 1
      mem_sample created "$size" "$want" "after creating"
    done
    teardown sandfs
  done
fi

# ----- the report (of parts 1-3: with only the cold part, the last section stays as it is) -----
if has_part fs || has_part startup || has_part memory; then
  cp "$RUN/harness.raw" "$HERE/last-run.txt" 2>/dev/null || : >"$HERE/last-run.txt"
  {
    for f in startup.tsv memory.tsv meta.txt; do [ -f "$RUN/$f" ] && { echo "# $f"; cat "$RUN/$f"; }; done
  } >>"$HERE/last-run.txt"
  section=$RUN/section.md
  "$PY" "$HERE/report.py" "$RUN" "$section" "$HERE/ratios.png" || die "report.py failed"
  replace_section "$OUT_MD" "$HEADING" "$section"
  say "wrote \"$HEADING\" in $OUT_MD, $HERE/ratios.png and $HERE/last-run.txt"
  cat "$section"
fi

# ----- part 4: the cold walks, after the report so that a failure here loses none of the above -----
# The same binary and reps; BEFORE, BEFORE_LABEL, PROFILE (and NOTE, COLD_REPO) reach bench/cold.sh
# from the environment as they are.
if has_part cold; then
  say "cold walks (bench/cold.sh)"
  SANDFS=$SANDFS RUNS=$REPS BENCHMARKS=$OUT_MD bash "$HERE/cold.sh" || die "bench/cold.sh failed (exit $?)"
  say "wrote the cold-walk sections in $OUT_MD"
fi
