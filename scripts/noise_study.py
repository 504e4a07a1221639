"""The noise study of issue 19, item 5: score the designs' artifacts on a second validation slice and write
the variance decomposition (docs/results/noise-plan.md; the arithmetic is jepagolf.research.noise).

    python scripts/noise_study.py runs/noise --report docs/results/noise [--data DIR]

RUNS holds one ladder folder per design (``init``, ``masks``, ``data``, ``all-int5``: see
docs/results/noise/run.sh), each with the one rung ``n1``. Designs whose rung has not finished are left out
and named. Every evaluation is cached in RUNS/noise-evals.json, so a rerun scores only what is new.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

from jepagolf.jsonfile import read_json_object
from jepagolf.research.noise import MDE_TARGET, DesignDeltas, decompose
from jepagolf.research.stats import paired_mde, paired_t_test
from jepagolf.train.logger import atomic_write_text

DESIGNS = {"init": "init", "masks": "masks", "data": "data", "all-int5": "all"}
RUNG = "n1"
CONTROL, ARM = "ce", "v3"
SLICE_TOKENS = 262_144  # the ladder's scored slice A is tokens 0..262,143; B the next 262,144


def evaluate(artifact: Path, data: Path, start: int, end: int) -> float:
    cmd = [sys.executable, "-m", "jepagolf", "eval", str(artifact), "--data", str(data), "--device", "cpu",
           "--val-slice", f"{start}:{end}"]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed: {res.stderr.strip()}")
    return float(json.loads(res.stdout)["val_loss"])


def scored(cache: dict[str, float], cache_path: Path, artifact: Path, data: Path, start: int, end: int) -> float:
    """The artifact's val_loss on tokens start..end-1, from the cache or evaluated and cached at once."""
    key = f"{artifact.resolve()}@{start}:{end}"
    if key not in cache:
        cache[key] = evaluate(artifact, data, start, end)
        atomic_write_text(cache_path, json.dumps(cache, indent=1, sort_keys=True) + "\n")
    return cache[key]


def design_rows(folder: Path) -> list[dict[str, str]] | None:
    path = folder / "rungs" / RUNG / "runs.csv"
    if not path.is_file():
        return None
    with path.open() as f:
        return list(csv.DictReader(f))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", type=Path)
    ap.add_argument("--report", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=Path.home() / ".cache" / "jepagolf" / "research")
    args = ap.parse_args()
    cache_path = args.runs / "noise-evals.json"
    cache: dict[str, float] = read_json_object(cache_path) if cache_path.is_file() else {}  # type: ignore[assignment]
    designs: dict[str, DesignDeltas] = {}
    tables: dict[str, list[dict[str, object]]] = {}
    missing = []
    for folder_name, design in DESIGNS.items():
        rows = design_rows(args.runs / folder_name)
        if rows is None:
            missing.append(folder_name)
            continue
        by = {(r["arm"], int(r["seed"])): r for r in rows}
        seeds = sorted({s for (a, s) in by if a == CONTROL and (ARM, s) in by})
        per_seed = []
        for seed in seeds:
            scores = {}
            for arm in (CONTROL, ARM):
                run = Path(by[(arm, seed)]["run_dir"])
                summary = read_json_object(run / "summary.json")
                artifact = run / str(summary["artifact"])
                scores[arm] = {"pre": float(summary["prequant_val_loss"]), "rt": float(summary["roundtrip_val_loss"]),
                               "rt_b": scored(cache, cache_path, artifact, args.data, SLICE_TOKENS, 2 * SLICE_TOKENS),
                               # a check: slice A rescored must give the ladder's own score
                               "rt_a_again": scored(cache, cache_path, artifact, args.data, 0, SLICE_TOKENS)}
            per_seed.append((seed, scores))
        designs[design] = DesignDeltas(pre=[s[ARM]["pre"] - s[CONTROL]["pre"] for _, s in per_seed],
                                       rt=[s[ARM]["rt"] - s[CONTROL]["rt"] for _, s in per_seed],
                                       rt_b=[s[ARM]["rt_b"] - s[CONTROL]["rt_b"] for _, s in per_seed])
        tables[design] = [{"seed": seed, **{f"{arm}_{k}": v for arm in (CONTROL, ARM) for k, v in s[arm].items()}}
                          for seed, s in per_seed]
        dest = args.report / folder_name
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(args.runs / folder_name / "rungs" / RUNG / "runs.csv", dest / "runs.csv")
        for name in ("ablation.md",):
            src = args.runs / folder_name / "rungs" / RUNG / name
            if src.is_file():
                shutil.copy(src, dest / name)
    if "all" not in designs:
        raise SystemExit(f"error: the all-int5 design has not finished in {args.runs} (missing: {missing})")
    split_tokens = 800_302  # the research corpus's validation split (docs/results/research-corpus)
    dec = decompose(designs, SLICE_TOKENS, split_tokens)
    args.report.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.report / "noise.json", json.dumps(
        {"designs": {k: vars(v) | {"pre": list(v.pre), "rt": list(v.rt), "rt_b": list(v.rt_b)}
                     for k, v in designs.items()},
         "runs": tables, "decomposition": vars(dec), "missing": missing}, indent=1, default=list) + "\n")
    atomic_write_text(args.report / "noise.md", report(designs, dec, tables, missing))
    print(args.report / "noise.md")
    return 0


