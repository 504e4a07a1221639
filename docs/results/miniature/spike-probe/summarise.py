"""The spike probe's table (README.md here) from its run folders: python summarise.py OUT [--csv steps.csv]."""

import argparse
import csv
import statistics
from pathlib import Path

from jepagolf.research.report import load_run

PROBES = {"c0": "the control (ce seed 1004)", "p0": "fast seed 1004 as trained", "r0": "resumed at 1200, no change",
          "r1": "jepa_pred_leaky_slope=0.5 from 1200", "r2": "grad_clip_norm=1.0 from 1200",
          "r3": "jepa_loss_fn=smooth_l1 from 1200", "r4": "jepa_cov_weight=0 from 1200",
          "r5": "jepa_lambda=1e-12 from 1200 (JEPA off)"}
KEYS = ("ce_loss", "jepa_loss", "jepa_mse", "jepa_var", "jepa_cov", "pred_std", "target_std")


def load(run: Path) -> dict[int, dict]:
    return {r["step"]: r for r in load_run(run).rows if r.get("kind") == "train"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--csv", type=Path)
    a = ap.parse_args()
    runs = {n: load(a.out / n) for n in PROBES}
    ctrl = runs["c0"]
    same = all(runs["r0"][s]["ce_loss"] == runs["p0"][s]["ce_loss"] for s in range(1201, 1301))
    print(f"r0 equals p0 at every step 1201-1300: {same}\n")
    print("| probe | Δ CE vs control, 1201-1210 | 1211-1230 | 1231-1300 | largest JEPA loss, 1201-1300 | "
          "largest pred_std |")
    print("|---|---|---|---|---|---|")
    for n, label in PROBES.items():
        if n == "c0":
            continue
        r = runs[n]
        d = [statistics.mean(r[s]["ce_loss"] - ctrl[s]["ce_loss"] for s in range(lo, hi + 1))
             for lo, hi in ((1201, 1210), (1211, 1230), (1231, 1300))]
        jl = max(r[s]["jepa_loss"] for s in range(1201, 1301))
        ps = max(r[s]["pred_std"] for s in range(1201, 1301))
        print(f"| {n}: {label} | {d[0]:+.3f} | {d[1]:+.3f} | {d[2]:+.3f} | {jl:.3g} | {ps:.3g} |")
    if a.csv:
        with a.csv.open("w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["probe", "step", *KEYS])
            for n, r in runs.items():
                for s in range(1101 if n in ("c0", "p0") else 1201, 1301):
                    w.writerow([n, s, *(repr(r[s][k]) if k in r[s] else "" for k in KEYS)])


if __name__ == "__main__":
    main()
