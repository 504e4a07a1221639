#!/usr/bin/env bash
# Copies stage 3's finished rungs into docs/results/miniature/time-<rung>/ (collect-lib.sh says what), its arm
# decisions (arms.txt) into time/, and once the ladder has finished every rung, its joint report (ladder.md,
# ladder.json, ladder.png, runs.csv, plan.md) into time/ too.
# Run from the repository root: OUT=runs/mini/time bash docs/results/miniature/collect-stage3.sh
set -euo pipefail
OUT=${OUT:-runs/mini/time}
DEST=docs/results/miniature
source "$DEST/collect-lib.sh"
mkdir -p "$DEST/time"
cp "$OUT/arms.txt" "$DEST/time/"
for rung_dir in "$OUT"/ladder/rungs/*/; do
  collect_rung "${rung_dir%/}" "$DEST/time-$(basename "$rung_dir")"
done
if [ -f "$OUT/ladder/ladder.md" ]; then
  cp "$OUT"/ladder/{ladder.md,ladder.json,ladder.png,runs.csv,plan.md} "$DEST/time/"
  echo "joint report of stage 3: collected in $DEST/time"
else
  echo "joint report: not written yet (the ladder writes it when its last rung ends)"
fi
