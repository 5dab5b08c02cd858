#!/bin/bash
# bench/cold.sh -- issue 14's cold walks: each workload in a fresh `sandfs run` per repetition
# (the host / as the lower layer of a memory overlay, so every file and directory is touched
# for the first time), against the same command on the host and under
# `bwrap --ro-bind / / --dev /dev --proc /proc`, the host's page cache warm for all (each
# workload runs once on the host first). Medians of RUNS (default 3) wall times, the order of
# the contenders rotated every repetition. Then, unless PROFILE=0, one more run of each under
# `perf record` of the run's process tree: the FUSE requests by opcode (tracepoint
# fuse:fuse_request_send), the gofer's replies (its sendmsg calls: one per round trip) and the CPU time of the FUSE server, the gofer,
# the program and the sandbox's own processes, user and kernel (cpu-clock samples every 1 ms).
# With BEFORE set, an earlier build of sandfs is a fourth contender, run the same way and
# rotated with the others, for a before/after comparison in one run on one machine state (the
# profile stays the current SANDFS's). The table's last column is issue 14's goal: at most 2x
# the host's time. Writes the sections "## Cold walks (bench/cold.sh)" and "## Cold walks: where
# the time goes" of BENCHMARKS.md, and the chart bench/cold.png (time / host time per workload
# and contender, log scale; only where python3 has matplotlib). As root.
#
# Environment: SANDFS=path (default: cargo build --release here), RUNS=n, PROFILE=0|1,
# BENCHMARKS=path, COLD_REPO=path of the generated git repository (default
# /var/tmp/sandfs-cold-repo, made once: 12,000 files of generated text, committed),
# NOTE=text (a line put under the table, e.g. which change was measured),
# BEFORE=path (a sandfs binary of an earlier build: adds its column to the table and the chart),
# BEFORE_LABEL=text (what BEFORE is, in the column's name and the text; default "before").
set -u
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/bench/lib.sh"
OUT_MD=${BENCHMARKS:-$REPO/BENCHMARKS.md}
RUNS=${RUNS:-3}
PROFILE=${PROFILE:-1}
BEFORE=${BEFORE:-}
BEFORE_LABEL=${BEFORE_LABEL:-before}
CHART=$REPO/bench/cold.png
GREP_PATTERN='Copyright (C)'
COLD_REPO=${COLD_REPO:-/var/tmp/sandfs-cold-repo}
die() { echo "bench/cold.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (sandfs run mounts FUSE)"
command -v bwrap >/dev/null || die "needs bwrap (apt-get install bubblewrap)"
command -v git >/dev/null || die "needs git"
if [ -z "${SANDFS:-}" ]; then
  (cd "$REPO" && cargo build --release -q -p sandfs-cli) || die "build failed"
  SANDFS=$REPO/target/release/sandfs
fi
if [ -n "$BEFORE" ]; then
  [ -x "$BEFORE" ] || die "BEFORE=$BEFORE is not an executable"
  # absolute, like a path given as SANDFS should be: the runs may start elsewhere
  BEFORE=$(cd "$(dirname "$BEFORE")" && pwd)/$(basename "$BEFORE")
fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/sandfs-cold.XXXXXX") || die "mktemp"
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

# The repository: 24 x 25 directories of 20 files (10-120 lines of generated text each).
if [ ! -f "$COLD_REPO/.git/sandfs-cold-complete" ]; then
  rm -rf "$COLD_REPO"
  mkdir -p "$COLD_REPO" || die "mkdir $COLD_REPO"
  python3 - "$COLD_REPO" <<'PY' || die "generate $COLD_REPO"
import os, sys, random
root, rnd = sys.argv[1], random.Random(14)
words = "alpha beta gamma delta sandbox overlay gofer fuse lookup entry inode page cache walk".split()
for a in range(24):
    for b in range(25):
        d = os.path.join(root, f"mod{a:02d}", f"sub{b:02d}")
        os.makedirs(d)
        for c in range(20):
            with open(os.path.join(d, f"file{c:02d}.c"), "w") as f:
                for i in range(rnd.randint(10, 120)):
                    f.write(" ".join(rnd.choice(words) for _ in range(8)) + f" {i}\n")
PY
  G="git -c user.name=b -c user.email=b@b -c init.defaultBranch=main -C $COLD_REPO"
  { $G init -q && $G add -A && $G commit -q -m files; } || die "git commit in $COLD_REPO"
  touch "$COLD_REPO/.git/sandfs-cold-complete"
fi

# name | command (run by sh -c) | what "per item" divides by
GITX="GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null git --no-optional-locks -C $COLD_REPO"
WORKLOADS=(
  "true|true|-"
  "find|find /usr -type f | wc -l|find /usr | wc -l"
  "git_status|$GITX status --porcelain|git -C $COLD_REPO ls-files | wc -l"
  "grep|grep -r -F -e '$GREP_PATTERN' /usr/share/doc /usr/include >/dev/null; true|find /usr/share/doc /usr/include | wc -l"
)
workload_desc() {
  case $1 in
    true) echo "\`true\` (a run's start and end, for reference)" ;;
    find) echo "\`find /usr -type f \\| wc -l\`" ;;
    git_status) echo "\`git status --porcelain\`, 12,000-file repository" ;;
    grep) echo "\`grep -r -F '$GREP_PATTERN'\` /usr/share/doc /usr/include" ;;
  esac
}

