#!/usr/bin/env bash
# The spike probe of stage 2's m1 `fast` seed 1004 (README.md here). Run from the repository root, with the frozen
# commit's worktree (git worktree add ../frozen 47f5a1f) and stage 2's finished m1 runs:
#   FROZEN=../frozen STEPS=runs/mini/steps OUT=runs/mini/spike bash docs/results/miniature/spike-probe/probe.sh
# ~6 min on one core. Then: python docs/results/miniature/spike-probe/summarise.py OUT (the table of README.md).
set -euo pipefail
FROZEN=$(cd "${FROZEN:?the frozen worktree}" && pwd)
RUNS=${STEPS:?stage 2 output}/m1/rungs/m1/runs
OUT=${OUT:-runs/mini/spike}
PROBE=$(pwd)/docs/results/miniature/spike-probe/probe.py
mkdir -p "$OUT"
probe() { (cd "$FROZEN" && PYTHONPATH="$FROZEN" python "$PROBE" "$@"); }
LOG1=(--stop-at 1300 train.train_log_every=1)  # logging only: the rerun equals the ladder's run bit for bit
# p0 and c0: the fast run and its control, logged every step, checkpointed every 100 steps, stopped at step 1300.
[ -d "$OUT/p0" ] || probe "$RUNS/fast-seed1004/config.json" "$OUT/p0" "${LOG1[@]}" train.checkpoint_every_steps=100 \
  train.checkpoint_keep=50
[ -d "$OUT/c0" ] || probe "$RUNS/ce-seed1004/config.json" "$OUT/c0" "${LOG1[@]}"
# r0-r5: from p0's step-1200 checkpoint, one change each (r0: none, the harness check).
FROM=(--from "$OUT/p0" --ckpt step_00001200.ckpt)
for spec in "r0" "r1 jepa.jepa_pred_leaky_slope=0.5" "r2 optim.grad_clip_norm=1.0" 'r3 jepa.jepa_loss_fn="smooth_l1"' \
            "r4 jepa.jepa_cov_weight=0.0" "r5 jepa.jepa_lambda=1e-12"; do
  read -ra a <<< "$spec"
  [ -d "$OUT/${a[0]}" ] || probe "$RUNS/fast-seed1004/config.json" "$OUT/${a[0]}" "${FROM[@]}" "${LOG1[@]}" "${a[@]:1}"
done
