"""Table and summary of compiled cpu-demo bench runs: plain CE's MFU as a share of its measured ceiling.

    python docs/results/ladder-shapes/cpu-demo-windows/summarize.py docs/results/ladder-shapes/cpu-demo-windows/*.json

One row per `jepagolf bench` JSON, then per version of the code (`source_hash`): the runs, their median, range,
how many reach the issue's 0.9, and the mean with its 95% t interval (the runs are whole bench processes minutes
apart; the machine's fast and slow states make them the unit of variation), and over all runs the rank
correlation between the GEMM probe's rate and the ratio (a slow GEMM state raises the floor, so the ratio).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from scipy import stats

GOAL = 0.9


def main(paths: list[str]) -> None:
    groups: dict[str, list[float]] = defaultdict(list)
    rates: list[float] = []
    all_ratios: list[float] = []
    print("| file | time (UTC) | source hash | CE step ms | floor ms | attention ms | GEMM probe GFLOP/s "
          "| MFU / ceiling |")
    print("|---|---|---|---|---|---|---|---|")
    for path in sorted(paths):
        run = json.loads(Path(path).read_text())
        ceiling = run["mfu_ceiling_ce"]
        ratio = run["mfu_ce"] / ceiling["mfu_ceiling"]
        groups[run["source_hash"]].append(ratio)
        rates.append(run["matmul"]["flops_per_s"] / 1e9)
        all_ratios.append(ratio)
        print(f"| {Path(path).stem} | {run['time'][11:16]} | {run['source_hash']} "
              f"| {run['variants']['ce']['step_ms']:.1f} | {ceiling['floor_step_ms']:.1f} "
              f"| {ceiling['attention_ms']:.1f} "
              f"| {run['matmul']['flops_per_s'] / 1e9:.1f} | {ratio:.3f} |")
    for source, ratios in groups.items():
        n = len(ratios)
        line = (f"{source}: {n} runs, median {statistics.median(ratios):.3f}, "
                f"range {min(ratios):.3f}-{max(ratios):.3f}, {sum(r >= GOAL for r in ratios)} of {n} at >= {GOAL}")
        if n > 1:
            mean, sem = statistics.fmean(ratios), statistics.stdev(ratios) / n**0.5
            half = stats.t.ppf(0.975, n - 1) * sem
            line += f"; mean {mean:.3f}, 95% CI {mean - half:.3f}..{mean + half:.3f}"
        print(line)
    if len(rates) > 2:
        rho, p = stats.spearmanr(rates, all_ratios)
        print(f"all {len(rates)} runs: Spearman correlation of the GEMM probe's rate with MFU / ceiling {rho:.2f} "
              f"(p = {p:.3f})")


if __name__ == "__main__":
    main(sys.argv[1:])
