#!/usr/bin/env bash
# Clip screen (plan: docs/results/miniature-plan.md, "Clip screen"): stage 2's m1 runs of ce, fast and v3 for seeds
# 1001-1004 trained again at the frozen commit 47f5a1f with one change, grad_clip_norm=1.0; everything else is
# each run's own config.json (seed, data offset, threads, schedules), so each pairs with its stage-2 run and its
# seed's control. One run at a time, one thread. Resumable: a finished run is kept; an unfinished one is moved
# aside (never deleted) and trained again. Run from the repository root:
#   FROZEN=../frozen STEPS=runs/mini/steps OUT=runs/mini/clip bash docs/results/miniature/spike-probe/clip-screen.sh
# Then: python docs/results/miniature/spike-probe/clip_report.py STEPS OUT (the screen's table and its decision).
set -euo pipefail
FROZEN=$(cd "${FROZEN:?the frozen worktree}" && pwd)
RUNS=$(cd "${STEPS:?stage 2 output}" && pwd)/m1/rungs/m1/runs
OUT=${OUT:-runs/mini/clip}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PROBE=$(pwd)/docs/results/miniature/spike-probe/probe.py
STOP=(${STOP_AT:+--stop-at "$STOP_AT"})  # a smoke test of this script only
for seed in 1001 1002 1003 1004; do
  for arm in ce fast v3; do
    run="$OUT/$arm-seed$seed"
    if [ -f "$run/summary.json" ]; then
      echo "$run: finished earlier, kept"
      continue
    fi
    if [ -d "$run" ]; then
      aside="$run.unfinished-$(date +%Y%m%d-%H%M%S)"
      mv "$run" "$aside"
      echo "$run: unfinished, moved to $aside and trained again"
    fi
    (cd "$FROZEN" && PYTHONPATH="$FROZEN" python "$PROBE" "$RUNS/$arm-seed$seed/config.json" "$run" "${STOP[@]}" \
      optim.grad_clip_norm=1.0) > "$OUT/$arm-seed$seed.log" 2>&1
    echo "$run: $(tail -1 "$OUT/$arm-seed$seed.log")"
  done
done
