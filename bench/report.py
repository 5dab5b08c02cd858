#!/usr/bin/env python3
"""report.py RUNDIR SECTION_MD PNG -- turn one bench/run.sh run into the BENCHMARKS.md section
"## Container filesystem workloads" (written to SECTION_MD) and a chart of the ratios (PNG).

RUNDIR holds what bench/run.sh collected:
  harness.raw  "REP TARGET WORKLOAD wall_s=.. usr_s=.. sys_s=.. srv_s=.. [extra]" lines (harness.sh
               output, prefixed), "# ..." comments (setup failures, timeouts)
  startup.tsv  NAME<TAB>STATUS<TAB>MEDIAN_S<TAB>MEAN_S<TAB>STDDEV_S<TAB>RUNS<TAB>COMMAND<TAB>NOTE
  memory.tsv   LABEL<TAB>FILE_BYTES<TAB>FILES<TAB>VMRSS_KB<TAB>VMHWM_KB<TAB>PROCS<TAB>NOTE
  meta.txt     KEY=VALUE lines (machine, date, reps, fio_s, sandfs, load, ...)

Ratios are to kernel overlayfs (ovl) measured in the same run, medians over the reps:
time rows target/ovl; fio rows ovl IOPS / target IOPS, so above 1 is always slower.
"""
import math
import os
import statistics as st
import sys
from collections import defaultdict

RUN, SECTION, PNG = sys.argv[1], sys.argv[2], sys.argv[3]
if os.path.isfile(RUN):
    # A saved bench/last-run.txt: harness.raw, then "# startup.tsv", "# memory.tsv", "# meta.txt" parts.
    import tempfile

    parts = {"harness.raw": []}
    cur = "harness.raw"
    for line in open(RUN):
        if line.rstrip("\n") in ("# startup.tsv", "# memory.tsv", "# meta.txt"):
            cur = line[2:].strip()
            parts[cur] = []
            continue
        parts[cur].append(line)
    RUN = tempfile.mkdtemp(prefix="sandfs-report-")
    for k, v in parts.items():
        open(os.path.join(RUN, k), "w").write("".join(v))
BASE = "ovl"
NAMES = {"tmpfs": "kernel tmpfs", "ovl": "kernel overlayfs", "fovl": "fuse-overlayfs", "sandfs": "sandfs"}
ORDER = ["tmpfs", "ovl", "fovl", "sandfs"]

# Issue 7's goals for sandfs, as the largest ratio to kernel overlayfs allowed.
GOALS = {
    "a_create": 4, "a_delete": 4, "b_untar": 4, "e_rm_tree": 4,
    "a_stat": 2, "a_list": 2, "b_find": 2, "b_du": 2, "e_git_status": 2,
    "e_git_add": 1.3, "e_git_commit": 1.3,
    "c_write_1g": 1.2, "c_read_1g": 1.2, "d_read_lower": 1.2, "d_read_upper": 1.2,
    "c_fio_randrw": 2,  # at least half of kernel overlayfs's IOPS
    "d_append_1b": 1.2,
}
GOAL_TEXT = {
    4: "metadata: at most 4x",
    2: "stat/list/find/du/git status on a tree sandfs wrote or cached: at most 2x",
    1.3: "git add/commit: at most 1.3x",
    1.2: "sequential I/O, lower reads, reads after copy-up, copy-up: at most 1.2x",
}


def meta():
    m = {}
    p = os.path.join(RUN, "meta.txt")
    if os.path.exists(p):
        for line in open(p):
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                m[k] = v
    return m


