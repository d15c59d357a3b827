#!/usr/bin/env bash
# The randomized fault drill (testbed/e2e/tests/drill_chaos.rs), one pair per seed, one seed after
# the other.
#
#   scripts/chaos.sh          SEEDS="1 2 3" (default 1..6), STEPS=8: writes docs/chaos.md
#   scripts/chaos.sh --long   MINUTES=60, STEPS=10, FIRST_SEED=1000: seeds FIRST_SEED, +1, ...
#                             until MINUTES have passed; writes docs/verification.md
#
# $CHAOS_OUT overrides the file written. A seed whose invariants did not hold is a finding, not a
# script failure: its violations are in the table, its full log is kept (the path is printed),
# and the command that replays it is printed. Exits 1 only if the drill could not run.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
long=false
[ "${1:-}" = "--long" ] && long=true
steps=${STEPS:-$($long && echo 10 || echo 8)}
if $long; then
  minutes=${MINUTES:-60}
  out=${CHAOS_OUT:-docs/verification.md}
else
  seeds=${SEEDS:-"1 2 3 4 5 6"}
  out=${CHAOS_OUT:-docs/chaos.md}
fi
logs=$(mktemp -d)
figures_file="$logs/figures"
rows=()
began=$(date +%s)
commit=$(git rev-parse --short HEAD)  # what ran, even if HEAD moves during a long run
# The PostgreSQL the drill runs (the harness's choice: PGDR_PG_BIN, make deps' 18, Debian's).
pg_bin=${PGDR_PG_BIN:-$root/.tools/postgresql/bin}
[ -x "$pg_bin/postgres" ] || pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
pg_version=$("$pg_bin/postgres" --version 2>/dev/null | awk '{print $NF}')

run_seed() {
  local seed=$1 log="$logs/seed-$1.log" started took rc schedule figures violations verdict
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
    figures="CHAOS seed=$seed stopped=before-the-checker"
  fi
  echo "$figures rc=$rc took=$took" >>"$figures_file"
  field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$figures"; }
  violations=$(grep '^  - ' "$log" | sed 's/^  - //' | paste -sd ';' - | sed 's/|/\\|/g')
  if [ "$rc" = 0 ]; then
    verdict="held"
  else
    verdict="**violated**"
    echo "chaos: seed $seed violated; replay: PGDR_CHAOS_SEED=$seed PGDR_CHAOS_STEPS=$steps cargo test -p pgdr-e2e --test drill_chaos -- --nocapture"
  fi
  rows+=("| $seed | $schedule | $(field acked) | $(field missing) | $(field missing_preserved) | $(field read) | $(field read_missing) | $(field both_advertised_s) | $(field both_writable_s) | $(field converged_s) | $verdict ${violations:+($violations)} | ${took}s |")
  echo "chaos: seed $seed: $verdict (${took}s; log $log)"
}

if $long; then
  seed=${FIRST_SEED:-1000}
  while [ $(($(date +%s) - began)) -lt $((minutes * 60)) ]; do
    run_seed "$seed"
    seed=$((seed + 1))
  done
else
  for seed in $seeds; do run_seed "$seed"; done
fi

table_head() {
  echo "| seed | schedule | acked | missing | preserved | read | read missing | both advertised | both writable | converged | invariants | run |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
}
legend="Invariants and bounds: testbed/drill/src/chaos.rs (both advertised ≤ 30 s, both writable ≤ 30 s,
converged ≤ 180 s at the drill's timings: agent every 2 s, lock ttl 20 s). Columns: writes
acknowledged by both sites; of those missing from the final primary; of those covered by a
recorded, preserved divergence and read back from that preserved WAL; rows the readers saw; of those missing from the final primary;
the longest stretch with both sites answering \`/primary\` 200 (s); the longest with both
acknowledging writes (s); time from the heal to one primary with a streaming standby (s)."
{
  if $long; then
    echo "# Verification: the randomized fault drill for an hour"
    echo
    echo "Written by \`make chaos-long\` ($(date -u +%Y-%m-%d), MINUTES=$minutes, $steps overlapping faults per"
    echo "seed, seeds from ${FIRST_SEED:-1000}, $(nproc) cores, PostgreSQL $pg_version, commit $commit). Each seed is a fresh pair: install, faults, heal,"
    echo "check. A violated seed is replayed with \`PGDR_CHAOS_SEED=<seed> PGDR_CHAOS_STEPS=$steps cargo test -p"
    echo "pgdr-e2e --test drill_chaos -- --nocapture\`."
    echo
    python3 - "$figures_file" <<'PY'
import sys, statistics
runs = []
for line in open(sys.argv[1]):
    f = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
    runs.append(f)
done = [r for r in runs if "acked" in r]
def num(r, k):
    try:
        return float(r[k])
    except (KeyError, ValueError):
        return None
def pct(xs, p):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return "-"
    return f"{xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]:.1f}"
kinds = {}
for r in done:
    for kv in r.get("kinds", "").split(","):
        if ":" in kv:
            k, n = kv.split(":")
            kinds[k] = kinds.get(k, 0) + int(n)
acked = sum(int(r["acked"]) for r in done)
missing = sum(int(r["missing"]) for r in done)
preserved = sum(int(r["missing_preserved"]) for r in done)
reads = sum(int(r.get("read", 0)) for r in done)
violated = [r["seed"] for r in runs if r.get("rc") != "0"]
wall = sum(int(r["took"]) for r in runs)
print("| figure | value |")
print("|---|---|")
print(f"| seeds run | {len(runs)} ({wall // 60} min of pairs) |")
print(f"| seeds failed (an invariant violated, or no verdict) | {len(violated)}{' (' + ', '.join(violated) + ')' if violated else ''} |")
print(f"| faults injected | {sum(kinds.values())} |")
print(f"| writes acknowledged | {acked} |")
print(f"| rows read (per site, distinct) | {reads} |")
print(f"| acknowledged writes missing from the final primary | {missing} (of which read back from a preserved divergence's WAL: {preserved}) |")
print(f"| acknowledged writes lost (missing, not preserved) | {missing - preserved} |")
adv = [num(r, "both_advertised_s") for r in done]
wr = [num(r, "both_writable_s") for r in done]
conv = [num(r, "converged_s") for r in done]
print(f"| both advertised (s), p50 / max | {pct(adv, .5)} / {pct(adv, 1)} |")
print(f"| both writable (s), p50 / max | {pct(wr, .5)} / {pct(wr, 1)} |")
print(f"| convergence after the heal (s), p50 / p95 | {pct(conv, .5)} / {pct(conv, .95)} |")
print()
print("Faults injected, by kind:")
print()
print("| kind | count |")
print("|---|---|")
for k in sorted(kinds):
    print(f"| {k} | {kinds[k]} |")
PY
    echo
    echo "Per seed:"
    echo
  else
    echo "# Randomized fault drill"
    echo
    echo "Written by \`make chaos\` ($(date -u +%Y-%m-%d), PostgreSQL $pg_version, commit $commit, $steps overlapping faults per seed, the drill's timings)."
  fi
  echo "$legend"
  echo
  table_head
  printf '%s\n' "${rows[@]}"
} >"$out"
echo "chaos: wrote $out"
