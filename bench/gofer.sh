#!/bin/bash
# bench/gofer.sh -- run the gofer benchmarks (`cargo bench -p sandfs-gofer`, divan) and write
# section "## gofer (cargo bench -p sandfs-gofer)" of BENCHMARKS.md (replaced if present):
# each gofer figure next to its direct-syscall twin from the same run, and their ratio.
# Run as root so the tree and files live on a kernel tmpfs the bench mounts itself.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
OUT_MD=${BENCHMARKS:-BENCHMARKS.md}
HEADING="## gofer (cargo bench -p sandfs-gofer)"
raw=$(mktemp)
section=$(mktemp)
trap 'rm -f "$raw" "$section"' EXIT
load=$(cut -d' ' -f1-3 /proc/loadavg)
cargo bench -p sandfs-gofer --bench gofer | tee "$raw"
python3 - "$raw" "$section" "$HEADING" "$load" <<'PY'
import re, sys, datetime, os, subprocess
raw, out, heading, load = sys.argv[1:5]
units = {"ns": 1e-9, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
med = {}
for line in open(raw, encoding="utf-8"):
    m = re.match(r"^[├╰]─ (.+?)\s{2,}[\d.]+ (?:ns|µs|ms|s)\s+│\s+[\d.]+ (?:ns|µs|ms|s)\s+│\s+([\d.]+) (ns|µs|ms|s)", line)
    if m:
        med[m.group(1).strip()] = float(m.group(2)) * units[m.group(3)]
def fmt(t):
    for u, f in (("s", 1), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if t >= f:
            return f"{t / f:.3g} {u}"
    return f"{t:.3g} s"
pairs = [
    ("walk+stat round trip (one message)", "walk+stat round trip: gofer", "walk+stat round trip: direct fstatat", "time"),
    ("cold walk, stat of every file, 10,000 files", "cold walk 10,000 files: gofer client", "cold walk 10,000 files: direct readdir+fstatat", "time"),
    ("sequential write 1 GiB", "write 1 GiB: donated fd", "write 1 GiB: direct", "rate"),
    ("sequential read 1 GiB", "read 1 GiB: donated fd", "read 1 GiB: direct", "rate"),
]
rows = []
for label, g, d, kind in pairs:
    if g not in med or d not in med:
        continue
    if kind == "rate":
        gr, dr = (1 << 30) / med[g] / 1e9, (1 << 30) / med[d] / 1e9
        rows.append(f"| {label} | {fmt(med[g])} ({gr:.2f} GB/s) | {fmt(med[d])} ({dr:.2f} GB/s) | {gr / dr * 100:.0f}% of direct |")
    else:
        rows.append(f"| {label} | {fmt(med[g])} | {fmt(med[d])} | {med[g] / med[d]:.2f}x direct |")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
sec = [heading, "",
       "Divan medians, one run (15 samples per cold walk and per 1 GiB transfer). The server runs on a thread of the bench process (the code the",
       "confined `sandfs gofer` runs) over a SOCK_SEQPACKET socketpair; the files live on a kernel",
       "tmpfs. Goals of issue 3: cold walk at most 2x direct syscalls; data throughput at least 90%",
       "of direct.", "",
       "| operation | through the gofer | direct | ratio |", "|---|---|---|---|", *rows, "",
       f"Machine: {os.cpu_count()} CPUs, {cpu}; Linux {os.uname().release}; "
       f"{datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC; load average at start: {load}.", ""]
open(out, "w").write("\n".join(sec))
PY
replace_section "$OUT_MD" "$HEADING" "$section"
