#!/usr/bin/env bash
# Issue 19, item 6, stage 3: equal wall-clock (plan: docs/results/miniature-plan.md, "Stage 3"). The rungs of
# stage 2 with --match wallclock: every arm gets the time the control takes for its 4,000 steps, step counts
# calibrated on this machine. Run it ALONE on an idle machine (timing is the point), from a frozen commit's
# worktree, after stage 2's m1 rung is in. Seeds 2001-2004, fresh; m0 and m1 x 4 seeds, m2 x 2. Arms: those
# stage 2 did not find worse (the rule, fixed before stage 2 ended: an arm is dropped when its m1 round-trip Δ
# is positive with paired-t p < 0.05); `python scripts/miniature_stage3_arms.py docs/results/miniature/steps-m1/runs.csv`
# applies it and prints the ARMS line: edit it in below, and commit the edit, before running.
# One process, both cores (--threads 2). Resumable: rerun this script and every finished run is kept.
set -euo pipefail
OUT=${OUT:-runs/mini/time}
SHAPE=num_heads=2,num_kv_heads=1,train_seq_len=128
M0=m0:num_layers=2,model_dim=48,$SHAPE,train_batch_tokens=1024,micro_batch_tokens=1024,steps=4000,seeds=4
M1=m1:num_layers=2,model_dim=64,$SHAPE,train_batch_tokens=2048,micro_batch_tokens=2048,steps=4000,seeds=4
M2=m2:num_layers=3,model_dim=96,$SHAPE,train_batch_tokens=4096,micro_batch_tokens=4096,steps=4000,seeds=2
ARMS=(--arm ce:jepa=false --arm v3: --arm fast:jepa_target=online,jepa_batch_fraction=0.25,jepa_batched=true
      --arm multi-horizon:jepa_recipe=multi-horizon --arm nextlat:jepa_recipe=nextlat)
python -m jepagolf ladder "${ARMS[@]}" --rung "$M0" --rung "$M1" --rung "$M2" --match wallclock \
  --seeds 2001,2002,2003,2004 --vary all+data --val-tokens 0 --set diag_every=800 --set step_compile=on \
  --threads 2 --out "$OUT"
