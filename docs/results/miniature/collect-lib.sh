# Sourced by collect-stage2.sh and collect-stage3.sh. collect_rung RUNG_DIR DEST: copies a finished ladder rung
# (the rung's ablation.md, runs.csv, ablation.json, calibration.json, and each run's config.json as
# configs/<arm>-seed<seed>.json, from which `jepagolf train --config FILE --out DIR` reruns that one run by hand) into
# DEST and plots it with `jepagolf report --by-arm`. A rung is collected only when its ablation.md exists (the ladder
# writes it when the rung's last run ends). Nothing is deleted: `report` replaces only the PNGs it wrote itself
# and refuses any other file of the same name.
collect_rung() {
  local rung_dir=$1 dest=$2 run
  if [ ! -f "$rung_dir/ablation.md" ]; then
    echo "rung $(basename "$rung_dir"): not finished, left out"
    return 0
  fi
  mkdir -p "$dest/configs"
  cp "$rung_dir"/{ablation.md,runs.csv,ablation.json,calibration.json} "$dest/"
  for run in "$rung_dir"/runs/*/; do
    cp "$run/config.json" "$dest/configs/$(basename "$run").json"
  done
  python -m jepagolf report --by-arm "$rung_dir"/runs/* --out "$dest/plots" > /dev/null
  echo "rung $(basename "$rung_dir"): collected in $dest"
}