def harness():
    wall = defaultdict(list)
    cpu = defaultdict(list)
    iops = defaultdict(list)
    failed = defaultdict(list)
    order, targets, notes = [], [], []
    p = os.path.join(RUN, "harness.raw")
    for line in open(p) if os.path.exists(p) else []:
        if line.startswith("#"):
            if "failed" in line or "timeout" in line or "error" in line:
                notes.append(line[1:].strip())
            continue
        f = line.split()
        if len(f) < 4:
            continue
        rep, tgt, name = f[0], f[1], f[2]
        if name not in order:
            order.append(name)
        if tgt not in targets:
            targets.append(tgt)
        if "FAILED" in line:
            failed[tgt, name].append(line.split("FAILED", 1)[1].strip())
            continue
        kv = dict(x.split("=", 1) for x in f[3:] if "=" in x)
        try:
            wall[tgt, name].append(float(kv["wall_s"]))
            srv = float(kv["srv_s"]) if kv.get("srv_s", "-") != "-" else 0.0
            cpu[tgt, name].append(float(kv["usr_s"]) + float(kv["sys_s"]) + srv)
        except (KeyError, ValueError):
            continue
        if "r_iops" in kv:
            iops[tgt, name].append(int(kv["r_iops"]) + int(kv["w_iops"]))
    targets = [t for t in ORDER if t in targets] + [t for t in targets if t not in ORDER]
    return wall, cpu, iops, failed, order, targets, notes


def med(v):
    return st.median(v) if v else None


M = meta()
wall, cpu, iops, failed, order, targets, notes = harness()


def value(t, name):
    """(median, is_iops) or (None, _)."""
    if iops.get((t, name)):
        return med(iops[t, name]), True
    return med(wall.get((t, name), [])), False


def ratio(t, name):
    v, is_iops = value(t, name)
    b, _ = value(BASE, name)
    if v is None or b is None or v == 0 or b == 0:
        return None
    return b / v if is_iops else v / b


def fmt_ratio(r):
    if r is None:
        return "-"
    return f"{r:.2f}x" if r < 10 else f"{r:.1f}x"


def cell(t, name):
    v, is_iops = value(t, name)
    nf = len(failed.get((t, name), []))
    if v is None:
        return f"**FAILED** ({nf}/{nf})" if nf else "n/a"
    s = f"{v / 1000:.1f}k IOPS" if is_iops else (f"{v:.3f} s" if v < 100 else f"{v:.0f} s")
    if t != BASE:
        s += f" ({fmt_ratio(ratio(t, name))})"
    if nf:
        s += f" **FAILED {nf}x**"
    return s


def goal_cell(name):
    g = GOALS.get(name)
    r = ratio("sandfs", name)
    rf = ratio("fovl", name)
    parts = []
    if g is not None:
        if r is None:
            parts.append(f"<= {g}x: **missed** (no result)")
        else:
            parts.append(f"<= {g}x: {'met' if r <= g else '**missed**'}")
    if r is not None and rf is not None:
        parts.append("beats fuse-overlayfs" if r < rf else "**slower than fuse-overlayfs**")
    elif r is None and name in order:
        parts.append("**no sandfs result**")
    return "; ".join(parts) if parts else "-"


def tsv(name, fields):
    """The rows of RUN/name with at least `fields` tab-separated fields (none if absent)."""
    p = os.path.join(RUN, name)
    rows = (line.rstrip("\n").split("\t") for line in open(p)) if os.path.exists(p) else []
    return [f for f in rows if len(f) >= fields]


S = tsv("startup.tsv", 8)
MEM = tsv("memory.tsv", 7)
out = []
w = out.append
w("## Container filesystem workloads")
w("")
w(f"`bench/run.sh` ({M.get('date', '?')}): `{M.get('harness', 'harness.sh')}` run on fresh mounts of each system, "
  f"{M.get('reps', '?')} reps with the order of the systems rotated every rep; medians over the reps, "
  "ratio = system / kernel overlayfs in the same run (for fio: kernel overlayfs IOPS / system IOPS), "
  "so above 1 is slower than the kernel.")