# run_side SIDE CMD: run CMD on SIDE.
run_side() {
  local side=$1 cmd=$2
  case $side in
    host) sh -c "$cmd" ;;
    bwrap) bwrap --ro-bind / / --dev /dev --proc /proc sh -c "$cmd" ;;
    before) "$BEFORE" run -- sh -c "$cmd" ;;
    sandfs) "$SANDFS" run -- sh -c "$cmd" ;;
  esac
}
ms_now() { date +%s%N; }
SIDES=(host bwrap sandfs)
[ -z "$BEFORE" ] || SIDES=(host bwrap before sandfs)
NSIDES=${#SIDES[@]}
times=$TMP/times # name side ms
: >"$times"
items_of=$TMP/items
: >"$items_of"
for w in "${WORKLOADS[@]}"; do
  IFS='|' read -r name cmd items_cmd <<<"$w"
  sh -c "$cmd" >/dev/null 2>&1 || die "$name fails on the host" # warms the page cache
  n=-
  [ "$items_cmd" = - ] || n=$(sh -c "$items_cmd")
  echo "$name $n" >>"$items_of"
  for ((rep = 0; rep < RUNS; rep++)); do
    for ((k = 0; k < NSIDES; k++)); do
      side=${SIDES[$(((k + rep) % NSIDES))]}
      t0=$(ms_now)
      run_side "$side" "$cmd" >/dev/null 2>"$TMP/err" || die "$name on $side failed: $(head -c 300 "$TMP/err")"
      t1=$(ms_now)
      ms=$(((t1 - t0) / 1000000))
      echo "$name $side $ms" >>"$times"
      echo "== $name $side rep $((rep + 1)): $ms ms" >&2
    done
  done
done

# The table (Markdown) from $times: medians and ratios to the host per contender, the sandfs
# column's runs, issue 14's goal for the current sandfs. The "before" column only where $times
# has that side, so without BEFORE the columns are the ones of earlier runs.
desc=$TMP/desc # name<TAB>what the table calls it
: >"$desc"
for w in "${WORKLOADS[@]}"; do
  IFS='|' read -r name _ <<<"$w"
  printf '%s\t%s\n' "$name" "$(workload_desc "$name")" >>"$desc"
done
# One program for both, from one reading of $times: it prints the table and, where this python
# has matplotlib, draws the chart to $TMP/cold.png (moved into place only once drawn whole).
rm -f "$TMP/cold.png"
table=$("$(plot_python)" - "$times" "$BEFORE_LABEL" "$desc" "$TMP/cold.png" <<'PY'
import sys, statistics, collections, math
times, label, desc_file, png = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
desc = dict(l.rstrip("\n").split("\t", 1) for l in open(desc_file))
t = collections.defaultdict(list)
order = []
for l in open(times):
    name, side, ms = l.split()
    if name not in order: order.append(name)
    t[name, side].append(int(ms))
before = any(side == "before" for _, side in t)
sides = ["bwrap"] + (["before"] if before else []) + ["sandfs"]
med = lambda name, s: statistics.median(t[name, s]) if t[name, s] else math.nan
def ratio(name, s):
    h = med(name, "host")
    return med(name, s) / h if h else math.nan

# The table.
tl = label.replace("|", "\\|")
head = (["workload", "host", "bwrap"] + ([f"sandfs run, {tl}"] if before else [])
        + ["sandfs run", "sandfs runs (ms)", "≤ 2x host"])
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
for name in order:
    cell = lambda s: f"{med(name, s):.0f} ms ({ratio(name, s):.2f}x)" if not math.isnan(ratio(name, s)) else f"{med(name, s):.0f} ms (-)"
    r = ratio(name, "sandfs")
    # the goal as the table shows the ratio: 2.004x reads "2.00x", and so "met"
    goal = "-" if name == "true" or math.isnan(r) else "met" if round(r, 2) <= 2 else "**missed**"
    row = ([desc.get(name, name), f"{med(name, 'host'):.0f} ms"] + [cell(s) for s in sides]
           + [" ".join(str(x) for x in t[name, "sandfs"]), goal])
    print("| " + " | ".join(row) + " |")

# The chart: time / host time per workload and contender (not `true`: a run's start and end,
# no goal, another scale), log scale, the goal as a dashed line.
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter
except ImportError:
    print("bench/cold.sh: no python3 with matplotlib (apt-get install python3-matplotlib): no chart", file=sys.stderr)
    sys.exit(0)
names = [n for n in order if n != "true"]
colours = {"bwrap": "#999999", "before": "#e8a33d", "sandfs": "#3b75af"}
labels = {"bwrap": "bwrap", "before": f"sandfs run, {label}", "sandfs": "sandfs run"}
fig, ax = plt.subplots(figsize=(max(6.0, 2.2 * len(names)), 4.5))
ax.set_yscale("log")
width = 0.8 / len(sides)
vals_all = []
for i, side in enumerate(sides):
    xs = [j + (i - (len(sides) - 1) / 2) * width for j in range(len(names))]
    vals = [ratio(n, side) for n in names]
    vals_all += [v for v in vals if not math.isnan(v)]
    drawn = ax.bar(xs, [0 if math.isnan(v) else v for v in vals], width, label=labels[side], color=colours[side])
    ax.bar_label(drawn, labels=["" if math.isnan(v) else f"{v:.2f}x" for v in vals], fontsize=8, padding=2)
ax.axhline(2, color="black", linestyle="--", linewidth=1, label="goal: 2x host")
lo, hi = min(vals_all + [2]), max(vals_all + [2])
ax.set_ylim(min(0.5, lo / 1.5), hi * 8)  # room below 1x for bwrap, above the tallest label
ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
ax.set_xticks(range(len(names)))
ax.set_xticklabels(names)
ax.set_ylabel("time / host time (log scale)")
ax.set_title("Cold walks: time / host time (lower is better)")
ax.legend(fontsize=8, loc="upper left")
fig.tight_layout()
fig.savefig(png, dpi=120)
PY
) || die "the table failed"
chart_note=
if [ -s "$TMP/cold.png" ] && mv "$TMP/cold.png" "$CHART"; then
  chart_note="Chart: \`bench/cold.png\`."
  echo "== wrote $CHART" >&2
fi

HEADING="## Cold walks (bench/cold.sh)"
sec=$TMP/section
{
  echo "$HEADING"
  echo
  echo "Each workload in a fresh \`sandfs run\` per repetition (host / as the lower layer of a memory"
  echo "overlay: every file and directory is touched for the first time), against the same command on the"
  echo "host and under \`bwrap --ro-bind / / --dev /dev --proc /proc\`; the host's page cache warm for all"
  echo "(the command runs once on the host first). Wall time of the whole command, sandfs's start and end"
  echo "included (the \`true\` row); medians of $RUNS repetitions, the contenders' order rotated every"
  echo "repetition; ratio = median / host median. Release build; single runs vary by about ±10% on this"
  echo "virtual machine (the sandfs column's runs are listed)."
  if [ -n "$BEFORE" ]; then
    echo "\"sandfs run, $BEFORE_LABEL\": an earlier build of sandfs, run the same way and"
    echo "rotated with the others in the same repetitions; \"sandfs run\": the build measured."
  fi
  echo "Last column: issue 14's goal for \`sandfs run\`, at most 2x the host's time (not for \`true\`)."
  [ -z "$chart_note" ] || echo "$chart_note"
  echo
  echo "$table"
  echo
  [ -z "${NOTE:-}" ] || { echo "$NOTE"; echo; }
  machine_line
  echo
} >"$sec"
cat "$sec"
replace_section "$OUT_MD" "$HEADING" "$sec"

[ "$PROFILE" = 1 ] || exit 0
command -v perf >/dev/null || die "the profile needs perf (PROFILE=0 to skip it)"

# profile NAME SIDE CMD: one run under perf record; writes its requests by opcode,
# CPU samples by (role, mode) and sendmsg calls by role to $TMP/prof.NAME.SIDE.
EVENTS="-e fuse:fuse_request_send -e syscalls:sys_enter_sendmsg -e cpu-clock/period=1000000/"
profile() {
  local name=$1 side=$2 cmd=$3 data=$TMP/perf.$name.$side pid
  # Not system-wide: the run's own process tree (inherited by the gofer, the sandbox and the
  # program), so that other sandfs runs on the machine do not count.
  case $side in
    host) perf record -q -o "$data" $EVENTS -- sh -c "$cmd" >/dev/null 2>"$TMP/perf.err" ;;
    sandfs) perf record -q -o "$data" $EVENTS -- "$SANDFS" run -- sh -c "$cmd" >/dev/null 2>"$TMP/perf.err" ;;
  esac || die "profile of $name on $side: $(tail -3 "$TMP/perf.err")"
  # The FUSE server: the first "sandfs" process (the gofer is its child, started later).
  pid=$(perf script -i "$data" -F comm,pid 2>/dev/null | awk '$1 == "sandfs" { print $2; exit }')
  pid=${pid:-0}
  : >"$TMP/prof.$name.$side"
  perf script -i "$data" -F comm,pid,event,ip,trace 2>/dev/null >"$data.txt"
  rm -f "$data"
  python3 - "$pid" "$data.txt" "$side" >>"$TMP/prof.$name.$side" <<'PY'
