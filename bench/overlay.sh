#!/bin/bash
# bench/overlay.sh -- run the overlay benchmark (`cargo bench -p sandfs-overlay`, divan) and write
# its results into BENCHMARKS.md, section "## overlay (cargo bench -p sandfs-overlay)" (replaced if
# present, appended otherwise): copy-up of a 256 MiB lower file (first 1-byte append) and a merged
# readdir of a 10,000-entry directory split across the layers, sandfs (in process, tmpfs layers)
# next to kernel overlayfs (tmpfs layers) in the same run, and the memory per copied-up empty file.
#
# Extra arguments go to the bench binary (e.g. a divan filter). Environment:
#   RUNS=n                  run the bench n times (default 3) and report, per row, the lowest of the
#                           n medians (other load only ever slows a run down)
#   BENCHMARKS=path         the Markdown file to update (default BENCHMARKS.md at the repository root)
#   OVERLAY_BENCH_OUTPUT=f  render a saved output of the bench instead of running it
# Run as root: the kernel side mounts tmpfs and overlayfs (in a private mount namespace of the
# bench process, so nothing outlives it). Without root only the sandfs rows are measured.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
OUT_MD=${BENCHMARKS:-BENCHMARKS.md}
HEADING="## overlay (cargo bench -p sandfs-overlay)"

collect_runs sandfs-overlay overlay "${OVERLAY_BENCH_OUTPUT:-}" "$@"
mem_cu=$(last_line 'bytes per copied-up empty file (allocator, live heap bytes): ')
mem_cu_rss=$(last_line 'bytes per copied-up empty file (RSS delta, incl. malloc overhead): ')
mem_lookup=$(last_line 'bytes per copied-up empty file, lookup included (allocator): ')
mem_new=$(last_line 'bytes per empty file created in the upper layer (allocator): ')
kernel_side=$(last_line 'kernel side: ')

ratio_of() {  # sandfs / kernel time for one group
  echo "$rows" | awk -v g="$1" '
    function ns(v, u) { if (u == "ns") return v; if (u == "µs") return v * 1e3; if (u == "ms") return v * 1e6; return v * 1e9 }
    $1 == g { t[$2] = ns($3, $4) }
    END { if (t["sandfs"] > 0 && t["kernel"] > 0) printf "%.2f", t["sandfs"] / t["kernel"] }'
}
verdict() { awk -v a="$1" -v op="$2" -v b="$3" 'BEGIN { ok = (op == "<=") ? (a + 0 <= b) : (a + 0 < b); print ok ? "met" : "missed" }'; }
cu_ratio=$(ratio_of copy_up_256m)

cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/^[^:]*: *//')
{
  echo "$HEADING"
  echo
  echo "sandfs: an in-process \`Overlay\` (crates/overlay) with \`sandfs_tmpfs\` upper and lower layers,"
  echo "driven through a \`MountNamespace\` with root credentials (no FUSE). Kernel: ${kernel_side:-?}."
  echo "Same run, same machine. Medians from divan, the lowest of $runs run(s) of \`bench/overlay.sh\`."
  echo "Ratio = sandfs / kernel time (issue 7's convention): below 1, sandfs is faster."
  echo
  echo "| operation | sandfs median | kernel overlayfs median | ratio |"
  echo "|---|---|---|---|"
  for g in copy_up_256m readdir_merged_10k; do
    s=$(echo "$rows" | awk -v g="$g" '$1 == g && $2 == "sandfs" { print $3, $4 }')
    k=$(echo "$rows" | awk -v g="$g" '$1 == g && $2 == "kernel" { print $3, $4 }')
    [ -z "$s$k" ] && continue
    case $g in
      copy_up_256m) d="copy-up of a 256 MiB lower file: open(O_APPEND) + write 1 byte + close (fresh upper each time)" ;;
      readdir_merged_10k) d="open + readdir + close of a merged 10,000-entry directory (5,000 lower, 5,000 upper)" ;;
    esac
    r=$(ratio_of "$g")
    echo "| $d | ${s:--} | ${k:--} | ${r:--} |"
  done
  echo
  if [ -n "$mem_cu" ]; then
    echo "Memory per copied-up empty file: 100,000 empty files in one lower directory, each copied"
    echo "up by a chmod through the overlay. Live heap bytes counted by a counting global allocator"
    echo "in the bench binary (bytes requested, net of frees):"
    echo
    echo "- copy-up alone (files looked up beforehand): **$mem_cu bytes** per file"
    echo "  ($mem_cu_rss bytes by resident-set growth, which includes malloc's per-chunk overhead);"
    echo "- lookup through the overlay (overlay node, path cache) plus copy-up: $mem_lookup bytes per file;"
    echo "- for comparison, an empty file created in the upper layer (no lower file): $mem_new bytes."
    echo
  fi
  echo "Against issue 7's goals (measured there through FUSE; these are the in-process figures):"
  echo "- copy-up of a 256 MiB file at most 1.2x kernel overlayfs: **$(verdict "${cu_ratio:-999}" "<=" 1.2)** in process (${cu_ratio:-?}x)."
  echo "- under 400 bytes of sandfs memory per small file held in the upper layer:"
  echo "  **$(verdict "${mem_new:-999999}" "<" 400)** in process (${mem_new:-?} B created, ${mem_lookup:-?} B copied up with lookup)."
  echo
  echo "Machine: $(nproc) CPUs, $cpu; Linux $(uname -r); $(date -u '+%Y-%m-%d %H:%M UTC');"
  echo "load average at start: $load."
  echo
} >"$section"

replace_section "$OUT_MD" "$HEADING" "$section"
echo "bench/overlay.sh: wrote \"$HEADING\" in $OUT_MD"
