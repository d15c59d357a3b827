#!/usr/bin/env bash
# The randomized fault drill (testbed/e2e/tests/drill_chaos.rs) for several seeds, one pair per
# seed, one after the other; writes the table to docs/chaos.md (or $CHAOS_OUT).
#
#   SEEDS="1 2 3"  the seeds (default 1..6)
#   STEPS=6        faults per seed (default 6)
#
# A seed whose invariants did not hold is a finding, not a script failure: its violations are in
# the table and its full log is kept (the path is printed). Exits 1 only if the drill could not run.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
seeds=${SEEDS:-"1 2 3 4 5 6"}
steps=${STEPS:-6}
out=${CHAOS_OUT:-docs/chaos.md}
logs=$(mktemp -d)
rows=()
for seed in $seeds; do
  log="$logs/seed-$seed.log"
  started=$(date +%s)
  PGDR_CHAOS_SEED=$seed PGDR_CHAOS_STEPS=$steps \
    cargo test -q -p pgdr-e2e --test drill_chaos -- --nocapture >"$log" 2>&1
  rc=$?
  took=$(($(date +%s) - started))
  schedule=$(grep -m1 '^\[chaos\] seed' "$log" | sed 's/^\[chaos\] seed [0-9]*: //')
  figures=$(grep -m1 '^CHAOS ' "$log")
  if [ -z "$figures" ]; then
    if [ -z "$schedule" ]; then
      echo "chaos: seed $seed did not run (log: $log)" >&2
      exit 1
    fi
    figures="(no figures: the run stopped before the checker; see the log)"
  fi
  field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$figures"; }
  violations=$(grep '^  - ' "$log" | sed 's/^  - //' | paste -sd ';' - | sed 's/|/\\|/g')
  verdict=$([ "$rc" = 0 ] && echo "held" || echo "**violated**")
  rows+=("| $seed | $schedule | $(field acked) | $(field missing) | $(field missing_preserved) | $(field both_advertised_s) | $(field converged_s) | $verdict ${violations:+($violations)} | ${took}s |")
  echo "chaos: seed $seed: $verdict (${took}s; log $log)"
done
{
  echo "# Randomized fault drill"
  echo
  echo "Written by \`make chaos\` ($(date -u +%Y-%m-%d), $steps faults per seed, the drill's timings)."
  echo "Invariants and bounds: testbed/drill/src/chaos.rs. Columns: writes acknowledged by both"
  echo "sites; of those missing from the final primary; of those covered by a recorded, preserved"
  echo "divergence; the longest stretch with both sites answering \`/primary\` 200 (s); time from the"
  echo "heal to one primary with a streaming standby (s)."
  echo
  echo "| seed | schedule | acked | missing | preserved | both advertised | converged | invariants | run |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} >"$out"
echo "chaos: wrote $out"
