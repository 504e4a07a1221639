"""The price curve of the miniature challenge (issue 19, item 7): what r times the control's step costs at equal
wall-clock, measured on the control alone. Reads docs/results/miniature/price.sh's runs and applies the analysis
that docs/results/miniature-plan.md ("Price curve") fixed before they ran.

    python scripts/miniature_price.py runs/mini/price --report docs/results/miniature/price \\
        [--stage2 docs/results/miniature/steps-m1/runs.csv [--stage3 docs/results/miniature/time-m1/runs.csv]]

PRICE holds ``ce-<S>-seed<seed>`` run folders for S = 4,000, 3,200, 2,667, 2,000 and seeds 1001-1004, or is the
price-runs.csv an earlier report wrote from them (docs/results/miniature/price/price-runs.csv: where the run folders
are gone, the analysis is redone from their committed figures). For a cost
ratio r = 4,000 / S the price is P(r) = L(S) - L(4,000), the round-trip loss that r times slower steps give up at
equal time (mean over seeds, paired CI and p); b is the slope of L = a + b ln S, fitted per seed. With
``--stage2`` (stage 2's m1 runs.csv), each arm's equal-steps Δ on all of stage 2's seeds is set against the price:
the break-even cost ratio r* = exp(Δ / b) for Δ < 0, and the built-in check that the S = 4,000 runs have the
config hash of stage 2's control for their seed. With ``--stage3`` (stage 3's m1 runs.csv, equal wall-clock) the
prediction the plan fixed is tested: each arm's equal-time Δ should be about its equal-steps Δ plus P(r) at the cost
ratio r that stage 3 measured (the control's steps over the arm's), P interpolated in ln r between the measured
points (beyond r = 2, extended along the fitted slope); a prediction outside stage 3's 95% CI is a miss.
Writes REPORT/price.md, price.json, price-runs.csv, price.png.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from jepagolf.jsonfile import read_json_object
from jepagolf.research.ablate_plan import AblationError
from jepagolf.research.ablate_run import read_runs_csv, write_runs_csv
from jepagolf.research.stats import paired_t_test
from jepagolf.train.logger import atomic_write_text

STEPS = (4000, 3200, 2667, 2000)
SEEDS = (1001, 1002, 1003, 1004)
FULL = STEPS[0]


def read_runs(price: Path) -> dict[tuple[int, int], dict[str, Any]]:
    if price.is_file():
        return read_price_csv(price)
    runs = {}
    for s in STEPS:
        for seed in SEEDS:
            path = price / f"ce-{s}-seed{seed}" / "summary.json"
            if not path.is_file():
                raise SystemExit(f"error: {path} is missing: has price.sh finished? (rerun it: it resumes)")
            summ = read_json_object(path)
            loss, steps = summ.get("roundtrip_val_loss"), summ.get("steps")
            if not isinstance(loss, float) or not math.isfinite(loss) or steps != s:
                raise SystemExit(f"error: {path}: not a finished {s}-step run (steps {steps!r}, loss {loss!r})")
            runs[s, seed] = summ
    return runs


def read_price_csv(path: Path) -> dict[tuple[int, int], dict[str, Any]]:
    """read_runs() from a committed price-runs.csv: the same runs, each row checked as a finished one."""
    rows = read_stage(path, ("steps", "seed", "roundtrip_val_loss", "prequant_val_loss", "train_seconds",
                             "config_hash", "run_dir"))
    by_key = {(r["steps"], r["seed"]): r for r in rows}
    runs = {}
    for s in STEPS:  # read_runs()'s order
        for seed in SEEDS:
            r = by_key.get((s, seed), {})
            try:
                loss = float(r.get("roundtrip_val_loss", "nan"))
            except ValueError:
                loss = math.nan
            if not math.isfinite(loss):
                raise SystemExit(f"error: {path}: no finished {s}-step run of seed {seed} "
                                 f"(loss {r.get('roundtrip_val_loss')!r})")
            runs[s, seed] = {**r, "roundtrip_val_loss": loss}
    return runs


def read_stage(path: Path, required: tuple[str, ...]) -> list[dict[str, Any]]:
    try:
        return read_runs_csv(path, required)
    except AblationError as e:
        raise SystemExit(f"error: {e}") from None


def price_at(r: float, prices: dict[str, Any], slope: float) -> tuple[float, bool]:
    """P(r) interpolated linearly in ln r between the measured points (P(1) = 0), and whether r lies beyond
    them (then P(r_max) + |b| ln(r / r_max), along the fitted slope b < 0). r < 1 (an arm cheaper than the
    control) extends the first segment below 1."""
    pts = sorted([(1.0, 0.0)] + [(FULL / p["steps"], p["mean"]) for p in prices.values()])
    x = [math.log(r_) for r_, _ in pts]
    y = [p_ for _, p_ in pts]
    lr = math.log(r)
    if lr > x[-1]:
        return y[-1] - slope * (lr - x[-1]), True
    if lr < x[0]:
        return y[0] + (y[1] - y[0]) / (x[1] - x[0]) * (lr - x[0]), True
    return float(np.interp(lr, x, y)), False


def check_prediction(stage2_arms: dict[str, Any], stage3: list[dict[str, Any]], prices: dict[str, Any],
                    slope: float) -> dict[str, Any]:
    """Per arm of stage 3: the cost ratio r it measured, the predicted equal-time Δ (equal-steps Δ + P(r)) and
    the measured one, paired over stage 3's seeds, and whether the prediction lies inside the measured 95% CI."""
    ctrl = {r["seed"]: r for r in stage3 if r["arm"] == "ce"}
    out: dict[str, Any] = {}
    for arm in dict.fromkeys(r["arm"] for r in stage3 if r["arm"] != "ce"):
        rows = [r for r in stage3 if r["arm"] == arm and r["seed"] in ctrl]
        if len(rows) < 2 or arm not in stage2_arms:
            continue
        ratio = float(np.median([ctrl[r["seed"]]["steps"] / r["steps"] for r in rows]))
        p_r, extrapolated = price_at(ratio, prices, slope)
        predicted = stage2_arms[arm]["delta"] + p_r
        t = paired_t_test([ctrl[r["seed"]]["val_loss"] for r in rows], [r["val_loss"] for r in rows])
        out[arm] = {"n": t.n, "cost_ratio": ratio, "price": p_r, "extrapolated": extrapolated,
                    "predicted": predicted, "measured": t.mean, "ci": [t.ci_low, t.ci_high], "p": t.p_two_sided,
                    "inside_ci": t.ci_low <= predicted <= t.ci_high}
    return out


