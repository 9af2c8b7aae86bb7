#!/usr/bin/env bash
# The long kill -9 run (TESTING.md): RUNS seeds x CYCLES crash cycles of
# tests/crash_kill9.rs, each seed on a fresh database directory. Every cycle SIGKILLs a
# child that writes under Durability::Sync and checks every acknowledged write is back.
#   scripts/kill9-long.sh            # 100 seeds x 100 cycles = 10,000 cycles
#   RUNS=10 CYCLES=50 scripts/kill9-long.sh
# Prints one line per seed and a total; stops at the first failure (its seed replays it:
# STRATA_TEST_SEED=<seed> STRATA_KILL9_CYCLES=<cycles> cargo test --release --test crash_kill9).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-100}
CYCLES=${CYCLES:-100}
# Built once and copied, so editing the tree while it runs changes nothing.
exe=$(cargo test --release --test crash_kill9 --no-run --message-format=json |
    python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable")][0])')
bin=$(mktemp)
cp "$exe" "$bin" && chmod +x "$bin"
log=$(mktemp)
cycles=0 acked=0 start=$(date +%s)
for run in $(seq 1 "$RUNS"); do
    seed=$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')
    if ! STRATA_TEST_SEED=$seed STRATA_KILL9_CYCLES=$CYCLES \
        "$bin" --exact acknowledged_writes_survive_kill9_and_batches_stay_whole --nocapture >"$log" 2>&1; then
        cat "$log"
        echo "kill9-long: FAILED at run $run (seed $seed) after $cycles passing cycles" >&2
        exit 1
    fi
    line=$(grep -o 'kill9: seed .*' "$log")
    echo "$line"
    cycles=$((cycles + CYCLES))
    acked=$((acked + $(echo "$line" | sed -E 's/.* cycles, ([0-9]+) acknowledged.*/\1/')))
done
echo "kill9-long: $cycles cycles over $RUNS seeds, $acked acknowledged writes, none lost ($(( $(date +%s) - start )) s)"
