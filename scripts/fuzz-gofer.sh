#!/usr/bin/env bash
# Fuzz the gofer protocol decoders (crates/gofer/fuzz, target `decode`).
#
#   scripts/fuzz-gofer.sh [SECONDS]      (default 120)
#
# cargo-fuzz needs nightly-only compiler flags (-Z sanitizer, -Cpasses=sancov);
# on a stable toolchain RUSTC_BOOTSTRAP=1 unlocks them. The corpus and any crash
# artifacts stay in crates/gofer/fuzz/{corpus,artifacts} (ignored by git).
set -euo pipefail
secs="${1:-120}"
cd "$(dirname "$0")/../crates/gofer"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
mkdir -p fuzz/corpus/decode
exec cargo fuzz run decode fuzz/corpus/decode -- -max_total_time="$secs" -print_final_stats=1
