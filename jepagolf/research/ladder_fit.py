"""A ladder's rows and fits: Δ per rung and arm paired by seed, the weighted line in log compute, and the
effective-compute model."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jepagolf.config import build_config
from jepagolf.research import stats
from jepagolf.research.flops import train_flops_per_token
from jepagolf.research.ladder_plan import (
    CHALLENGE_PRESET,
    LadderError,
    RungPlan,
    challenge_flops,
    count_non_embedding_params,
    count_params,
)
from jepagolf.research.runs_csv import read_runs_table

# ----- rows ---------------------------------------------------------------------------------------

CSV_COLUMNS = ("rung", "arm", "seed", "val_bpb", "prequant_val_bpb", "val_loss", "steps", "tokens", "seconds",
               "params", "train_flops", "artifact_bytes", "config_hash", "run_dir", "prequant_val_loss",
               "non_embed_params", "match", "init_seed", "mask_seed", "data_offset")
_NUMERIC = {"seed": int, "val_bpb": float, "prequant_val_bpb": float, "val_loss": float, "steps": int,
            "tokens": int, "seconds": float, "params": int, "train_flops": float}
# Columns a runs.csv written before they existed lacks: read when present (and then checked), else unknown.
_OPTIONAL = {"prequant_val_loss": float, "non_embed_params": int}


def ladder_rows(rp: RungPlan, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    body = {a.name: count_non_embedding_params(rp.config(a.name)) for a in rp.plan.arms}
    return [{**r, "rung": rp.rung.name, "train_flops": rp.plan.flops_per_step[r["arm"]] * r["steps"],
             "non_embed_params": body[r["arm"]], "match": rp.plan.match} for r in rows]


def load_points(path: Path) -> list[dict[str, Any]]:
    """Rows of another ladder's runs.csv (e.g. GPU rungs), checked column by column: every numeric column
    present and filled in each row, the optional ones typed where a row has them and left out where not."""
    rows = read_runs_table(path, types={**_NUMERIC, **_OPTIONAL}, required=("rung", "arm", *_NUMERIC),
                           filled=tuple(_NUMERIC), error=LadderError, name=f"--add-points {path}",
                           what="a ladder runs.csv")
    if not rows:
        raise LadderError(f"--add-points {path}: no runs in it")
    for row in rows:
        for k in _OPTIONAL:
            if row.get(k) in (None, ""):
                row.pop(k, None)
    return rows


# ----- analysis -----------------------------------------------------------------------------------


@dataclass
class RungResult:
    rung: str
    arm: str
    seeds: list[int]
    deltas: list[float]  # nats/token, arm - control, by seed
    flops: float  # the control's mean training FLOPs
    params: int
    tokens: float  # the control's mean training tokens
    test: stats.PairedTest
    mde: float
    control_loss: float = math.nan  # the control's mean val_loss on these seeds, nats/token
    control_se: float = math.nan  # its standard error over the seeds
    prequant: stats.PairedTest | None = None  # the same Δ before quantisation (None: a row lacks it)
    prequant_mde: float = math.nan
    non_embed_params: int = 0  # the control's parameters less its embedding tables (0: not known)

    @property
    def n(self) -> int:
        return len(self.deltas)

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.params

    @property
    def tokens_per_non_embed_param(self) -> float:
        return self.tokens / self.non_embed_params if self.non_embed_params else math.nan


def rung_results(rows: Sequence[Mapping[str, Any]], control: str) -> list[RungResult]:
    """Δ per rung and non-control arm on the seeds both finished; rungs in order of compute."""
    out: list[RungResult] = []
    for rung in dict.fromkeys(r["rung"] for r in rows):
        rs = [r for r in rows if r["rung"] == rung]
        ctrl = {r["seed"]: r for r in rs if r["arm"] == control}
        if not ctrl:
            continue
        flops = stats.mean_std([r["train_flops"] for r in ctrl.values()])[0]
        tokens = stats.mean_std([r["tokens"] for r in ctrl.values()])[0]
        params = next(iter(ctrl.values()))["params"]
        for arm in dict.fromkeys(r["arm"] for r in rs if r["arm"] != control):
            by = {r["seed"]: r for r in rs if r["arm"] == arm}
            seeds = [s for s in ctrl if s in by]
            if not seeds:
                continue
            c, a = [ctrl[s]["val_loss"] for s in seeds], [by[s]["val_loss"] for s in seeds]
            test = stats.paired_t_test(c, a)
            c_mean, c_sd = stats.mean_std(c)
            pre = None
            if all("prequant_val_loss" in r for r in (*[ctrl[s] for s in seeds], *[by[s] for s in seeds])):
                pre = stats.paired_t_test([ctrl[s]["prequant_val_loss"] for s in seeds],
                                          [by[s]["prequant_val_loss"] for s in seeds])
            body = int(next(iter(ctrl.values())).get("non_embed_params", 0) or 0)
            se = c_sd / math.sqrt(len(c)) if len(c) > 1 else math.nan
            out.append(RungResult(rung, arm, seeds, [y - x for x, y in zip(c, a, strict=True)], flops, params,
                                  tokens, test, test.mde, c_mean, se, pre,
                                  pre.mde if pre is not None else math.nan, body))
    return sorted(out, key=lambda r: (r.arm, r.flops))


@dataclass
class Extrapolation:
    arm: str
    points: list[RungResult]
    fit: stats.LineFit | None
    x0: float  # log10 of the challenge's control training FLOPs
    note: str = ""

    @property
    def prediction(self) -> float:
        return self.fit.predict(self.x0) if self.fit else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        return self.fit.prediction_interval(self.x0) if self.fit else (math.nan, math.nan)

    @property
    def trend_interval(self) -> tuple[float, float]:
        return self.fit.confidence_interval(self.x0) if self.fit else (math.nan, math.nan)


def extrapolate(results: Sequence[RungResult], x0: float | None = None) -> list[Extrapolation]:
    """The weighted line Δ(log10 FLOPs) per arm, over the rungs with a measurable SE (>= 2 seeds)."""
    x0 = math.log10(challenge_flops()) if x0 is None else x0
    out = []
    for arm in dict.fromkeys(r.arm for r in results):
        pts = [r for r in results if r.arm == arm and r.test.n >= 2 and r.test.se > 0]
        fit, note = None, ""
        if len({r.flops for r in pts}) < 2:
            note = "fewer than two rungs with two or more paired seeds: no line"
        else:
            fit = stats.wls_line([math.log10(r.flops) for r in pts], [r.test.mean for r in pts],
                                 [r.test.se for r in pts])
            if fit.df == 0:
                note = "two rungs: the line goes through both points, nothing checks it"
        out.append(Extrapolation(arm, pts, fit, x0, note))
    return out


# ----- a second model: effective compute ----------------------------------------------------------
#
# A line in Δ against log compute has no bound: a cost that shrinks with compute crosses zero and keeps going.
# The second model reads each arm as a compute multiplier instead: the arm's loss at compute C is the control's
# at m·C, on the control's own curve ln L = α + β·log10 C fitted over the rungs. m < 1 means the arm is worth
# less than its wall-clock of control training, m > 1 more; Δ keeps the sign of ln m at every scale and can
# never exceed the control's whole loss. log10 m is then fitted against log10 C like Δ above and carried to
# the challenge, where Δ* = L*·(exp(β·log10 m*) − 1) with L* the control curve's value there.


@dataclass
class ComputeModel:
    curve: stats.LineFit | None  # ln(control loss) against log10 FLOPs
    arm: str = ""
    points: list[tuple[RungResult, float, float, float]] = field(default_factory=list)  # (rung, log10 m, lo, hi)
    fit: stats.LineFit | None = None  # log10 m against log10 FLOPs
    x0: float = math.nan
    note: str = ""

    def log_m_to_delta(self, log_m: float, x: float) -> float:
        """Δ nats/token of an arm worth 10**log_m times the control's compute, at log10 FLOPs x."""
        assert self.curve is not None
        return math.exp(self.curve.predict(x)) * math.expm1(self.curve.slope * log_m)

    @property
    def prediction(self) -> tuple[float, float, float]:
        """log10 m* at the challenge's compute and its 95% prediction interval: (log10 m*, lo, hi)."""
        if self.fit is None:
            return math.nan, math.nan, math.nan
        return self.fit.predict(self.x0), *self.fit.prediction_interval(self.x0)

    @property
    def delta(self) -> tuple[float, float, float]:
        """Δ* and its 95% prediction interval (the endpoints of log10 m*'s, mapped; β held at its estimate)."""
        lm, lo, hi = self.prediction
        if math.isnan(lm):
            return math.nan, math.nan, math.nan
        ends = sorted(self.log_m_to_delta(v, self.x0) for v in (lo, hi))
        return self.log_m_to_delta(lm, self.x0), ends[0], ends[1]