def analyse(runs: dict[tuple[int, int], dict[str, Any]], stage2: list[dict[str, Any]] | None,
            stage3: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    loss = {k: float(v["roundtrip_val_loss"]) for k, v in runs.items()}
    full = [loss[FULL, seed] for seed in SEEDS]
    prices = {}
    for s in STEPS[1:]:
        t = paired_t_test(full, [loss[s, seed] for seed in SEEDS])
        prices[f"{FULL / s:.4g}"] = {"steps": s, "mean": t.mean, "ci": [t.ci_low, t.ci_high], "p": t.p_two_sided,
                                     "sd": t.sd, "per_seed": list(t.diffs)}
    slopes = [float(np.polyfit(np.log(STEPS), [loss[s, seed] for s in STEPS], 1)[0]) for seed in SEEDS]
    b = paired_t_test([0.0] * len(slopes), slopes)
    out: dict[str, Any] = {"steps": list(STEPS), "seeds": list(SEEDS), "loss": {f"{s}/{seed}": loss[s, seed]
                           for s, seed in loss}, "price": prices,
                           "slope": {"mean": b.mean, "ci": [b.ci_low, b.ci_high], "per_seed": slopes}}
    if stage2 is not None:
        ctrl = {r["seed"]: r for r in stage2 if r["arm"] == "ce"}
        out["hash_check"] = {str(seed): runs[FULL, seed].get("config_hash") == ctrl.get(seed, {}).get("config_hash")
                             for seed in SEEDS}
        arms: dict[str, Any] = {}
        for arm in dict.fromkeys(r["arm"] for r in stage2 if r["arm"] != "ce"):
            pairs = [(ctrl[r["seed"]]["val_loss"], r["val_loss"]) for r in stage2
                     if r["arm"] == arm and r["seed"] in ctrl]
            t = paired_t_test([c for c, _ in pairs], [a for _, a in pairs])
            arms[arm] = {"n": t.n, "delta": t.mean, "ci": [t.ci_low, t.ci_high], "p": t.p_two_sided,
                         "break_even_ratio": math.exp(t.mean / b.mean) if t.mean < 0 and b.mean < 0 else None}
        out["arms"] = arms
        if stage3 is not None:
            out["stage3"] = check_prediction(arms, stage3, prices, b.mean)
    return out


def _ci(ci: list[float]) -> str:
    return f"[{ci[0]:+.4f}, {ci[1]:+.4f}]"


def markdown(res: dict[str, Any]) -> str:
    lines = ["# Price curve at m1: what r times the control's step costs at equal wall-clock", "",
             "Plain CE at m1's shape for S = 4,000/r steps, schedules scaled to each run's length, seeds 1001-1004 on "
             "stage 2's data offsets; round-trip val loss (int8 + zlib, the whole validation split). Price P(r) = "
             "L(4,000/r) − L(4,000), nats/token, paired over the seeds. Command and plan: "
             "[../price.sh](../price.sh), [../../miniature-plan.md](../../miniature-plan.md) (Price curve).", "",
             "| r | steps | P(r) mean | 95% CI | paired t p | per seed |", "|---|---|---|---|---|---|"]
    for r, p in res["price"].items():
        per = ", ".join(f"{d:+.4f}" for d in p["per_seed"])
        lines.append(f"| {r} | {p['steps']:,} | {p['mean']:+.4f} | {_ci(p['ci'])} | {p['p']:.3g} | {per} |")
    sl = res["slope"]
    lines += ["", f"Slope b of L = a + b ln S, per seed then averaged: **{sl['mean']:+.4f}** nats per e-fold of steps, "
              f"95% CI {_ci(sl['ci'])} (per seed: {', '.join(f'{x:+.4f}' for x in sl['per_seed'])})."]
    if "arms" in res:
        ok = all(res["hash_check"].values())
        lines += ["", f"Built-in check: the 4,000-step runs have stage 2's control config hash for their seed: "
                  f"{'yes, all four' if ok else 'NO: ' + json.dumps(res['hash_check'])}.", "",
                  "| arm − ce (stage 2, m1) | seeds | Δ at equal steps | 95% CI | paired t p | break-even cost ratio "
                  "r* = exp(Δ / b) |", "|---|---|---|---|---|---|"]
        for arm, a in res["arms"].items():
            r_star = "none (no gain to spend)" if a["break_even_ratio"] is None else f"{a['break_even_ratio']:.3f}"
            lines.append(f"| {arm} | {a['n']} | {a['delta']:+.4f} | {_ci(a['ci'])} | {a['p']:.3g} | {r_star} |")
    if "stage3" in res:
        lines += ["", "Stage 3 (equal wall-clock, m1) against the prediction fixed before it ran: equal-time Δ ≈ "
                  "equal-steps Δ + P(r), r = the control's steps over the arm's in stage 3.", "",
                  "| arm − ce | seeds | cost ratio r | P(r) | predicted Δ | measured Δ | 95% CI | paired t p | "
                  "prediction |", "|---|---|---|---|---|---|---|---|---|"]
        for arm, a in res["stage3"].items():
            verdict = "inside the CI" if a["inside_ci"] else "**miss**"
            extra = " (beyond the measured r: along the slope)" if a["extrapolated"] else ""
            lines.append(f"| {arm} | {a['n']} | {a['cost_ratio']:.3f} | {a['price']:+.4f}{extra} | "
                         f"{a['predicted']:+.4f} | {a['measured']:+.4f} | {_ci(a['ci'])} | {a['p']:.3g} | {verdict} |")
    return "\n".join(lines) + "\n"


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for seed in SEEDS:
        ax.plot(STEPS, [res["loss"][f"{s}/{seed}"] for s in STEPS], "o-", alpha=0.6, label=f"seed {seed}")
    ax.set_xscale("log")
    ax.set_xlabel("steps (log)")
    ax.set_ylabel("round-trip val loss (nats/token)")
    ax.set_title("plain CE at m1, schedules scaled to each run's length", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("price", type=Path)
    ap.add_argument("--report", type=Path, required=True)
    ap.add_argument("--stage2", type=Path, help="stage 2's m1 runs.csv")
    ap.add_argument("--stage3", type=Path, help="stage 3's m1 runs.csv (needs --stage2)")
    args = ap.parse_args(argv)
    if args.stage3 and not args.stage2:
        ap.error("--stage3 needs --stage2: the prediction starts from stage 2's equal-steps Δ")
    runs = read_runs(args.price)
    stage3 = read_stage(args.stage3, ("arm", "seed", "val_loss", "steps")) if args.stage3 else None
    if stage3 is not None and any(r["steps"] <= 0 for r in stage3):
        raise SystemExit(f"error: {args.stage3}: a run with no steps: not a finished stage 3 rung")
    res = analyse(runs, read_stage(args.stage2, ("arm", "seed", "val_loss", "config_hash")) if args.stage2 else None,
                  stage3)
    args.report.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.report / "price.json", json.dumps(res, indent=2) + "\n")
    atomic_write_text(args.report / "price.md", markdown(res))
    cols = ["steps", "seed", "roundtrip_val_loss", "prequant_val_loss", "train_seconds", "config_hash", "run_dir"]
    write_runs_csv([{**summ, "steps": s, "seed": seed} for (s, seed), summ in sorted(runs.items())],
                   args.report / "price-runs.csv", cols)
    plot(res, args.report / "price.png")
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
