#!/bin/bash
# bench/gofer.sh -- run the gofer benchmarks (`cargo bench -p sandfs-gofer`, divan) and write
# section "## gofer (cargo bench -p sandfs-gofer)" of BENCHMARKS.md (replaced if present): each
# figure through the gofer next to its direct-syscall twin from the same run, and their ratio.
#
# Extra arguments go to the bench binary. Environment:
#   RUNS=n                run the bench n times (default 3) and report, per row, the lowest of the
#                         n medians: other load only ever slows a run down
#   BENCHMARKS=path       the Markdown file to update (default BENCHMARKS.md)
#   GOFER_BENCH_OUTPUT=f  render a saved output of the bench instead of running it
# Run as root so the tree and files live on a kernel tmpfs the bench mounts itself.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
OUT_MD=${BENCHMARKS:-BENCHMARKS.md}
HEADING="## gofer (cargo bench -p sandfs-gofer)"

collect_runs sandfs-gofer gofer "${GOFER_BENCH_OUTPUT:-}" "$@"

# row GROUP LABEL KIND: one table row; KIND time (ratio gofer / direct) or rate (GB/s of
# 1 GiB, percent of direct).
row() {
  echo "$rows" | awk -v g="$1" -v label="$2" -v kind="$3" '
    function ns(v, u) { if (u == "ns") return v; if (u == "µs") return v * 1e3; if (u == "ms") return v * 1e6; return v * 1e9 }
    $1 == g { t[$2] = ns($3, $4); txt[$2] = $3 " " $4 }
    END {
      if (!(t["sandfs"] > 0 && t["kernel"] > 0)) exit
      if (kind == "rate") {
        gs = 1073741824 / t["sandfs"]; gd = 1073741824 / t["kernel"]
        printf "| %s | %s (%.2f GB/s) | %s (%.2f GB/s) | %.0f%% of direct |\n", label, txt["sandfs"], gs, txt["kernel"], gd, gs / gd * 100
      } else {
        printf "| %s | %s | %s | %.2fx direct |\n", label, txt["sandfs"], txt["kernel"], t["sandfs"] / t["kernel"]
      }
    }'
}

cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/^[^:]*: *//')
{
  echo "$HEADING"
  echo
  echo "Divan medians, the lowest of $runs run(s) of \`bench/gofer.sh\` per row (15 samples per cold"
  echo "walk and per 1 GiB transfer). The server runs on a thread of the bench process (the code the"
  echo "confined \`sandfs gofer\` runs) over a SOCK_SEQPACKET socketpair; the files live on a kernel"
  echo "tmpfs. The write goes over a 1 GiB file's allocated pages on both sides: allocating them is"
  echo "the host tmpfs's work, and its spread between identical runs (71-120%) hid the descriptor's."
  echo "Goals of issue 3: cold walk at most 2x direct syscalls; data throughput at least 90% of direct."
  echo
  echo "| operation | through the gofer | direct | ratio |"
  echo "|---|---|---|---|"
  row walk_stat_round_trip "walk+stat round trip (one message)" time
  row cold_walk_10k "cold walk, stat of every file, 10,000 files" time
  row write_1g "sequential write 1 GiB (over the file's pages)" rate
  row read_1g "sequential read 1 GiB" rate
  echo
  echo "Machine: $(nproc) CPUs, $cpu; Linux $(uname -r); $(date -u '+%Y-%m-%d %H:%M UTC');"
  echo "load average at start: $load."
  echo
} >"$section"

replace_section "$OUT_MD" "$HEADING" "$section"
echo "bench/gofer.sh: wrote \"$HEADING\" in $OUT_MD"
