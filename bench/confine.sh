#!/bin/bash
# bench/confine.sh -- issue 11's benchmarks (as root): what the program's confinement costs.
#
#   1. start-to-exit latency of `true`: `sandfs run -- true` (the full confinement: user
#      namespace, network namespace, cgroup, capabilities, seccomp, masked paths), `runc run` of
#      the busybox bundle `sandfs spec --rootfs-busybox auto` writes, `sandfs run --bundle` of
#      that same bundle, and `bwrap --ro-bind / / true`, in one run (hyperfine, RUNS runs each);
#   2. the seccomp filter's cost on a syscall-heavy workload (git: init, add and commit 2,000
#      small files, 20 `git status`): one bundle (root = host /, a memory overlay on it) run
#      with sandfs's default profile in linux.seccomp and without linux.seccomp.
#
# Writes the section "## Confinement (bench/confine.sh)" of BENCHMARKS.md (replaced if present).
# Environment: RUNS=30 (startup), GIT_RUNS=5, SANDFS=path (default: a release build here),
# BENCHMARKS=path.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/bench/lib.sh"
RUNS=${RUNS:-30}
GIT_RUNS=${GIT_RUNS:-5}
OUT_MD=${BENCHMARKS:-$REPO/BENCHMARKS.md}
if [ -z "${SANDFS:-}" ]; then
  (cd "$REPO" && cargo build --release -p sandfs-cli >&2)
  SANDFS=$REPO/target/release/sandfs
fi
for t in hyperfine runc bwrap git busybox; do
  command -v "$t" >/dev/null || { echo "bench/confine.sh: $t is missing (scripts/install-deps.sh and apt-get install hyperfine bubblewrap)" >&2; exit 1; }