def control_curve(results: Sequence[RungResult]) -> stats.LineFit | None:
    """ln(control loss) against log10 FLOPs over the rungs (one point per rung; weights from the seed SE)."""
    by_rung: dict[str, RungResult] = {}
    for r in results:
        by_rung.setdefault(r.rung, r)
    pts = [r for r in by_rung.values() if r.control_se > 0 and math.isfinite(r.control_se)]
    if len({r.flops for r in pts}) < 2:
        return None
    return stats.wls_line([math.log10(r.flops) for r in pts], [math.log(r.control_loss) for r in pts],
                          [r.control_se / r.control_loss for r in pts])


def _log_m(control_loss: float, delta: float, beta: float) -> float:
    return (math.log(control_loss + delta) - math.log(control_loss)) / beta


def compute_models(results: Sequence[RungResult], x0: float | None = None) -> list[ComputeModel]:
    """Per arm: each rung's multiplier log10 m (with the interval its Δ CI maps to) and the line through them.

    log10 m = (ln(L_c + Δ) − ln L_c) / β, with β the control curve's slope: the shift along the control's
    curve that the arm's loss amounts to. Its standard error is SE(Δ) / ((L_c + Δ)·|β|) (β's own error is
    left out: it moves every rung's m together, which the fit across rungs cannot tell from a trend).
    """
    x0 = math.log10(challenge_flops()) if x0 is None else x0
    curve = control_curve(results)
    out = []
    for arm in dict.fromkeys(r.arm for r in results):
        model = ComputeModel(curve, arm, x0=x0)
        out.append(model)
        if curve is None:
            model.note = "fewer than two rungs with a measured control: no control curve"
            continue
        if not curve.slope < 0:
            model.note = f"the control's loss does not fall with compute on these rungs (β = {curve.slope:+.4f})"
            continue
        beta = curve.slope
        for r in results:
            if r.arm != arm or r.test.n < 2 or not r.test.se > 0:
                continue
            ends = sorted((_log_m(r.control_loss, r.test.ci_low, beta), _log_m(r.control_loss, r.test.ci_high, beta)))
            model.points.append((r, _log_m(r.control_loss, r.test.mean, beta), ends[0], ends[1]))
        if len({p[0].flops for p in model.points}) < 2:
            model.note = "fewer than two rungs with two or more paired seeds: no line"
            continue
        model.fit = stats.wls_line([math.log10(p[0].flops) for p in model.points], [p[1] for p in model.points],
                                   [p[0].test.se / ((p[0].control_loss + p[0].test.mean) * -beta)
                                    for p in model.points])
        if model.fit.df == 0:
            model.note = "two rungs: the line goes through both points, nothing checks it"
    return out


def challenge_tokens_per_param(arm_overrides: Mapping[str, str] | None = None) -> tuple[float, int, float]:
    """(training tokens, params, tokens/param) of the v3 shape in the challenge's compute for an arm,
    tokens = challenge FLOPs / that arm's training FLOPs per token."""
    cfg = build_config(CHALLENGE_PRESET, dict(arm_overrides or {}), environ={})
    tokens = challenge_flops() / train_flops_per_token(cfg)
    params = count_params(cfg)
    return tokens, params, tokens / params
