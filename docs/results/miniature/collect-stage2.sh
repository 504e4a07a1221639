#!/usr/bin/env bash
# Copies stage 2's finished rungs into docs/results/miniature/steps-<rung>/ (the rung's ablation.md, runs.csv,
# ablation.json, calibration.json, and each run's config.json as configs/<arm>-seed<seed>.json, from which
# `jepagolf train --config FILE --out DIR` reruns that one run by hand) and plots each with `jepagolf report --by-arm`;
# once stage2.sh has written the joint report (m0m2/ladder.md), copies it and its ladder.json, ladder.png and runs.csv into steps/.
# A rung is collected only when its ablation.md exists (the ladder writes it when the rung's last run ends).
# Nothing is deleted: `report` replaces only the PNGs it wrote itself and refuses any other file of the same name.
# Run from the repository root: OUT=runs/mini/steps bash docs/results/miniature/collect-stage2.sh
set -euo pipefail
OUT=${OUT:-runs/mini/steps}
DEST=docs/results/miniature
for rung_dir in "$OUT"/m1/rungs/m1 "$OUT"/m0m2/rungs/m0 "$OUT"/m0m2/rungs/m2; do
  rung=$(basename "$rung_dir")
  if [ ! -f "$rung_dir/ablation.md" ]; then
    echo "rung $rung: not finished, left out"
    continue
  fi
  mkdir -p "$DEST/steps-$rung"
  cp "$rung_dir"/{ablation.md,runs.csv,ablation.json,calibration.json} "$DEST/steps-$rung/"
  mkdir -p "$DEST/steps-$rung/configs"
  for run in "$rung_dir"/runs/*/; do
    cp "$run/config.json" "$DEST/steps-$rung/configs/$(basename "$run").json"
  done
  python -m jepagolf report --by-arm "$rung_dir"/runs/* --out "$DEST/steps-$rung/plots" > /dev/null
  echo "rung $rung: collected in $DEST/steps-$rung"
done
if [ -f "$OUT/m0m2/ladder.md" ] && grep -q "| m1 |" "$OUT/m0m2/ladder.md"; then
  mkdir -p "$DEST/steps"
  cp "$OUT"/m0m2/{ladder.md,ladder.json,ladder.png,runs.csv,plan.md} "$DEST/steps/"
  echo "joint report of m0-m2: collected in $DEST/steps"
else
  echo "joint report: not written yet (stage2.sh writes it last)"
fi