done
W=$(mktemp -d /var/tmp/sandfs-confine.XXXXXX)
RUNC_ROOT=$W/runc-state
cleanup() {
  for c in $(runc --root "$RUNC_ROOT" list -q 2>/dev/null); do runc --root "$RUNC_ROOT" delete -f "$c" || true; done
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$RUNC_ROOT"

# The busybox bundle, running `true` (no terminal).
"$SANDFS" spec --rootfs-busybox auto --bundle "$W/bb" >/dev/null
python3 - "$W/bb/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p))
c["process"]["args"] = ["true"]; c["process"]["terminal"] = False
json.dump(c, open(p, "w"), indent=1)
PY

# The git bundle: host / as the (read-only) lower layer of a memory overlay, the
# workload as the process; one copy with the default seccomp profile, one without.
cat >"$W/git.sh" <<'SH'
set -e
mkdir -p /var/tmp/g && cd /var/tmp/g
for d in $(seq 1 20); do mkdir d$d; for f in $(seq 1 100); do echo "$d $f" > d$d/f$f; done; done
git -c init.defaultBranch=main init -q
git add -A
git -c user.name=b -c user.email=b@b commit -qm one
for i in $(seq 1 20); do git status --porcelain >/dev/null; done
SH
for variant in seccomp none; do
  mkdir -p "$W/git-$variant"
  "$SANDFS" spec --bundle "$W/git-$variant" >/dev/null
  python3 - "$W/git-$variant/config.json" "$variant" "$W/git.sh" <<'PY'
import json, sys
p, variant, script = sys.argv[1:4]
c = json.load(open(p))
c["root"] = {"path": "/", "readonly": False}
c["process"]["args"] = ["sh", script]
c["process"]["terminal"] = False
c["process"]["env"] = ["PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/root"]
if variant == "none":
    del c["linux"]["seccomp"]
json.dump(c, open(p, "w"), indent=1)
PY
done

hf() {  # NAME CMD...: hyperfine median and stddev in ms
  local name=$1 runs=$2; shift 2
  (cd / && hyperfine -N --style none --warmup 2 --runs "$runs" --export-json "$W/$name.json" "$*") >/dev/null 2>"$W/$name.err" || {
    echo "$name failed: $(tail -2 "$W/$name.err")" >&2; echo "$name - - failed"; return; }
  python3 - "$W/$name.json" "$name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print(sys.argv[2], "%.1f" % (r["median"] * 1000), "%.1f" % ((r["stddev"] or 0) * 1000), len(r["times"]))
PY
}

rows=$W/rows
{
  hf sandfs_run_true "$RUNS" "$SANDFS" run -- true
  hf sandfs_run_bundle "$RUNS" "$SANDFS" run --bundle "$W/bb"
  hf runc_run "$RUNS" runc --root "$RUNC_ROOT" run -b "$W/bb" sandfs-bench-$$
  hf bwrap "$RUNS" bwrap --ro-bind / / --dev /dev --proc /proc true
  hf git_seccomp "$GIT_RUNS" "$SANDFS" run --bundle "$W/git-seccomp"
  hf git_no_seccomp "$GIT_RUNS" "$SANDFS" run --bundle "$W/git-none"
} | tee "$rows"

section=$W/section
python3 - "$rows" "$section" "$(uname -r)" "$(nproc)" "$(date -u +%Y-%m-%d)" "$(cd "$REPO" && git rev-parse --short HEAD)" <<'PY'
import sys
rows, out, kernel, cpus, day, rev = sys.argv[1:7]
r = {}
for line in open(rows):
    f = line.split()
    if len(f) == 4 and f[1] != "-":
        r[f[0]] = (float(f[1]), float(f[2]), int(f[3]))
def cell(k):
    return "%.1f ms (± %.1f, %d runs)" % r[k] if k in r else "failed"
lines = ["## Confinement (bench/confine.sh)", "",
  f"Measured {day} on {cpus} CPUs, kernel {kernel}, sandfs {rev}, release build; medians (hyperfine).", "",
  "Start-to-exit latency of `true` (issue 11: `sandfs run -- true` must stay under `runc run` of the same busybox bundle):", "",
  "| command | median |", "|---|---|",
  f"| `sandfs run -- true` (host / under a memory overlay; user, network, pid, mount, ipc, uts, cgroup namespaces; cgroup; caps; seccomp; masked paths) | {cell('sandfs_run_true')} |",
  f"| `sandfs run --bundle` busybox bundle (`sandfs spec`) | {cell('sandfs_run_bundle')} |",
  f"| `runc run` of the same bundle | {cell('runc_run')} |",
  f"| `bwrap --ro-bind / / --dev /dev --proc /proc true` | {cell('bwrap')} |", "",
  "Seccomp filter cost on a syscall-heavy workload (git: init, add and commit 2,000 files, 20 `git status`; one bundle, root = host / under a memory overlay):", "",
  "| variant | median |", "|---|---|",
  f"| default profile in `linux.seccomp` | {cell('git_seccomp')} |",
  f"| no `linux.seccomp` | {cell('git_no_seccomp')} |",
]
if "git_seccomp" in r and "git_no_seccomp" in r:
    d = 100 * (r["git_seccomp"][0] / r["git_no_seccomp"][0] - 1)
    noise = 100 * max(r["git_seccomp"][1], r["git_no_seccomp"][1]) / r["git_no_seccomp"][0]
    lines += ["", "Filter cost: %+.1f%% of the workload's time (run-to-run spread ±%.1f%%%s)." % (d, noise, ": within the noise" if abs(d) < noise else "")]
if "sandfs_run_true" in r and "runc_run" in r:
    lines += ["", "`sandfs run -- true` / `runc run`: %.2fx." % (r["sandfs_run_true"][0] / r["runc_run"][0])]
open(out, "w").write("\n".join(lines) + "\n\n")
PY
replace_section "$OUT_MD" "## Confinement (bench/confine.sh)" "$section"
echo "bench/confine.sh: wrote the Confinement section of $OUT_MD"
