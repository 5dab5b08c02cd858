#!/bin/bash
# bench/engines.sh -- sandfs as podman's OCI runtime, against runc and crun, in one run (as root):
#
#   1. `podman run --rm IMAGE true`, wall time of the podman command, RUNS times per runtime;
#   2. `podman exec CTR true` into one running container per runtime, RUNS times per runtime;
#      both with the runtimes interleaved run by run (A B C, B C A, C A B, ...: background
#      load hits all alike), after 2 warm-up runs each; medians and p10-p90;
#   3. idle memory: CONTAINERS containers `podman run -d IMAGE sleep 1000` at once, for sandfs
#      then for runc: Pss and Rss (/proc/PID/smaps_rollup) of sandfs's processes (the
#      per-container monitor `sandfs create` and its `sandfs gofer` children), of the
#      containers' own programs and of conmon, each container's memory cgroup usage and how
#      much the cgroup of the conmons grew (cgroup v1 memory controller, as on this machine);
#   4. unless PROFILE=0: where the time goes, from one more batch of PROFILE_RUNS runs and execs
#      per runtime under `perf record -a` of process exec/fork/exit events and CPU samples
#      (every 0.2 ms): how long each runtime call (create, start, delete, exec, ...) lasts, the
#      CPU time of create's and exec's process trees and how much of it is in libseccomp, and
#      inside sandfs's create when the monitor, each gofer and the sandbox process start.
# The section ends with what dominates sandfs's cost, worded from these figures.
#
# Writes the section "## Engines (bench/engines.sh)" of BENCHMARKS.md (replaced if present).
# Environment: RUNS=20, CONTAINERS=20, PROFILE=1, PROFILE_RUNS=5, SANDFS=path (default: a
# release build here), BENCHMARKS=path, KEEP=1 (keep the temp dir).
#
# The engine setup is scripts/engines.sh's: the script re-executes itself in a private mount
# and network namespace with tmpfs over /run and /var/lib/containers, podman's state in one
# mktemp -d dir, the busybox-static image made with `podman import`, cgroupfs manager,
# default_ulimits nofile=1024:1024 nproc=1024:1024 (podman's own defaults fail on this machine,
# with runc too), the containers under a cgroup parent named after the temp dir. crun 1.8
# refuses this hybrid cgroup layout unless /sys/fs/cgroup/unified is hidden, so every podman
# command runs through `nsenter --mount` into a mount namespace of its runtime's own, kept by
# a holder process: crun's has a tmpfs over /sys/fs/cgroup/unified, sandfs's and runc's the
# host's layout (the same nsenter for all three, so the same cost). The exit trap removes the
# containers, ends every process left in those namespaces and cgroups and removes the dir.
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/bench/lib.sh"
. "$REPO/scripts/podman-env.sh"
die() { echo "bench/engines.sh: $*" >&2; exit 1; }
RUNS=${RUNS:-20}
CONTAINERS=${CONTAINERS:-20}
PROFILE=${PROFILE:-1}
PROFILE_RUNS=${PROFILE_RUNS:-5}
TMO=120 # seconds, any one podman command
HEADING="## Engines (bench/engines.sh)"

