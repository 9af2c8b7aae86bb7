#!/usr/bin/env bash
# The long simulated power-loss run (not CI): tests/power_loss.rs with ≥ 100 000 crash
# points, in release mode. Every crash point draws STRATA_POWER_LOSS_SEEDS images; the
# last line of its output is the figure TESTING.md records.
#
#   scripts/power-loss-long.sh [POINTS] [SEEDS]      (defaults 100000 and 2)
#
# STRATA_TEST_SEED=<n> replays a run. Runs under `nice`: it is a background job.
set -euo pipefail
cd "$(dirname "$0")/.."
points="${1:-100000}"
seeds="${2:-2}"
log="${POWER_LOSS_LOG:-target/power-loss-long.log}"
mkdir -p "$(dirname "$log")"
start=$(date +%s)
echo "power-loss long run: $points crash points x $seeds images, started $(date -u +%FT%TZ)" | tee "$log"
STRATA_POWER_LOSS_POINTS="$points" STRATA_POWER_LOSS_SEEDS="$seeds" \
  nice cargo test --release --test power_loss -- --nocapture --test-threads 1 2>&1 | tee -a "$log"
status=${PIPESTATUS[0]}
echo "elapsed: $(( $(date +%s) - start )) s, exit status $status" | tee -a "$log"
exit "$status"
