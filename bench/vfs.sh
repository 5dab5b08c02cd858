#!/bin/bash
# bench/vfs.sh -- run the VFS/tmpfs benchmark (`cargo bench -p sandfs-vfs`, divan) and write
# its results into BENCHMARKS.md, section "## vfs and tmpfs (cargo bench -p sandfs-vfs)"
# (replaced if present, appended otherwise): per operation the sandfs median (a MountNamespace
# on sandfs_tmpfs, root creds, in process), the kernel median (the same syscall on a kernel
# tmpfs), their ratio, the memory per empty file, and the machine it ran on.
#
# Extra arguments go to the bench binary (e.g. a divan filter). Environment:
#   RUNS=n              run the bench n times (default 3) and report, per row, the lowest of the
#                       n medians: other load only ever slows a run down, and a burst can spoil one
#   BENCHMARKS=path     the Markdown file to update (default BENCHMARKS.md at the repository root)
#   VFS_BENCH_OUTPUT=f  render a saved output of the bench instead of running it
# Run as root to benchmark against a kernel tmpfs the bench mounts for the run; otherwise the
# kernel side is a directory under /dev/shm (also tmpfs) and the section says so.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
OUT_MD=${BENCHMARKS:-BENCHMARKS.md}
HEADING="## vfs and tmpfs (cargo bench -p sandfs-vfs)"

collect_runs sandfs-vfs vfs "${VFS_BENCH_OUTPUT:-}" "$@"
mem_alloc=$(last_line 'bytes per empty file (allocator, live heap bytes): ')
mem_rss=$(last_line 'bytes per empty file (RSS delta, incl. malloc overhead): ')
inode_line=$(last_line 'tmpfs inode: ')
kernel_side=$(last_line 'kernel side: ' | sed 's/ (at .*)$//')

ratio_of() {  # kernel / sandfs for one group
  echo "$rows" | awk -v g="$1" '
    function ns(v, u) { if (u == "ns") return v; if (u == "µs") return v * 1e3; if (u == "ms") return v * 1e6; return v * 1e9 }
    $1 == g { t[$2] = ns($3, $4) }
    END { if (t["sandfs"] > 0 && t["kernel"] > 0) printf "%.2f", t["kernel"] / t["sandfs"] }'
}
verdict() { awk -v a="$1" -v op="$2" -v b="$3" 'BEGIN { ok = (op == ">=") ? (a + 0 >= b) : (a + 0 < b); print ok ? "met" : "missed" }'; }
stat_ratio=$(ratio_of stat_6_components)

cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/^[^:]*: *//')
{
  echo "$HEADING"
  echo
  echo "Each operation runs on sandfs (a \`MountNamespace\` on a \`sandfs_tmpfs::Tmpfs\`, in process,"
  echo "root credentials unless the row says otherwise) and as the same syscall on $kernel_side,"
  echo "in the same run; kernel paths are resolved from an open directory fd, so both sides walk the"
  echo "same components. Medians from divan, the lowest of $runs run(s) of \`bench/vfs.sh\`."
  echo "Ratio = kernel / sandfs: above 1, sandfs is faster."
  echo
  echo "| operation | sandfs median | kernel median | ratio |"
  echo "|---|---|---|---|"
  for g in stat_6_components stat_6_components_uid1000 create_unlink pread_4k pwrite_4k readdir_10k; do
    s=$(echo "$rows" | awk -v g="$g" '$1 == g && $2 == "sandfs" { print $3, $4 }')
    k=$(echo "$rows" | awk -v g="$g" '$1 == g && $2 == "kernel" { print $3, $4 }')
    [ -z "$s$k" ] && continue
    case $g in
      stat_6_components) d="stat of a 6-component path (\`a/b/c/d/e/f\`)" ;;
      stat_6_components_uid1000) d="the same stat as uid 1000, no capabilities (both sides)" ;;
      create_unlink) d="create (O_CREAT, O_EXCL) + close + unlink" ;;
      pread_4k) d="pread 4 KiB" ;;
      pwrite_4k) d="pwrite 4 KiB (over an allocated page)" ;;
      readdir_10k) d="open + readdir + close of a 10,000-entry directory" ;;
    esac
    r=$(ratio_of "$g")
    echo "| $d | ${s:--} | ${k:--} | ${r:--} |"
  done
  echo
  if [ -n "$mem_alloc" ]; then
    echo "Memory per empty file in sandfs tmpfs, 100,000 empty files in one directory (7-byte names):"
    echo "**$mem_alloc bytes** of live heap, counted by a counting global allocator in the bench binary"
    echo "(bytes requested, net of frees, over the creations); $mem_rss bytes by resident-set growth"
    echo "(/proc/self/statm; includes malloc's per-chunk overhead). Inode: $inode_line."
    echo
  fi
  echo "Goals of issue 2:"
  echo "- stat of a cached path at least 3x faster than the syscall on kernel tmpfs:"
  echo "  **$(verdict "${stat_ratio:-0}" ">=" 3)** (${stat_ratio:-?}x)."
  echo "- under 300 bytes of memory per empty file: **$(verdict "${mem_alloc:-999999}" "<" 300)**"
  echo "  (${mem_alloc:-?} B by allocator count)."
  echo
  echo "Machine: $(nproc) CPUs, $cpu; Linux $(uname -r); $(date -u '+%Y-%m-%d %H:%M UTC');"
  echo "load average at start: $load."
  echo
} >"$section"

replace_section "$OUT_MD" "$HEADING" "$section"
echo "bench/vfs.sh: wrote \"$HEADING\" in $OUT_MD"