import sys, re, collections, os
top, path, side = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ops, cpu, sends = collections.Counter(), collections.Counter(), collections.Counter()
for l in open(path):
    m = re.match(r"\s*(.+?)\s+(\d+)\s+(\S+):\s*(.*)$", l)
    if not m: continue
    comm, pid, ev, rest = m.group(1), int(m.group(2)), m.group(3), m.group(4)
    if ev == "fuse:fuse_request_send":
        o = re.search(r"\(FUSE_([A-Z_]+)\)", rest)
        if o: ops[o.group(1)] += 1
        continue
    if comm == "swapper" or pid == 0: continue
    # who: the FUSE server is the sandfs run process itself; the gofer another "sandfs";
    # "exe" the sandbox's own processes; the rest named by the workload's programs.
    if side == "sandfs" and pid == top: role = "server"
    elif comm == "sandfs": role = "gofer"
    elif comm in ("exe", "sandfs-fuse"): role = "sandbox"
    elif comm in ("sh", "find", "wc", "git", "grep"): role = "program"
    else: role = "other"
    if ev == "syscalls:sys_enter_sendmsg":
        sends[role] += 1
        continue
    ip = rest.split()[0] if rest else "0"
    try: kernel = int(ip, 16) >= 0xffff800000000000
    except ValueError: kernel = False
    cpu[role, "sys" if kernel else "user"] += 1
