#!/usr/bin/env bash
# Issue 19, item 6, stage 3: equal wall-clock (plan: docs/results/miniature-plan.md, "Stage 3"). The rungs of
# stage 2 with --match wallclock: every arm gets the time the control takes for its 4,000 steps, step counts
# calibrated on this machine. Run it ALONE on an idle machine (timing is the point), from a frozen commit's
# worktree, after stage 2's m1 rung is in. Seeds 2001-2004, fresh; m0 and m1 x 4 seeds, m2 x 2. Arms: those
# stage 2 did not find worse (the rule, fixed before stage 2 ended: an arm is dropped when its m1 round-trip Δ
# is positive with paired-t p < 0.05). This script applies the rule itself, with
# scripts/miniature_stage3_arms.py on m1's runs.csv (M1_RUNS: the collected copy by default, or the ladder's own
# rungs/m1/runs.csv), and writes the decisions to $OUT/arms.txt; it stops when m1 is not complete. The ladder writes $OUT/ladder.
# One process, both cores (--threads 2). Resumable: rerun this script and every finished run is kept.
set -euo pipefail
OUT=${OUT:-runs/mini/time}
SHAPE=num_heads=2,num_kv_heads=1,train_seq_len=128
M0=m0:num_layers=2,model_dim=48,$SHAPE,train_batch_tokens=1024,micro_batch_tokens=1024,steps=4000,seeds=4
M1=m1:num_layers=2,model_dim=64,$SHAPE,train_batch_tokens=2048,micro_batch_tokens=2048,steps=4000,seeds=4
M2=m2:num_layers=3,model_dim=96,$SHAPE,train_batch_tokens=4096,micro_batch_tokens=4096,steps=4000,seeds=2
M1_RUNS=${M1_RUNS:-docs/results/miniature/steps-m1/runs.csv}
mkdir -p "$OUT"
decisions=$(python scripts/miniature_stage3_arms.py "$M1_RUNS")
printf '%s\n' "$decisions" > "$OUT/arms.txt.tmp" && mv "$OUT/arms.txt.tmp" "$OUT/arms.txt"
printf '%s\n' "$decisions"
read -ra ARMS <<< "$(sed -n 's/^ARMS=(\(.*\))$/\1/p' <<< "$decisions")"
if [ "${#ARMS[@]}" -lt 4 ]; then echo "error: no arm besides the control in $OUT/arms.txt" >&2; exit 2; fi
# RUNGS: the rungs to run, in this order (the plan's budget rule drops m2 first, then m0; m1 always runs).
RUNG_ARGS=()
for r in ${RUNGS:-m0 m1 m2}; do
  case $r in
    m0) RUNG_ARGS+=(--rung "$M0") ;;
    m1) RUNG_ARGS+=(--rung "$M1") ;;
    m2) RUNG_ARGS+=(--rung "$M2") ;;
    *) echo "error: RUNGS: unknown rung $r (m0, m1, m2)" >&2; exit 2 ;;
  esac
done
python -m jepagolf ladder "${ARMS[@]}" "${RUNG_ARGS[@]}" --match wallclock \
  --seeds 2001,2002,2003,2004 --vary all+data --val-tokens 0 --set diag_every=800 --set step_compile=on \
  --threads 2 --out "$OUT/ladder"