w("")
w(f"- kernel tmpfs: a fresh tmpfs, seeded with a copy of the lower layer;")
w(f"- kernel overlayfs: a fresh tmpfs upper over the host lower directory `{M.get('lower_desc', 'lower/')}`;")
w(f"- fuse-overlayfs ({M.get('fovl_version', '?')}): the same layers;")
w(f"- sandfs: `sandfs mount --rootfs LOWER --overlay2 root:memory MNT --daemon` (a memory overlay over the same "
  f"lower directory, served through the gofer; release build {M.get('sandfs_rev', '')}).")
w("")
w(f"Workloads from `harness.sh` (FIO_S={M.get('fio_s', '?')} s of fio"
  + (f", SKIP=\"{M['skip']}\"" if M.get("skip") else "")
  + "). Seconds of wall time unless marked IOPS.")
w("")
w("| workload | " + " | ".join(NAMES.get(t, t) for t in targets) + " | sandfs against issue 7 |")
w("|---|" + "---|" * (len(targets) + 1))
for name in order:
    w(f"| {name} | " + " | ".join(cell(t, name) for t in targets) + f" | {goal_cell(name)} |")
w("")
fails = [(t, n, e) for (t, n), es in failed.items() for e in es]
if fails or notes:
    w("Failures in this run:")
    w("")
    seen = set()
    for t, n, e in sorted(fails):
        key = (t, n, e[:120])
        if key in seen:
            continue
        seen.add(key)
        k = len([x for x in failed[t, n] if x[:120] == e[:120]])
        w(f"- {NAMES.get(t, t)}, `{n}` ({k} of {M.get('reps', '?')} reps): `{e[:300]}`")
    for n in notes:
        w(f"- {n}")
    w("")
w("Median CPU seconds (client usr+sys, plus the FUSE server's usr+sys where there is one; the sandfs "
  "gofer's CPU is not included):")
w("")
w("| workload | " + " | ".join(NAMES.get(t, t) for t in targets) + " |")
w("|---|" + "---|" * len(targets))
for name in order:
    w(f"| {name} | " + " | ".join(f"{med(cpu[t, name]):.2f}" if cpu.get((t, name)) else "-" for t in targets) + " |")
w("")

# Startup latency.
w(f"Start-to-exit latency of `true` ({M.get('startup_tool', 'hyperfine')}, {M.get('startup_runs', '?')} runs after "
  "3 warm-ups, from `/`):")
w("")
w("| command | median | mean ± sd | note |")
w("|---|---|---|---|")
start = {}
for name, status, median_s, mean_s, sd_s, runs, cmd, note in S:
    if status == "ok":
        start[name] = float(median_s)
        w(f"| `{cmd}` | {float(median_s) * 1000:.1f} ms | {float(mean_s) * 1000:.1f} ± {float(sd_s) * 1000:.1f} ms "
          f"| {note} |")
    else:
        w(f"| `{cmd}` | **{status}** | - | {note} |")
w("")

# Memory.
w("Resident memory of all sandfs processes (the `sandfs mount` server and its gofer; VmRSS and VmHWM "
  "from /proc/PID/status, summed) on a fresh mount, after creating files in a new directory of the upper "
  "layer (100 directories, files spread evenly):")
w("")
w("| file size | files | VmRSS sum | VmHWM sum (peak) | processes | note |")
w("|---|---|---|---|---|---|")
mem_by = defaultdict(dict)
for label, fbytes, files, rss, hwm, procs, note in MEM:
    try:
        mem_by[fbytes][int(files)] = (int(rss), int(hwm))
        w(f"| {fbytes} B | {int(files):,} | {int(rss) / 1024:.1f} MiB | {int(hwm) / 1024:.1f} MiB | {procs} | {note} |")
    except ValueError:
        w(f"| {fbytes} B | {files} | {rss} | {hwm} | {procs} | {note} |")
w("")
per_file = {}
for fbytes, d in mem_by.items():
    ks = sorted(d)
    if len(ks) >= 2 and ks[-1] > ks[-2]:
        a, b = ks[-2], ks[-1]
        per_file[fbytes] = (d[b][0] - d[a][0]) * 1024 / (b - a)
        per_file_hwm = (d[b][1] - d[a][1]) * 1024 / (b - a)
        w(f"- {fbytes}-byte files: {per_file[fbytes]:.0f} bytes of VmRSS per file between {a:,} and {b:,} files "
          f"({per_file_hwm:.0f} bytes of peak).")
