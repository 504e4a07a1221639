#!/usr/bin/env bash
# Issue 19, item 7: what a JEPA term may cost per step and still pay at equal wall-clock. The control's price
# curve at rung m1: plain CE trained for S = 4,000, 3,200, 2,667 and 2,000 steps (4,000/r for r = 1, 1.25, 1.5, 2),
# schedules scaled to each run's length (warmdown 0.25 S; the other warm-ups by schedule_scale=run), on stage 2's
# first four m1 seeds and their data offsets (the same tokens in the same order as stage 2's runs of that seed).
# An arm that costs r times the control's step reaches S = 4,000/r steps in the control's time; it pays at equal
# time only if its equal-steps gain beats L_ce(4,000/r) - L_ce(4,000). Plan: docs/results/miniature-plan.md,
# "Price curve". One thread per run, the runs one after another; resumable (a finished run is kept, an
# unfinished one is moved aside, never deleted, and trained again). Run from a worktree of the commit named in the plan.
set -euo pipefail
OUT=${OUT:-runs/mini/price}
DATA=${DATA:-$HOME/.cache/jepagolf/research}
STRIDE=8196000  # stage 2's data stride at m1 (4,000 steps x 2,049 tokens): seed k starts k strides in
mkdir -p "$OUT"
k=0
for seed in 1001 1002 1003 1004; do
  for steps in 4000 3200 2667 2000; do
    run="$OUT/ce-$steps-seed$seed"
    if [ -f "$run/summary.json" ]; then
      echo "$run: finished earlier, kept"
      continue
    fi
    if [ -d "$run" ]; then  # moved aside, not deleted: this script cannot tell its own folder from another's
      aside="$run.unfinished-$(date +%Y%m%d-%H%M%S)"
      mv "$run" "$aside"
      echo "$run: unfinished (no summary.json), moved to $aside and trained again"
    fi
    python -m jepagolf train --preset cpu-demo --data "$DATA" --seed "$seed" --out "$run" --threads 1 \
      --set jepa=false --set num_layers=2 --set model_dim=64 --set num_heads=2 --set num_kv_heads=1 \
      --set train_seq_len=128 --set train_batch_tokens=2048 --set micro_batch_tokens=2048 \
      --set iterations="$steps" --set warmdown_iters=$(( (steps + 2) / 4 )) --set warmdown_frac=0.25 \
      --set max_wallclock_seconds=0 --set export_scheme=int8-zlib --set gptq=false \
      --set data_offset=$(( k * STRIDE )) --set diag_every=800 --set step_compile=on --set train_log_every=100 \
      --set val_loss_every=0 > "$OUT/ce-$steps-seed$seed.log" 2>&1
    echo "$run: $(grep -o 'score val_bpb:[0-9.]*' "$OUT/ce-$steps-seed$seed.log")"
  done
  k=$((k + 1))
done
