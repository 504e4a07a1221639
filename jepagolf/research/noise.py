"""Where the seed-to-seed noise of a paired difference comes from (issue 19, item 5; docs/results/noise-plan.md).

At one rung, Δ_s = loss(arm, seed s) − loss(control, seed s). Each *design* is a set of paired runs whose
seeds vary one thing (``--vary init``, ``masks``, ``data``) or the usual two (``all``). From every design
we have, per seed, the Δ before quantisation (``pre``), after the export's round trip (``rt``: the score
the ladder reports, on validation slice A) and the round trip's Δ on a second, disjoint validation slice
(``rt_b``). The components, each a variance of one Δ in nats²:

- a factor's own: the paired variance before quantisation of the design that varies it alone;
- the round trip's: per design, var(rt) − var(pre);
- the validation sample's: var(Δ_A − Δ_B) / 2 pooled over designs (A and B are disjoint slices of equal
  size, so each Δ's sampling variance is half that of their difference), with its mean (a shift every seed
  shares, which no seed count removes);
- what remains when the round trip's share is dropped (an export that keeps the effect) and the whole
  split is scored (the sampling variance scales with 1 / tokens): ``after``.

Pure arithmetic over the runs' scores; ``scripts/noise_study.py`` gathers the scores and writes the report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from jepagolf.research.stats import mean_std, paired_mde

MDE_TARGET = 0.005  # nats/token (issue 19)
MAX_SEEDS = 10_000


@dataclass(frozen=True)
class DesignDeltas:
    """Per seed (same order in each list): Δ before quantisation, after the round trip on slice A, and after
    the round trip on slice B (empty when not scored)."""

    pre: Sequence[float]
    rt: Sequence[float]
    rt_b: Sequence[float] = ()


def _var(x: Sequence[float]) -> float:
    return mean_std(x)[1] ** 2  # sample variance; nan for fewer than 2 values


def seeds_for_mde(sd: float, target: float = MDE_TARGET) -> int | None:
    """The fewest seed pairs whose paired t-test detects ``target`` (80% power, α = 0.05 two-sided) at paired
    sd ``sd``; None past MAX_SEEDS. The MDE falls as n grows, so a doubling then a bisection finds it in
    ~2 log2(n) evaluations (each one a root search)."""
    if not sd > 0 or paired_mde(sd, 2) <= target:
        return 2
    lo, hi = 2, 4  # paired_mde(sd, lo) > target throughout
    while paired_mde(sd, hi) > target:
        if hi >= MAX_SEEDS:
            return None
        lo, hi = hi, min(2 * hi, MAX_SEEDS)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if paired_mde(sd, mid) > target else (lo, mid)
    return hi


@dataclass(frozen=True)
class Decomposition:
    sd_pre: dict[str, float]  # per design
    sd_rt: dict[str, float]
    var_roundtrip: dict[str, float]  # var(rt) - var(pre), per design
    sd_roundtrip_own: dict[str, float]  # sd over seeds of rt - pre, per design
    var_factor: dict[str, float]  # a one-factor design's own variance: its var(pre) less the validation part
    var_val: float  # one Δ's validation-sample variance at the scored slice's size (nan without slice B)
    val_df: int
    val_shift: float  # mean of Δ_A − Δ_B over every seed of every design
    interaction: float  # var_pre(all) − var_pre(init) − var_pre(masks) + var_val: ~0 when the two add
    sd_before: float  # the paired sd as every committed ablation had it: design "all", round trip, slice A
    sd_after: float  # design "all" before quantisation, the validation part scaled to the whole split
    seeds_before: int | None
    seeds_after: int | None


def decompose(designs: Mapping[str, DesignDeltas], scored_tokens: int, split_tokens: int) -> Decomposition:
    """The components above from the designs that ran (``all`` is needed for before and after)."""
    if "all" not in designs:
        raise ValueError("the 'all' design (init and masks varying, as every committed ablation) is needed")
    if not 0 < scored_tokens <= split_tokens:
        raise ValueError(f"scored_tokens={scored_tokens} must be in 1..split_tokens={split_tokens}")
    sd_pre = {k: math.sqrt(_var(d.pre)) for k, d in designs.items()}
    sd_rt = {k: math.sqrt(_var(d.rt)) for k, d in designs.items()}
    var_rt = {k: _var(d.rt) - _var(d.pre) for k, d in designs.items()}
    own = {k: math.sqrt(_var(np.subtract(d.rt, d.pre))) for k, d in designs.items()}
    # Pooled within-design variance of Δ_A − Δ_B (each design's own mean removed), halved.
    resid, df, diffs = 0.0, 0, []
    for d in designs.values():
        if len(d.rt_b) != len(d.rt) or len(d.rt) < 2:
            continue
        diff = np.subtract(d.rt, d.rt_b)
        diffs.extend(diff.tolist())
        resid += float(((diff - diff.mean()) ** 2).sum())
        df += diff.size - 1
    var_val = resid / df / 2 if df else math.nan
    # Every design's pre-quantisation Δ carries the validation sample's variance once: a factor's own
    # variance is its design's minus that, and init and masks add when all = init + masks - val.
    val = var_val if math.isfinite(var_val) else 0.0
    factor = {k: _var(d.pre) - val for k, d in designs.items() if k != "all"}
    interaction = (_var(designs["all"].pre) - _var(designs["init"].pre) - _var(designs["masks"].pre) + val
                   if "init" in designs and "masks" in designs else math.nan)
    sd_before = sd_rt["all"]
    shrink = 1.0 - scored_tokens / split_tokens
    after_var = _var(designs["all"].pre) - (var_val * shrink if math.isfinite(var_val) else 0.0)
    sd_after = math.sqrt(max(after_var, 0.0))
    return Decomposition(sd_pre, sd_rt, var_rt, own, factor, var_val, df, float(np.mean(diffs)) if diffs else math.nan,
                         interaction, sd_before, sd_after, seeds_for_mde(sd_before), seeds_for_mde(sd_after))