w("")

# Goals.
w("Issue 7's goals for sandfs (median ratios to kernel overlayfs, this run):")
w("")


def verdict(names, limit, invert=False):
    bad, miss, got = [], [], []
    for n in names:
        r = ratio("sandfs", n)
        if r is None:
            miss.append(n)
            continue
        got.append(f"{n} {fmt_ratio(r)}")
        if r > limit:
            bad.append(n)
    ok = not bad and not miss
    txt = "met" if ok else "**missed**"
    detail = ", ".join(got)
    if miss:
        detail += ("; " if detail else "") + "no result: " + ", ".join(miss)
    return f"{txt} ({detail})"


beats = []
slower = []
for n in order:
    r, rf = ratio("sandfs", n), ratio("fovl", n)
    if r is None or rf is None:
        if n in order and r is None:
            slower.append(f"{n} (no sandfs result)")
        continue
    (beats if r < rf else slower).append(f"{n} {fmt_ratio(r)} vs {fmt_ratio(rf)}")
w(f"- every workload faster than fuse-overlayfs: {'met' if not slower else '**missed**'}"
  + (f" (slower or missing: {', '.join(slower)})" if slower else f" ({len(beats)} of {len(beats)})"))
present = set(order)
def goal_line(text, names, limit):
    names = [n for n in names if n in present]
    if names:
        w(f"- {text}: {verdict(names, limit)}")
goal_line("metadata workloads (a_create, a_delete, b_untar, e_rm_tree) at most 4x", ["a_create", "a_delete", "b_untar", "e_rm_tree"], 4)
goal_line("stat/list/find/du/git status on a tree sandfs wrote at most 2x", ["a_stat", "a_list", "b_find", "b_du", "e_git_status"], 2)
goal_line("git add and git commit at most 1.3x", ["e_git_add", "e_git_commit"], 1.3)
goal_line("sequential 1 GiB write and read, lower reads, reads after copy-up at most 1.2x", ["c_write_1g", "c_read_1g", "d_read_lower", "d_read_upper"], 1.2)
goal_line("fio random 4k read/write at least half of kernel overlayfs's IOPS (ratio at most 2x)", ["c_fio_randrw"], 2)
goal_line("copy-up of a 256 MiB file (d_append_1b) at most 1.2x", ["d_append_1b"], 1.2)
if "sandfs_run" in start and "runc_run" in start:
    a, b = start["sandfs_run"], start["runc_run"]
    w(f"- `sandfs run -- true` no slower than `runc run`: {'met' if a <= b else '**missed**'} "
      f"({a * 1000:.1f} ms vs {b * 1000:.1f} ms)")
else:
    why = [f"{r[0]}: {r[1]} {r[7]}" for r in S if r[1] != "ok"]
    w(f"- `sandfs run -- true` no slower than `runc run`: **not measured** ({'; '.join(why) or 'no data'})")
if "0" in per_file:
    pf = per_file["0"]
    w(f"- under 400 bytes of sandfs memory per small file in the upper layer (data excluded, so measured with "
      f"empty files): {'met' if pf < 400 else '**missed**'} ({pf:.0f} bytes of VmRSS per file)")
w("- f_find, f_du, f_cat_all (the first walk of the lower tree) have no goal of their own but the first.")
w("")
w(f"Machine: {M.get('machine', '?')}; descriptor limit (soft/hard) {M.get('nofile', '?')}; {M.get('date', '?')}; "
  f"load average at start: {M.get('load', '?')}. "
  f"Chart: `bench/ratios.png`. Raw lines: `bench/last-run.txt`.")
w("")
open(SECTION, "w").write("\n".join(out) + "\n")