def _f(x: float, digits: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def report(designs: dict[str, DesignDeltas], dec, tables, missing: list[str]) -> str:
    lines = ["# Noise study at rung n1 (issue 19, item 5)", "",
             "Δ = loss(v3) − loss(ce) per seed, nats/token; pre = before quantisation, rt = after the export's "
             "round trip, both on validation slice A (tokens 0..262,143, the ladder's); rt_B on slice B "
             "(262,144..524,287).", ""]
    if missing:
        lines += [f"Not finished (left out): {', '.join(missing)}.", ""]
    lines += ["| design | seeds | mean Δ pre | sd pre | mean Δ rt | sd rt | sd(rt − pre) | p (rt) | MDE at n (rt) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for k, d in designs.items():
        n = len(d.pre)
        t = paired_t_test([0.0] * n, list(d.rt))
        lines.append(f"| {k} | {n} | {_f(sum(d.pre) / n)} | {_f(dec.sd_pre[k])} | {_f(sum(d.rt) / n)} | "
                     f"{_f(dec.sd_rt[k])} | {_f(dec.sd_roundtrip_own[k])} | {_f(t.p_two_sided, 3)} | "
                     f"{_f(paired_mde(dec.sd_rt[k], n))} |")
    lines += ["", "Components (variance of one Δ, nats², and its sd):", ""]
    for k, v in dec.var_factor.items():
        lines.append(f"- {k} alone, net of the validation sample: {v:.3g} (sd {_f(math.sqrt(max(v, 0)))})")
    lines.append(f"- validation sample at 262,144 tokens: {dec.var_val:.3g} (sd {_f(math.sqrt(dec.var_val))}, "
                 f"{dec.val_df} df); mean Δ_A − Δ_B {_f(dec.val_shift)}")
    for k, v in dec.var_roundtrip.items():
        lines.append(f"- round trip's share in {k}: var(rt) − var(pre) = {v:.3g}")
    lines.append(f"- init x masks interaction: {dec.interaction:.3g}")
    lines += ["", f"**Before** (init and masks varying, int5 + GPTQ round trip, 262,144 validation tokens): paired sd "
              f"{_f(dec.sd_before)}, {dec.seeds_before} seeds for an MDE of {MDE_TARGET}.",
              f"**After** (the same before quantisation, i.e. an export that keeps the effect, and the whole split "
              f"scored): paired sd {_f(dec.sd_after)}, {dec.seeds_after} seeds for an MDE of {MDE_TARGET}.", "",
              "Per run (nats/token):", "",
              "| design | seed | ce pre | ce rt | ce rt_B | v3 pre | v3 rt | v3 rt_B | rt rescored on A (ce, v3) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for k, rows in tables.items():
        for r in rows:
            lines.append(f"| {k} | {r['seed']} | {_f(r['ce_pre'])} | {_f(r['ce_rt'])} | {_f(r['ce_rt_b'])} | "
                         f"{_f(r['v3_pre'])} | {_f(r['v3_rt'])} | {_f(r['v3_rt_b'])} | "
                         f"{_f(r['ce_rt_a_again'], 6)}, {_f(r['v3_rt_a_again'], 6)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
