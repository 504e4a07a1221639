#!/usr/bin/env bash
# Rung m2's fast seed 1002, the spike with no JEPA excursion at the logged steps (README.md here): the run and its
# control trained again to step 3,200 at the frozen commit, logged at every step (fast: checkpoints every 100 steps,
# for continuations). Run from the repository root, with the frozen worktree (git worktree add ../frozen 47f5a1f):
#   FROZEN=../frozen STEPS=runs/mini/steps OUT=runs/mini/spike-m2 bash docs/results/miniature/spike-probe/probe-m2.sh
# ~10 + 8 min on one core. Then: python docs/results/miniature/spike-probe/around.py STEPS --probe OUT
set -euo pipefail
FROZEN=$(cd "${FROZEN:?the frozen worktree}" && pwd)
RUNS=${STEPS:?stage 2 output}/m0m2/rungs/m2/runs
OUT=${OUT:-runs/mini/spike-m2}
PROBE=$(pwd)/docs/results/miniature/spike-probe/probe.py
mkdir -p "$OUT"
probe() { (cd "$FROZEN" && PYTHONPATH="$FROZEN" python "$PROBE" "$@"); }
LOG1=(--stop-at 3200 train.train_log_every=1)  # logging only: the rerun equals the ladder's run bit for bit
[ -d "$OUT/p0" ] || probe "$RUNS/fast-seed1002/config.json" "$OUT/p0" "${LOG1[@]}" train.checkpoint_every_steps=100 \
  train.checkpoint_keep=50
[ -d "$OUT/c0" ] || probe "$RUNS/ce-seed1002/config.json" "$OUT/c0" "${LOG1[@]}"