# --- outer half: build, temp dir, namespaces, last-resort cleanup --------------------------
if [ "${BENCH_ENGINES_INNER:-}" != 1 ]; then
  OUT_MD=${BENCHMARKS:-$REPO/BENCHMARKS.md}
  [ "$(id -u)" = 0 ] || die "run as root (container engines, namespaces)"
  for t in podman conmon unshare nsenter timeout python3 busybox; do
    command -v $t >/dev/null || die "$t is missing (scripts/install-deps.sh)"
  done
  [ -x /usr/sbin/runc ] || die "/usr/sbin/runc is missing (scripts/install-deps.sh)"
  if [ "$PROFILE" = 1 ] && ! command -v perf >/dev/null; then die "the profile needs perf (PROFILE=0 to skip it)"; fi
  if [ -z "${SANDFS:-}" ]; then
    # The default target dir: cargo waits for the lock when another build holds it.
    (cd "$REPO" && cargo build --release -q -p sandfs-cli) || die "build failed"
    SANDFS=$REPO/target/release/sandfs
  fi
  case $SANDFS in /*) ;; *) SANDFS=$PWD/$SANDFS ;; esac
  [ -x "$SANDFS" ] || die "$SANDFS is not executable"
  T=$(mktemp -d /tmp/sandfs-engines.XXXXXX) || die mktemp
  chmod 755 "$T"
  made=""
  [ -d /var/lib/containers ] || { mkdir -p /var/lib/containers && made=/var/lib/containers; }
  inner=""
  outer_cleanup() {
    trap '' INT TERM
    if [ -n "$inner" ]; then
      kill -TERM "$inner" 2>/dev/null
      wait "$inner" 2>/dev/null
    fi
    # Anything still alive in this run's mount namespaces was started by it.
    if [ -s "$T/mntns" ]; then
      for p in /proc/[0-9]*; do
        ns=$(readlink "$p/ns/mnt" 2>/dev/null) || continue
        grep -qxF "$ns" "$T/mntns" && kill -KILL "${p#/proc/}" 2>/dev/null
      done
    fi
    if [ "${KEEP:-}" = 1 ]; then echo "bench/engines.sh: kept $T" >&2; else rm -rf "$T"; fi
    [ -z "$made" ] || rmdir "$made" 2>/dev/null
  }
  trap outer_cleanup EXIT
  trap 'kill -TERM "$inner" 2>/dev/null' INT TERM
  BENCH_ENGINES_INNER=1 BENCH_T=$T SANDFS=$SANDFS \
    unshare --mount --net --propagation private -- /bin/bash "$0" "$@" &
  inner=$!
  while :; do
    wait "$inner"
    rc=$?
    kill -0 "$inner" 2>/dev/null || break
  done
  inner=""
  [ "$rc" = 0 ] && [ -s "$T/section" ] || die "the measurement failed (exit $rc)"
  replace_section "$OUT_MD" "$HEADING" "$T/section"
  echo "bench/engines.sh: wrote the Engines section of $OUT_MD"
  exit 0
fi

# --- inner half: in the private mount and network namespaces -------------------------------
T=$BENCH_T
readlink /proc/self/ns/mnt >>"$T/mntns"
mkdir -p "$T/tmp" "$T/run" "$T/storage" "$T/networks" "$T/podman-tmp" "$T/wrap"
export TMPDIR=$T/tmp
mount -t tmpfs -o mode=755 bench-run /run || die "cannot mount a tmpfs on /run"
mount -t tmpfs -o mode=700 bench-varlib /var/lib/containers || die "cannot mount a tmpfs on /var/lib/containers"
ip link set lo up
CG=$(basename "$T")
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A BIN=([sandfs]=$SANDFS [runc]=/usr/sbin/runc [crun]=/usr/bin/crun)
declare -A HOLDER=()
ALL=(sandfs runc crun)
RTS=() # the runtimes that work
CRUN_NOTE=""

cgdirs() { for d in /sys/fs/cgroup/*/"$CG"; do [ -d "$d" ] && echo "$d"; done; }
inner_cleanup() {
  trap '' INT TERM
  for rt in "${!HOLDER[@]}"; do
    ids=$(pod "$rt" ps -aq --filter "label=bench.rt=$rt" 2>/dev/null)
    [ -z "$ids" ] || pod "$rt" rm -f -t 0 $ids >/dev/null 2>&1
  done
  for round in 1 2; do
    for d in $(cgdirs); do
      find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null
    done
    for p in /proc/[0-9]*; do
      pid=${p#/proc/}
      [ "$pid" = $$ ] && continue
      ns=$(readlink "$p/ns/mnt" 2>/dev/null) || continue
      grep -qxF "$ns" "$T/mntns" || continue
      # not this shell's own helpers (subshells, command substitutions)
      [ "$(awk '{print $4}' "$p/stat" 2>/dev/null)" = $$ ] && continue
      kill -KILL "$pid" 2>/dev/null
    done
    sleep 0.3
  done
  awk -v t="$T" 'index($5, t) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  done
  for d in $(cgdirs); do find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null; done
}
trap inner_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The image: a busybox-static rootfs.
busybox_tar "$T" || die "busybox rootfs"

# podman: three named runtimes; a wrapper of the same basename per runtime for the profile
# (it logs its pid and arguments, then execs the runtime: the runtime keeps the wrapper's pid).
confs=()
for rt in "${ALL[@]}"; do confs+=("$rt=${BIN[$rt]}"); done
podman_confs "$T" "" "${confs[@]}"
for rt in "${ALL[@]}"; do
  printf '#!/bin/sh\necho "$$ %s $*" >> %s/calls\nexec %s "$@"\n' "$rt" "$T" "${BIN[$rt]}" >"$T/wrap/$rt"
  chmod 755 "$T/wrap/$rt"
done
P=(podman --root "$T/storage" --runroot "$T/run" --cgroup-manager cgroupfs --events-backend file)
IMG=localhost/bench-busybox:latest
"${P[@]}" import --change 'CMD ["/bin/sh"]' "$T/busybox.tar" $IMG >/dev/null 2>"$T/err" || die "podman import: $(tail -2 "$T/err")"

# The holders: one mount namespace per runtime.
for rt in "${ALL[@]}"; do
  [ -x "${BIN[$rt]}" ] || continue
  rm -f "$T/ready"
  unshare --mount --propagation private -- /bin/sh -c '
    if [ "$1" = crun ] && [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]; then
      mount -t tmpfs -o mode=755 bench-no-cgroup2 /sys/fs/cgroup/unified || exit 1
    fi
    readlink /proc/self/ns/mnt >> "$2/mntns"
    touch "$2/ready"
    exec sleep 100000' holder "$rt" "$T" &
  HOLDER[$rt]=$!
  for _ in $(seq 50); do [ -e "$T/ready" ] && break; sleep 0.1; done
  [ -e "$T/ready" ] || die "the holder namespace for $rt did not come up"
done
# pod RT ARGS...: a podman command with runtime RT (a name, or the wrapper with PROFILING=1).
pod() {
  local rt=$1 r=$1
  shift
  [ "${PROFILING:-}" = 1 ] && r=$T/wrap/$rt
  timeout -k 5 $TMO nsenter --mount="/proc/${HOLDER[$rt]}/ns/mnt" -- "${P[@]}" --runtime "$r" "$@"
}
RUN=(run --cgroup-parent "/$CG")
# The label lets the cleanup find each runtime's containers.
run_rm() { pod "$1" "${RUN[@]}" --label "bench.rt=$1" --rm $IMG true; }
exec_true() { pod "$1" exec "b-exec-$1" true; }

# Which runtimes work here.
for rt in "${ALL[@]}"; do
  if [ -z "${HOLDER[$rt]:-}" ]; then
    [ $rt = crun ] && CRUN_NOTE="crun is not installed" && continue
    die "${BIN[$rt]} is missing"
  fi
  if run_rm "$rt" >/dev/null 2>"$T/err"; then
    RTS+=("$rt")
  else
    why=$(grep -i error "$T/err" | tail -1 | cut -c1-200)
    [ $rt = crun ] || die "$rt cannot run a container: $why"
    CRUN_NOTE="crun ($(crun --version | head -1)) failed even with /sys/fs/cgroup/unified hidden: $why"
  fi
done
echo "runtimes: ${RTS[*]}${CRUN_NOTE:+ ($CRUN_NOTE)}" >&2
NRT=${#RTS[@]}

# timed PHASE FN RT: one run of FN with runtime RT, which must succeed; its "phase runtime
# time" line (hundredths of a ms) in $T/times.
timed() {
  local phase=$1 fn=$2 rt=$3 t0 t1
  t0=$EPOCHREALTIME
  "$fn" "$rt" >/dev/null 2>"$T/err" || die "$phase with $rt failed: $(tail -2 "$T/err")"
  t1=$EPOCHREALTIME
  echo "$phase $rt $(((${t1/./} - ${t0/./}) / 10))" >>"$T/times"
}

# start_exec RT: the container the exec phases exec into.
start_exec() {
  pod "$1" "${RUN[@]}" --label "bench.rt=$1" -d --name "b-exec-$1" $IMG sleep 1000 >/dev/null 2>"$T/err" ||
    die "run -d with $1: $(tail -2 "$T/err")"
}

# interleave PHASE FN: 2 warm-up runs per runtime, then RUNS rounds, the order rotated every
# round.
interleave() {
  local phase=$1 fn=$2 i k rt
  for ((i = 0; i < 2; i++)); do
    for rt in "${RTS[@]}"; do "$fn" "$rt" >/dev/null 2>&1; done
  done
  for ((i = 0; i < RUNS; i++)); do
    for ((k = 0; k < NRT; k++)); do
      timed "$phase" "$fn" "${RTS[$(((k + i) % NRT))]}"
    done
    echo "== $phase: round $((i + 1)) of $RUNS: $(tail -n $NRT "$T/times" | awk '{printf "%s %.1f ms  ", $2, $3 / 100}')" >&2
  done
}
: >"$T/times"
interleave run run_rm
for rt in "${RTS[@]}"; do start_exec "$rt"; done
interleave exec exec_true
for rt in "${RTS[@]}"; do pod "$rt" rm -f -t 0 "b-exec-$rt" >/dev/null 2>&1; done

# Idle memory: CONTAINERS sleeping containers of one runtime at a time.
MEMCG=/sys/fs/cgroup/memory/$CG
for rt in sandfs runc; do
  # The conmons' cgroup before, for its growth (it keeps charges of earlier runs: page cache).
  { cat "$MEMCG/conmon/memory.usage_in_bytes"; cat "$MEMCG/conmon/memory.stat"; } >"$T/conmon-before" 2>/dev/null
  for ((i = 1; i <= CONTAINERS; i++)); do
    pod "$rt" "${RUN[@]}" --label "bench.rt=$rt" -d --name "b-idle-$rt-$i" $IMG sleep 1000 >/dev/null 2>"$T/err" ||
      die "run -d #$i with $rt: $(tail -2 "$T/err")"
  done
  sleep 3
  python3 - "$MEMCG" "$SANDFS" "$rt" "$T/conmon-before" >"$T/mem.$rt" <<'PY' || die "memory of $rt"
import os, sys, json
memcg, sandfs, rt, before = sys.argv[1:5]
def kb(pid):
    d = {}
    try:
        for l in open(f"/proc/{pid}/smaps_rollup"):
            f = l.split()
            if f[0] in ("Rss:", "Pss:", "Pss_Anon:"): d[f[0][:-1]] = int(f[1])
    except OSError: pass
    return d
def role(pid):
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except OSError: return None
    if exe == sandfs and len(argv) > 1:
        a = argv[1].decode()
        return {"create": "monitor", "gofer": "gofer"}.get(a, "sandfs-" + a)
    return "program"
out = {"rt": rt, "containers": 0, "roles": {}, "cg_usage": [], "cg_rss": [], "cg_cache": []}
def add(r, pid):
    m = kb(pid)
    s = out["roles"].setdefault(r, {"n": 0, "Rss": 0, "Pss": 0, "Pss_Anon": 0})
    s["n"] += 1
    for k in ("Rss", "Pss", "Pss_Anon"): s[k] += m.get(k, 0)
for name in sorted(os.listdir(memcg)):
    d = os.path.join(memcg, name)
    if not os.path.isdir(d): continue
    procs = [int(p) for p in open(os.path.join(d, "cgroup.procs")).read().split()]
    if name.startswith("libpod-"):
        out["containers"] += 1
        out["cg_usage"].append(int(open(os.path.join(d, "memory.usage_in_bytes")).read()))
        st = dict(l.split() for l in open(os.path.join(d, "memory.stat")))
        out["cg_rss"].append(int(st["total_rss"]))
        out["cg_cache"].append(int(st["total_cache"]))
        for p in procs:
            r = role(p)
            if r: add(r, p)
    elif name == "conmon":
        b = open(before).read().split("\n")
        bst = dict(l.split() for l in b[1:] if l.strip())
        st = dict(l.split() for l in open(os.path.join(d, "memory.stat")))
        out["conmon_cg_growth"] = int(open(os.path.join(d, "memory.usage_in_bytes")).read()) - int(b[0])
        out["conmon_cg_rss_growth"] = int(st["total_rss"]) - int(bst["total_rss"])
        for p in procs: add("conmon", p)
json.dump(out, sys.stdout)
PY
  echo "== memory with $rt: $(cat "$T/mem.$rt")" >&2
  ids=$(pod "$rt" ps -aq --filter "label=bench.rt=$rt")
  [ -z "$ids" ] || pod "$rt" rm -f -t 0 $ids >/dev/null 2>&1
done

# The profile: runtime calls through the wrappers, under perf (exec, fork and exit events).
if [ "$PROFILE" = 1 ]; then
  : >"$T/calls"
  perf record -q -a -o "$T/perf.data" -e sched:sched_process_exec -e sched:sched_process_fork \
    -e sched:sched_process_exit -e cpu-clock -c 200000 -- sleep 100000 >/dev/null 2>"$T/perf.err" &
  PERF=$!
  sleep 1
  PROFILING=1
  echo "profile: ${RTS[*]}: $PROFILE_RUNS runs and execs each under perf" >&2
  for rt in "${RTS[@]}"; do
    for ((i = 0; i < PROFILE_RUNS; i++)); do timed prun run_rm "$rt"; done
    start_exec "$rt"
    for ((i = 0; i < PROFILE_RUNS; i++)); do timed pexec exec_true "$rt"; done
    pod "$rt" rm -f -t 0 "b-exec-$rt" >/dev/null 2>&1
  done
  PROFILING=0
  sleep 1
  kill -INT $PERF
  wait $PERF
  perf script -i "$T/perf.data" --ns -F trace:pid,time,event,trace -F sw:pid,time,event,ip,dso >"$T/perf.txt" 2>/dev/null ||
    die "perf script: $(tail -2 "$T/perf.err")"
  rm -f "$T/perf.data"
fi

# The section.
python3 - "$T" "$RUNS" "$CONTAINERS" "$PROFILE" "$SANDFS" "$CRUN_NOTE" "$PROFILE_RUNS" \
  "$(cd "$REPO" && git rev-parse --short HEAD)$(cd "$REPO" && git diff --quiet HEAD -- crates Cargo.toml Cargo.lock || echo +uncommitted)" \
  "$(podman --version | awk '{print $3}')" "$(/usr/sbin/runc --version | awk 'NR==1{print $3}')" \
  "$(crun --version 2>/dev/null | awk 'NR==1{print $3}')" "$(conmon --version | awk 'NR==1{print $3}')" \
  "${RTS[*]}" >"$T/section.body" <<'PY' || die "the section"
import sys, os, re, json, statistics, collections
T, runs, ncont, profile, sandfs, crun_note, pruns, rev, v_podman, v_runc, v_crun, v_conmon, rts = sys.argv[1:14]
rts = rts.split()
times = collections.defaultdict(list)
for l in open(os.path.join(T, "times")):
    ph, rt, v = l.split()
    times[ph, rt].append(int(v) / 100)
def q(xs, p):
    xs = sorted(xs); k = (len(xs) - 1) * p; f = int(k); c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)
med = lambda xs: statistics.median(xs) if xs else float("nan")
def cell(ph, rt):
    xs = times[ph, rt]
    return f"**{med(xs):.0f} ms** ({q(xs, .1):.0f}–{q(xs, .9):.0f})"
def ratio(ph, rt): return f"{med(times[ph, rt]) / med(times[ph, 'runc']):.2f}x"
out = []
w = out.append
names = {"sandfs": f"sandfs (release build, {rev})", "runc": f"runc {v_runc}", "crun": f"crun {v_crun}"}
w(f"podman {v_podman} (conmon {v_conmon}; cgroupfs manager, overlay storage, the default bridge network) with each runtime "
  f"as `--runtime`, set up as `scripts/engines.sh` does (private state, a busybox-static image from `podman import`). "
  f"Wall time of the podman command, {runs} runs per runtime interleaved run by run (the order rotated every round) after 2 "
  f"warm-ups each: median and p10–p90; ratio = median / runc's. Figures from a shared 2-CPU machine, where another "
  f"engineer's `cargo test` builds run at times: single runs spread as the p10–p90 shows.")
w("")
w("| runtime | `podman run --rm IMAGE true` | ratio | `podman exec CTR true` | ratio |")
w("|---|---|---|---|---|")
for rt in ["sandfs", "runc", "crun"]:
    if rt in rts:
        w(f"| {names[rt]} | {cell('run', rt)} | {ratio('run', rt)} | {cell('exec', rt)} | {ratio('exec', rt)} |")
    else:
        w(f"| {names.get(rt, rt)} | not measured | | not measured | |")
if crun_note:
    w(""); w(f"crun: {crun_note}.")

# memory
mem = {rt: json.load(open(os.path.join(T, f"mem.{rt}"))) for rt in ("sandfs", "runc")}
def mib(kb): return f"{kb / 1024:.1f} MiB"
def get(rt, roles, k="Pss"): return sum(mem[rt]["roles"].get(r, {}).get(k, 0) for r in roles)
def n(rt, r): return mem[rt]["roles"].get(r, {}).get("n", 0)
cs, cr = mem["sandfs"]["containers"], mem["runc"]["containers"]
RT = ("monitor", "gofer")
w("")
w(f"Idle memory: {ncont} containers `podman run -d IMAGE sleep 1000` at once, sandfs's and then (those removed) runc's; "
  f"Pss and Rss summed from `/proc/PID/smaps_rollup` 3 s after the last start (Pss splits a shared page among the processes "
  f"mapping it, so the sum is what they cost together; Rss counts e.g. the sandfs binary's pages once per process).")
w("")
w("| processes | sandfs: Pss, all | Pss per container | Rss per container | runc: Pss, all | Pss per container |")
w("|---|---|---|---|---|---|")
w(f"| the runtime: sandfs's monitor (`sandfs create`) and its gofers (`sandfs gofer`, {n('sandfs', 'gofer') / cs:.0f} per container); "
  f"runc leaves no process | **{mib(get('sandfs', RT))}** | **{mib(get('sandfs', RT) / cs)}** | {mib(get('sandfs', RT, 'Rss') / cs)} | 0 | 0 |")
for r, what in (("monitor", "the monitors"), ("gofer", "the gofers")):
    w(f"| of which {what} | {mib(get('sandfs', [r]))} | {mib(get('sandfs', [r]) / cs)} | {mib(get('sandfs', [r], 'Rss') / cs)} | | |")
w(f"| the container's program (busybox `sleep`), for reference | {mib(get('sandfs', ['program']))} | {mib(get('sandfs', ['program']) / cs)} | "
  f"{mib(get('sandfs', ['program'], 'Rss') / cs)} | {mib(get('runc', ['program']))} | {mib(get('runc', ['program']) / cr)} |")
w(f"| conmon (podman's, one per container, the same whatever the runtime), for reference | {mib(get('sandfs', ['conmon']))} | "
  f"{mib(get('sandfs', ['conmon']) / cs)} | {mib(get('sandfs', ['conmon'], 'Rss') / cs)} | {mib(get('runc', ['conmon']))} | "
  f"{mib(get('runc', ['conmon']) / cr)} |")
extra = [r for r in mem["sandfs"]["roles"] if r not in ("monitor", "gofer", "program", "conmon")]
if extra: w(f"| other sandfs processes ({', '.join(extra)}) | {mib(get('sandfs', extra))} | | | | |")
def mc(rt, k): return med(mem[rt][k]) / 1048576
def cgrow(rt):
    m = mem[rt]
    return (f"**{m['conmon_cg_growth'] / 1048576:.1f} MiB** (rss {m['conmon_cg_rss_growth'] / 1048576:.1f} MiB, "
            f"{m['conmon_cg_rss_growth'] / 1048576 / m['containers']:.1f} MiB per container)")
w("")
w(f"Memory cgroups (v1 `memory.usage_in_bytes`): one container's, median, sandfs **{mc('sandfs', 'cg_usage'):.1f} MiB** "
  f"(rss {mc('sandfs', 'cg_rss'):.1f}, page cache {mc('sandfs', 'cg_cache'):.1f}), runc **{mc('runc', 'cg_usage'):.1f} MiB** "
  f"(rss {mc('runc', 'cg_rss'):.1f}, page cache {mc('runc', 'cg_cache'):.1f}); growth of the cgroup podman puts all "
  f"conmons in, over the start of the {ncont}: {cgrow('sandfs')} with sandfs, {cgrow('runc')} with runc.")

# profile
g, dur, cpu, secc = {}, {}, {}, {}
if profile == "1":
    calls = {}
    verbs_all = ("create", "start", "delete", "kill", "state", "exec", "features", "pause", "resume", "update", "ps", "list")
    for l in open(os.path.join(T, "calls")):
        f = l.split()
        calls[int(f[0])] = (f[1], next((a for a in f[2:] if a in verbs_all), "?"))
    ev = []  # (time, kind, pid, filename or child pid)
    samples = []  # (time, pid, what): CPU samples, 0.2 ms each
    period = 0.2
    for l in open(os.path.join(T, "perf.txt")):
        m = re.match(r"\s*(\d+)\s+(\d+)\.(\d+):\s+(?:sched:)?(\S+):\s*(.*)$", l)
        if not m: continue
        t = int(m.group(2)) + int(m.group(3)) / 1e9
        pid, kind, rest = int(m.group(1)), m.group(4), m.group(5)
        if kind == "cpu-clock":
            if pid: samples.append((t, pid, "libseccomp" if "libseccomp" in rest else "kernel" if "kernel" in rest else "other"))
        elif kind == "sched_process_exec":
            ev.append((t, "exec", pid, re.search(r"filename=(\S+)", rest).group(1)))
        elif kind == "sched_process_fork":
            ev.append((t, "fork", pid, int(re.search(r"child_pid=(\d+)", rest).group(1))))
        elif kind == "sched_process_exit" and "group_dead=true" in rest:
            # the process's end: its last thread's exit (the sample's pid is the thread group's)
            ev.append((t, "exit", pid, ""))
    ev.sort(key=lambda e: e[0])
    # A call's process: the wrapper's pid, from its exec of the runtime (the first exec of
    # that pid not of the wrapper itself) to its exit.
    wrap = os.path.join(T, "wrap") + "/"
    start, end = {}, {}
    for t, k, pid, x in ev:
        if pid not in calls: continue
        if k == "exec" and pid not in start and not x.startswith(wrap): start[pid] = t
        elif k == "exit" and pid in start and pid not in end: end[pid] = t
    dur, cpu, secc = collections.defaultdict(list), collections.defaultdict(list), collections.defaultdict(list)
    gaps = collections.defaultdict(list)
    for pid, (rt, verb) in calls.items():
        if pid not in start or pid not in end: continue
        s, e = start[pid], end[pid]
        dur[rt, verb].append((e - s) * 1000)
        if verb not in ("create", "exec"): continue
        # CPU of the call's process tree (it and what it forks: runc init; sandfs's monitor,
        # gofers and sandbox process) while the call lasts, and of that in libseccomp.
        tree = {pid}
        for t, k, p, x in ev:
            if k == "fork" and s <= t <= e and p in tree: tree.add(x)
        mine = [(t, what) for t, p, what in samples if s <= t <= e and p in tree]
        cpu[rt, verb].append(len(mine) * period)
        secc[rt, verb].append(sum(period for t, what in mine if what == "libseccomp"))
        if rt != "sandfs" or verb != "create": continue
        # Inside sandfs's create: the monitor's fork, the gofers' execs (of the sandfs binary)
        # and the sandbox process's exec (/proc/self/exe).
        mon = [t for t, k, p, x in ev if k == "fork" and p == pid and s < t < e]
        gof = [t for t, k, p, x in ev if k == "exec" and s < t < e and p != pid and x == sandfs]
        sbx = [t for t, k, p, x in ev if k == "exec" and s < t < e and x == "/proc/self/exe"]
        if not mon or not gof or not sbx: continue
        gaps["n"].append(len(gof))
        gaps["to_monitor"].append((mon[0] - s) * 1000)
        gaps["to_gofer"].append((gof[0] - mon[0]) * 1000)
        gaps["gofers"].append((sbx[0] - gof[0]) * 1000)
        gaps["sandbox"].append((e - sbx[0]) * 1000)
        gaps["total"].append((e - s) * 1000)
        gaps["secc_before"].append(sum(period for t, what in mine if t < gof[0] and what == "libseccomp"))
        gaps["secc_sandbox"].append(sum(period for t, what in mine if t >= sbx[0] and what == "libseccomp"))
    g = {k: med(v) for k, v in gaps.items()}
    verbs = [v for v in ("create", "start", "state", "kill", "delete", "exec") if any(k[1] == v for k in dur)]
    w("")
    w(f"Where the time goes: {pruns} more `run --rm` and `exec` per runtime, the runtime reached through a wrapper (same "
      f"name) that logs its pid and execs it, under `perf record -a` of exec, fork and exit events and CPU samples every 0.2 ms. "
      f"Medians, ms: the whole podman command; how long each runtime call's process lives, exec to exit (calls in brackets); "
      f"the CPU time of `create`'s and `exec`'s process trees while they last (runc init; sandfs's monitor, gofers, sandbox process).")
    w("")
    w("| runtime | podman run --rm | " + " | ".join(f"`{v}`" for v in verbs) +
      " | CPU of `create` (in libseccomp) | podman exec | CPU of `exec` (in libseccomp) |")
    w("|---|---|" + "---|" * len(verbs) + "---|---|---|")
    for rt in rts:
        cells = [f"{med(dur[rt, v]):.1f} (×{len(dur[rt, v])})" if dur.get((rt, v)) else "-" for v in verbs]
        w(f"| {rt} | {med(times['prun', rt]):.0f} | " + " | ".join(cells) +
          f" | {med(cpu[rt, 'create']):.0f} ({med(secc[rt, 'create']):.0f}) | {med(times['pexec', rt]):.0f}"
          f" | {med(cpu[rt, 'exec']):.0f} ({med(secc[rt, 'exec']):.0f}) |")

# what it says
w("")
w("What dominates sandfs's cost:")
w("")
dr = med(times["run", "sandfs"]) - med(times["run", "runc"])
line = (f"- `podman run --rm`: {dr:+.0f} ms against runc ({ratio('run', 'sandfs')}); podman, conmon and the bridge network "
        f"take most of every run whatever the runtime.")
if g.get("total"):
    line += (f" sandfs's `create` lasts {g['total']:.0f} ms (runc's {med(dur['runc', 'create']):.0f}): {g['to_monitor']:.0f} ms to "
             f"fork the monitor, {g['to_gofer']:.0f} ms to the first gofer (reading the spec, checking its seccomp profile: "
             f"{g['secc_before']:.0f} ms of libseccomp), {g['gofers']:.0f} ms from there to the sandbox process: {g['n']:.0f} gofers, started together and each attached once it has confined itself (one "
             f"per mount podman gives: the image's rootfs and the bind-mounted /etc/resolv.conf, /etc/hosts, /etc/hostname and "
             f"/run/.containerenv), {g['sandbox']:.0f} ms from the sandbox process's exec to `create`'s exit (the FUSE mount, the "
             f"view, the namespaces: {g['secc_sandbox']:.0f} ms of libseccomp there). The profile is compiled once per "
             f"container (sandfs's CPU in libseccomp during `create`: {med(secc['sandfs', 'create']):.0f} ms; runc's "
             f"{med(secc['runc', 'create']):.0f} ms). The largest item is "
             + max((("the monitor's fork", g["to_monitor"]), ("the way to the first gofer", g["to_gofer"]),
                    ("the gofers' start", g["gofers"]), ("the sandbox's start", g["sandbox"])), key=lambda x: x[1])[0]
             + ".")
w(line)
if ("sandfs", "exec") in cpu:
    w(f"- `podman exec`: {ratio('exec', 'sandfs')} of runc's; the runtime's `exec` call is {med(dur['sandfs', 'exec']):.0f} ms "
      f"(runc {med(dur['runc', 'exec']):.0f}, crun {med(dur.get(('crun', 'exec'), [])):.0f}), {med(secc['sandfs', 'exec']):.0f} ms "
      f"of it in libseccomp (the filter compiled at create is reused, as crun does: crun "
      f"{med(secc.get(('crun', 'exec'), [])):.0f} ms).")
else:
    w(f"- `podman exec`: {ratio('exec', 'sandfs')} of runc's.")
w(f"- Idle memory: {mib(get('sandfs', RT) / cs)} of Pss per container for the monitor and its gofers, runc none; anonymous "
  f"memory (Pss_Anon) is {mib(get('sandfs', ['monitor'], 'Pss_Anon') / cs)} per monitor (which also serves the FUSE view) and "
  f"{mib(get('sandfs', ['gofer'], 'Pss_Anon') / n('sandfs', 'gofer'))} per gofer, the rest their share of the binary's pages. "
  f"The program costs more too ({mib(get('sandfs', ['program']) / cs)} against {mib(get('runc', ['program']) / cr)}): each "
  f"container reads the image through its own FUSE mount, so the image's file pages are cached once per container instead "
  f"of once for all (overlayfs under runc); that is also the container cgroup's page cache.")
ms, mr = mem["sandfs"], mem["runc"]
ms_grow = ms['conmon_cg_rss_growth'] / 1048576 / ms['containers']
mr_grow = mr['conmon_cg_rss_growth'] / 1048576 / mr['containers']
if mc('sandfs', 'cg_rss') > ms_grow:
    w(f"- Memory cgroups: the monitor's and gofers' memory is charged to the container's cgroup (rss "
      f"{mc('sandfs', 'cg_rss'):.1f} MiB): the runtime joins it before it allocates and starts the gofers (cgroup v1 on this "
      f"kernel no longer moves charges along), so a container's memory limit covers them; the conmons' cgroup grew by "
      f"{ms_grow:.1f} MiB per sandfs container against {mr_grow:.1f} per runc one.")
else:
    w(f"- Memory cgroups: most of the monitor's and gofers' anonymous memory is charged not to the container's cgroup (rss "
      f"{mc('sandfs', 'cg_rss'):.1f} MiB) but to the conmons' cgroup, whose rss grew by {ms_grow:.1f} "
      f"MiB per sandfs container against {mr_grow:.1f} per runc one: they allocate it "
      f"before they move into the container's cgroup, and cgroup v1 does not move charges along, so a container's memory limit "
      f"does not cover it.")
print("\n".join(out))
PY
{
  echo "$HEADING"
  echo
  cat "$T/section.body"
  echo
  echo "$(machine_line) Load average at the start: $LOAD_START."
  echo
} >"$T/section"
cat "$T/section"
