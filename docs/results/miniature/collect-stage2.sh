#!/usr/bin/env bash
# Copies stage 2's finished rungs into docs/results/miniature/steps-<rung>/ (collect-lib.sh says what), and once
# stage2.sh has written the joint report (m0m2/ladder.md), copies it and its ladder.json, ladder.png and runs.csv
# into steps/. Run from the repository root: OUT=runs/mini/steps bash docs/results/miniature/collect-stage2.sh
set -euo pipefail
OUT=${OUT:-runs/mini/steps}
DEST=docs/results/miniature
source "$DEST/collect-lib.sh"
for rung_dir in "$OUT"/m1/rungs/m1 "$OUT"/m0m2/rungs/m0 "$OUT"/m0m2/rungs/m2; do
  collect_rung "$rung_dir" "$DEST/steps-$(basename "$rung_dir")"
done
if [ -f "$OUT/m0m2/ladder.md" ] && grep -q "| m1 |" "$OUT/m0m2/ladder.md"; then
  mkdir -p "$DEST/steps"
  cp "$OUT"/m0m2/{ladder.md,ladder.json,ladder.png,runs.csv,plan.md} "$DEST/steps/"
  echo "joint report of m0-m2: collected in $DEST/steps"
else
  echo "joint report: not written yet (stage2.sh writes it last)"
fi