for op, c in ops.most_common(): print("op", op, c)
for (role, mode), c in sorted(cpu.items()): print("cpu", role, mode, c)
for role, c in sends.items(): print("sendmsg", role, c)
PY
  rm -f "$data.txt"
}
for w in "${WORKLOADS[@]}"; do
  IFS='|' read -r name cmd _ <<<"$w"
  for side in host sandfs; do
    echo "== profile $name $side" >&2
    profile "$name" "$side" "$cmd"
  done
done

rows=$(python3 - "$TMP" "$items_of" <<'PY'
import sys, collections
tmp, items_file = sys.argv[1], sys.argv[2]
items = dict(l.split() for l in open(items_file))
def load(name, side):
    d = {"ops": collections.Counter(), "cpu": collections.Counter(), "send": collections.Counter()}
    for l in open(f"{tmp}/prof.{name}.{side}"):
        f = l.split()
        if f[0] == "op": d["ops"][f[1]] = int(f[2])
        elif f[0] == "cpu": d["cpu"][f[1], f[2]] = int(f[3])
        elif f[0] == "sendmsg": d["send"][f[1]] = int(f[2])
    return d
base = load("true", "sandfs")
req, cpu = [], []
def us(d, role): return f"{d['cpu'][role, 'user']} / {d['cpu'][role, 'sys']}"
for name in items:
    s, h = load(name, "sandfs"), load(name, "host")
    n = sum(s["ops"].values())
    g = s["send"]["gofer"]
    net_ops = s["ops"] - base["ops"] if name != "true" else s["ops"]
    nn = sum(net_ops.values())
    ng = g - base["send"]["gofer"] if name != "true" else g
    it = items[name]
    per = lambda x: f"{x / int(it):.2f}" if it != "-" else "-"
    by = ", ".join(f"{op} {c}" for op, c in net_ops.most_common())
    req.append(f"R| {name} | {it} | {n} | {nn} | {per(nn)} | {ng} | {per(ng)} | {by} |")
    cpu.append(f"C| {name} | {us(h, 'program')} | {us(s, 'program')} | {us(s, 'server')} | {us(s, 'gofer')} | {us(s, 'sandbox')} |")
print("\n".join(req + cpu))
PY
)
HEADING="## Cold walks: where the time goes"
{
  echo "$HEADING"
  echo
  echo "Written by \`bench/cold.sh\` (the profile after the table above): one more run of each workload"
  echo "on the host and in a fresh \`sandfs run\`, under \`perf record\` of its process tree. FUSE requests are the"
  echo "tracepoint \`fuse:fuse_request_send\`; \"net\" subtracts those of \`sandfs run -- sh -c true\` (the"
  echo "shell and its libraries, the start and end of a run). Gofer round trips are the gofer process's"
  echo "\`sendmsg\` calls (one reply per request). Items: the entries \`find\` walks (all of /usr), the"
  echo "repository's tracked files, the entries under the two grep trees."
  echo
  echo "| workload | items | FUSE requests | net | net per item | gofer round trips (net) | per item | net by opcode |"
  echo "|---|---|---|---|---|---|---|---|"
  sed -n 's/^R//p' <<<"$rows"
  echo
  echo "CPU time in ms, user / kernel, from cpu-clock samples (one per ms of CPU, of the run's tree,"
  echo "attributed by process): the program (sh and the workload's programs), the FUSE server (the"
  echo "\`sandfs run\` process: its fuser-N threads), the gofer (the host /'s), the sandbox's own"
  echo "processes (\`exe\`). Wall times: the table above."
  echo
  echo "| workload | host: program | sandfs: program | FUSE server | gofer | sandbox |"
  echo "|---|---|---|---|---|---|"
  sed -n 's/^C//p' <<<"$rows"
  echo
  machine_line
  echo
} >"$sec"
cat "$sec"
replace_section "$OUT_MD" "$HEADING" "$sec"
