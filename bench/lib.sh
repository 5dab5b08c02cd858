# bench/lib.sh -- pieces shared by the bench scripts (sourced, not run).

# divan_runs RAW RUNS PACKAGE BENCH [ARGS...]: run a divan bench RUNS times, appending to RAW.
divan_runs() {
  local raw=$1 runs=$2 pkg=$3 bench=$4 run
  shift 4
  for ((run = 1; run <= runs; run++)); do
    echo "== $bench: run $run of $runs"
    cargo bench -p "$pkg" --bench "$bench" -- "$@" | tee -a "$raw"
  done
}

# collect_runs PACKAGE BENCH SAVED [ARGS...]: run a divan bench RUNS times (default 3), or take
# SAVED (a saved output, when not empty) instead, and set for the caller: raw and section (temp
# files, removed at exit), load (load average at the start), runs (how many runs the output
# holds) and rows (lowest_medians of it; exits when there are none).
collect_runs() {
  local pkg=$1 bench=$2 saved=$3
  shift 3
  raw=$(mktemp)
  section=$(mktemp)
  trap 'rm -f "$raw" "$section"' EXIT
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  if [ -n "$saved" ]; then
    cp "$saved" "$raw"
    load="unknown (rendered from a saved output)"
  else
    divan_runs "$raw" "${RUNS:-3}" "$pkg" "$bench" "$@"
  fi
  runs=$(grep -cE "^$bench +fastest" "$raw" || true)
  rows=$(lowest_medians "$raw")
  if [ -z "$rows" ]; then
    echo "bench/$bench.sh: no benchmark rows in the output" >&2
    exit 1
  fi
}

# last_line PREFIX: the rest of the last line of $raw that starts with PREFIX.
last_line() { sed -n "s/^$1//p" "$raw" | tail -1; }

# lowest_medians RAW: from divan's tree output, the leaf rows "kernel"/"sandfs" under their group
# rows ("├─ stat_6_components"), one "group side value unit" line each with the lowest median
# over all the runs in RAW (other load only ever slows a run down).
lowest_medians() {
  awk '
    /^(├|╰)─ / { g = $2; next }
    /^(│| )+(├|╰)─ (kernel|sandfs) / {
      line = $0
      sub(/^(│| )+(├|╰)─ /, "", line)
      split(line, f, "│")
      split(f[1], first, " ")
      median = f[3]; gsub(/^ +| +$/, "", median)
      print g, first[1], median
    }' "$1" | awk '
    function ns(v, u) { if (u == "ns") return v; if (u == "µs") return v * 1e3; if (u == "ms") return v * 1e6; return v * 1e9 }
    { k = $1 " " $2; t = ns($3, $4); if (!(k in best) || t < best[k]) { best[k] = t; text[k] = $3 " " $4 } }
    END { for (k in best) print k, text[k] }'
}

# replace_section MD HEADING FILE: put FILE in the Markdown file MD in place of the section
# starting at the line HEADING (up to the next "## " heading), or append it.
replace_section() {
  local md=$1 heading=$2 file=$3 tmp
  [ -f "$md" ] || printf '# Benchmarks\n\n' >"$md"
  tmp=$(mktemp)
  awk -v heading="$heading" -v file="$file" '
    function emit(   l) { while ((getline l < file) > 0) print l; close(file); done = 1 }
    $0 == heading { emit(); skip = 1; next }
    skip && /^## / { skip = 0 }
    !skip { print }
    END { if (!done) { print ""; emit() } }
  ' "$md" | cat -s >"$tmp" && mv "$tmp" "$md"
}

# plot_python: a python3 that has matplotlib (the distribution's may have it where the first
# on PATH has not), else python3.
plot_python() {
  local p
  for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import matplotlib' 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  echo python3
}

# machine_line: the machine and time a section was measured on, for its last line.
machine_line() {
  echo "Machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1); Linux $(uname -r);" \
    "$(date -u '+%Y-%m-%d %H:%M') UTC; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
}
