#!/usr/bin/env bash
# Clip confirmation (plan: docs/results/miniature-plan.md, "Clip confirmation", fixed before any of its runs): rung
# m2's shape at equal steps, every arm with grad_clip_norm=1.0, on fresh seeds 3001-3008; arms ce, v3 and fast (the
# two clipped arms the clip screen advanced). The frozen commit of stage 2 (47f5a1f), one process, both cores.
# Runs go seed by seed; the plan's budget stops it at the seeds in hand. Resumable: rerun and finished runs are kept.
# Run from the frozen worktree (`git worktree add ../frozen 47f5a1f`; `python -m` imports the package of the current
# folder first), with this script from main and an absolute OUT:
#   cd ../frozen && PYTHONPATH=$PWD OUT=$HOME/runs/mini/clip-confirm bash ../main/docs/results/miniature/spike-probe/clip-confirm.sh
set -euo pipefail
OUT=${OUT:-runs/mini/clip-confirm}
M2=m2:num_layers=3,model_dim=96,num_heads=2,num_kv_heads=1,train_seq_len=128,train_batch_tokens=4096,micro_batch_tokens=4096,steps=4000,seeds=8
python -m jepagolf ladder --arm ce:jepa=false --arm v3: \
  --arm fast:jepa_target=online,jepa_batch_fraction=0.25,jepa_batched=true \
  --rung "$M2" --match steps --seeds 3001,3002,3003,3004,3005,3006,3007,3008 --vary all+data --val-tokens 0 \
  --set diag_every=800 --set step_compile=on --set grad_clip_norm=1.0 --threads 2 --out "$OUT"