# ----- the chart -----
try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except Exception as e:  # noqa: BLE001
    print(f"report.py: no matplotlib ({e}); chart not drawn", file=sys.stderr)
    sys.exit(0)

systems = [t for t in targets if t != BASE]
colors = {"tmpfs": "#9e9e9e", "fovl": "#ef8a17", "sandfs": "#1f77b4"}
names = list(order)
n = len(names)
vals_all = [r for t in systems for nm in names for r in [ratio(t, nm)] if r is not None]
lo = max(0.1, min([0.3] + [v * 0.7 for v in vals_all]))
hi = max([4.0] + [v * 2.0 for v in vals_all])
fig_h = max(4.0, 0.42 * n + 1.8)
fig, ax = plt.subplots(figsize=(11, fig_h), dpi=110)
ax.set_xscale("log")
bar_h = 0.8 / max(1, len(systems))
for i, t in enumerate(systems):
    for j, name in enumerate(names):
        r = ratio(t, name)
        y = j - 0.4 + bar_h * (i + 0.5)
        if r is None:
            if failed.get((t, name)) or t == "sandfs":
                ax.text(1.05, y, "FAILED" if failed.get((t, name)) else "no result", va="center", ha="left",
                        color="#c62828", fontsize=7, fontweight="bold")
            continue
        # Bars grow from 1 (kernel overlayfs): right = slower, left = faster.
        shown = max(r, lo * 1.02)
        ax.barh(y, abs(shown - 1) if abs(shown - 1) > 1e-9 else 1e-9, left=min(shown, 1.0), height=bar_h * 0.92,
                color=colors.get(t))
        if shown != r:  # off the left edge: say the value
            ax.text(lo * 1.04, y, f"{r:.2g}x", va="center", ha="left", fontsize=6.5, color="white")
        if t == "sandfs":
            x, ha = (r * 1.05, "left") if r >= 1 else (r / 1.05, "right")
            ax.text(x, y, f"{r:.2f}x" if r < 10 else f"{r:.0f}x", va="center", ha=ha, fontsize=7,
                    color="#0d3c61", fontweight="bold")
# sandfs goals as red ticks on the sandfs row
gi = systems.index("sandfs") if "sandfs" in systems else None
if gi is not None:
    first = True
    for j, name in enumerate(names):
        g = GOALS.get(name)
        if g is None:
            continue
        y = j - 0.4 + bar_h * (gi + 0.5)
        ax.plot([g, g], [y - bar_h * 0.7, y + bar_h * 0.7], color="#c62828", lw=2.2,
                label="sandfs goal (issue 7)" if first else None)
        first = False
ax.axvline(1.0, color="black", lw=1.2)
ax.text(1.0, -0.75, " kernel overlayfs = 1", fontsize=8, va="center", ha="left")
ax.set_xlim(lo, hi)
ax.set_yticks(list(range(n)))
ax.set_yticklabels(names, fontsize=9)
ax.set_ylim(n - 0.5, -1.1)
ax.set_xlabel("median time relative to kernel overlayfs, log scale (fio: IOPS, inverted) - lower is better")
ax.grid(axis="x", which="both", alpha=0.25)
ax.set_title("Container filesystem workloads: median ratio to kernel overlayfs\n"
             f"{M.get('reps', '?')} reps, {M.get('machine_short', '')}, {M.get('date', '')}", fontsize=11)
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

handles = [Patch(color=colors.get(t), label=NAMES.get(t, t)) for t in systems]
handles += [h for h in ax.get_legend_handles_labels()[0]]
ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.07), ncol=len(handles), fontsize=9,
          frameon=False)
ticks = [x for x in (0.1, 0.2, 0.5, 1, 2, 4, 10, 20, 50, 100, 200, 500) if lo <= x <= hi]
ax.xaxis.set_major_locator(FixedLocator(ticks))
ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}x"))
ax.xaxis.set_minor_locator(NullLocator())
fig.tight_layout()
fig.savefig(PNG, bbox_inches="tight")
print(f"report.py: wrote {PNG}")
