"""Stage 1 of the miniature challenge (issue 19, item 6): read the screen's two half-ladders and apply the rules
that docs/results/miniature-plan.md fixed before the screen ran.

    python scripts/miniature_screen.py runs/mini/screen --report docs/results/miniature

SCREEN holds the two one-rung ladders ``a`` and ``b`` of docs/results/miniature/screen.sh, each with its own
control runs. The two ladders train the control with the same seeds, the same configuration and the same
tokens, so its scores must agree to the last digit: that is checked before anything else. Writes
REPORT/screen.md and REPORT/screen-runs.csv.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from jepagolf.research.ablate_run import write_runs_csv
from jepagolf.research.ladder_fit import load_points
from jepagolf.research.stats import mean_std
from jepagolf.train.logger import atomic_write_text

HALVES = ("a", "b")
RUNG, CONTROL = "m1", "ce"
# The rules, as miniature-plan.md states them (nats/token, round trip).
DROP_IF_BOTH_WORSE_THAN = 0.02
V3_FIX_DIFFERS_BY = 0.005
KL_TIE = 0.005
ORDER = ("v3", "v3-fix", "fast", "multi-horizon", "nextlat", "nextlat-kl")


def read_rows(screen: Path) -> list[dict[str, Any]]:
    """Both halves' rows of rung m1, read (bounded, typed, column-checked) as the ladder reads another runs.csv."""
    rows = []
    for half in HALVES:
        path = screen / half / "runs.csv"
        if not path.is_file():
            raise SystemExit(f"error: {path} is missing: has ladder {half} finished? (rerun screen.sh)")
        rows += [{**r, "half": half} for r in load_points(path) if r["rung"] == RUNG]
    return rows


def control_losses(rows: list[dict[str, Any]]) -> dict[int, float]:
    """The control's round-trip val_loss by seed, after checking that both halves scored it identically."""
    by_half: dict[str, dict[int, float]] = {h: {} for h in HALVES}
    for r in rows:
        if r["arm"] == CONTROL:
            by_half[r["half"]][r["seed"]] = r["val_loss"]
    if by_half["a"] != by_half["b"]:
        raise SystemExit(f"error: the two halves' control runs differ: {by_half}")
    return by_half["a"]


def decide(deltas: dict[str, dict[int, float]]) -> tuple[list[str], list[str]]:
    """(the arms that go on to stage 2, the reasons, one line per rule)."""
    reasons = []
    keep = []
    for arm in ORDER:
        d = deltas.get(arm)
        if not d:
            reasons.append(f"`{arm}`: no finished pair, not decided")
            continue
        if len(d) >= 2 and all(v > DROP_IF_BOTH_WORSE_THAN for v in d.values()):
            reasons.append(f"`{arm}` is dropped: worse than {CONTROL} by more than {DROP_IF_BOTH_WORSE_THAN} on both "
                           f"seeds ({', '.join(f'{v:+.4f}' for v in d.values())})")
        else:
            keep.append(arm)
    if "v3" in keep and "v3-fix" in keep:
        gap = max(abs(deltas["v3"][s] - deltas["v3-fix"][s]) for s in deltas["v3"] if s in deltas["v3-fix"])
        if gap > V3_FIX_DIFFERS_BY:
            reasons.append(f"`v3-fix` goes on beside `v3`: they differ by up to {gap:.4f} > {V3_FIX_DIFFERS_BY} nats")
        else:
            keep.remove("v3-fix")
            reasons.append(f"`v3` goes on alone: `v3-fix` differs from it by at most {gap:.4f} <= {V3_FIX_DIFFERS_BY}")
    if "nextlat" in keep and "nextlat-kl" in keep:
        m_plain = sum(deltas["nextlat"].values()) / len(deltas["nextlat"])
        m_kl = sum(deltas["nextlat-kl"].values()) / len(deltas["nextlat-kl"])
        if abs(m_kl - m_plain) < KL_TIE:
            reasons.append(f"both NextLat arms go on: their mean Δ differ by {abs(m_kl - m_plain):.4f} < {KL_TIE}")
        elif m_kl < m_plain:
            keep.remove("nextlat")
            reasons.append(f"`nextlat-kl` goes on instead of `nextlat`: mean Δ {m_kl:+.4f} < {m_plain:+.4f}")
        else:
            keep.remove("nextlat-kl")
            reasons.append(f"`nextlat` goes on, not `nextlat-kl` (screen only): mean Δ {m_plain:+.4f} <= {m_kl:+.4f}")
    return keep, reasons


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("screen", type=Path)
    ap.add_argument("--report", type=Path, required=True)
    args = ap.parse_args(argv)
    rows = read_rows(args.screen)
    ctrl = control_losses(rows)
    pre_ctrl = {r["seed"]: r["prequant_val_loss"] for r in rows if r["arm"] == CONTROL}
    deltas: dict[str, dict[int, float]] = {}
    pre: dict[str, dict[int, float]] = {}
    seconds: dict[str, list[float]] = {}
    for r in rows:
        seconds.setdefault(r["arm"], []).append(r["seconds"])
        if r["arm"] == CONTROL:
            continue
        s = r["seed"]
        deltas.setdefault(r["arm"], {})[s] = r["val_loss"] - ctrl[s]
        pre.setdefault(r["arm"], {})[s] = r["prequant_val_loss"] - pre_ctrl[s]
    keep, reasons = decide(deltas)
    seeds = sorted(ctrl)
    head = ["arm", *(f"Δ seed {s}" for s in seeds), "mean Δ", "mean Δ before quantisation", "train s (mean)",
            "stage 2"]
    body = [[CONTROL, *(f"{ctrl[s]:.4f}" for s in seeds), "(val_loss)", "", f"{_mean(seconds[CONTROL]):.0f}",
             "control"]]
    for arm in ORDER:
        if arm not in deltas:
            continue
        d, p = deltas[arm], pre[arm]
        body.append([arm, *(f"{d[s]:+.4f}" if s in d else "n/a" for s in seeds), f"{_mean(d.values()):+.4f}",
                     f"{_mean(p.values()):+.4f}", f"{_mean(seconds[arm]):.0f}", "yes" if arm in keep else "no"])
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in body]
    md = [
        "# The miniature challenge, stage 1: the screen",
        "",
        "Rung m1 (2 x 64, batch 2,048, 4,000 steps), equal steps, seeds 101 and 102 (init, masks and data varied "
        "together), int8 + zlib, the whole validation split. Δ = round-trip val_loss(arm) − val_loss(ce), "
        "nats/token. The rules were fixed before the screen ran (`docs/results/miniature-plan.md`); two seeds "
        "screen, they decide nothing else.",
        "",
        *table,
        "",
        "The control was trained in both half-ladders; its scores agree to the last digit on both seeds.",
        "",
        "## Decisions",
        "",
        *[f"- {r}" for r in reasons],
        "",
        f"Stage 2's arms: `{CONTROL}`, " + ", ".join(f"`{a}`" for a in keep) + ".",
        "",
    ]
    args.report.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.report / "screen.md", "\n".join(md))
    cols = ["half", "rung", "arm", "seed", "val_loss", "prequant_val_loss", "val_bpb", "steps", "seconds",
            "config_hash"]
    write_runs_csv(rows, args.report / "screen-runs.csv", cols)
    print("\n".join(md))
    return 0


def _mean(values: Any) -> float:
    return mean_std(list(values))[0]


if __name__ == "__main__":
    sys.exit(main())
