"""A ladder's report: the verdicts in plain words, ladder.md, ladder.png, ladder.json."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jepagolf.research import stats
from jepagolf.research.ablate_plan import FAILURE_NATS
from jepagolf.research.ablate_report import (
    FAILURES_HEADER,
    WILCOXON_HEADER,
    _fmt_ci,
    _fmt_mde,
    _fmt_p,
    _md_table,
    failures,
)
from jepagolf.research.ablate_run import write_runs_csv
from jepagolf.research.ladder_fit import (
    CSV_COLUMNS,
    ComputeModel,
    Extrapolation,
    RungResult,
    challenge_tokens_per_param,
    compute_models,
    extrapolate,
    rung_results,
)
from jepagolf.research.ladder_plan import (
    BAR_NATS,
    CHALLENGE_GPUS,
    CHALLENGE_MFU,
    CHALLENGE_SECONDS,
    CONTROL_FLOPS_NOTE,
    PEAK_FLOPS,
    challenge_flops,
)
from jepagolf.train.logger import atomic_write_text


def compute_model_markdown(models: Sequence[ComputeModel], control: str) -> list[str]:
    """The effective-compute section of ladder.md."""
    curve = next((m.curve for m in models if m.curve is not None), None)
    lines = ["## A second model: effective compute", "",
             "The line above has no bound: a cost that shrinks with compute crosses zero and keeps falling. Read "
             f"instead as a compute multiplier, an arm's loss is `{control}`'s at m times the compute, on "
             f"`{control}`'s own curve ln L = α + β·log10 FLOPs fitted over the rungs; m < 1: the arm is worth less "
             f"than that much `{control}` training, m > 1: more. log10 m is fitted against log10 FLOPs (weights "
             "1/SE²) and carried to the challenge's compute, where Δ* = L*·(exp(β·log10 m*) − 1), L* the curve's "
             "value there. This Δ* keeps the sign of log m and cannot exceed the whole loss; it shares the first "
             "model's weak part (a trend carried six decades).", ""]
    if curve is None:
        return lines + ["No control curve: fewer than two rungs with two or more seeds of the control.", ""]
    lines += [f"Control curve: ln L = {curve.intercept:+.4f} {curve.slope:+.4f}·log10 FLOPs "
              f"(β ± {curve.slope_se:.4f}; chi²/df = {curve.chi2:.2f} / {curve.df}); at the challenge's compute it "
              f"gives L* = {math.exp(curve.predict(models[0].x0)):.3f} nats/token.", ""]
    body = []
    for m in models:
        for r, lm, lo, hi in m.points:
            body.append([r.rung, m.arm, f"{10**lm:.3f}", f"[{10**lo:.3f}, {10**hi:.3f}]"])
    if body:
        lines += [_md_table(["rung", "arm", "m (worth m x the control's compute)", "95% CI"], body), ""]
    body = []
    for m in models:
        if m.fit is None:
            body.append([m.arm, "n/a", "n/a", "n/a", "n/a", m.note])
            continue
        lm, lo, hi = m.prediction
        d, dlo, dhi = m.delta
        body.append([m.arm, f"{m.fit.slope:+.4f} ± {m.fit.slope_se:.4f}", f"{m.fit.chi2:.2f} / {m.fit.df}",
                     f"{10**lm:.3f} [{10**lo:.3f}, {10**hi:.3f}]", f"{d:+.4f} [{dlo:+.4f}, {dhi:+.4f}]", m.note])
    lines += [_md_table(["arm", "log10 m per decade", "chi² / df", "m at the challenge (95% PI)",
                         "Δ* nats/token (95% PI)", "note"], body), ""]
    return lines


def verdict(e: Extrapolation, control: str) -> str:
    """What the extrapolation says, in plain words."""
    if e.fit is None:
        return f"`{e.arm}`: no prediction ({e.note})."
    lo, hi = e.interval
    p = e.prediction
    decades = e.x0 - max(math.log10(r.flops) for r in e.points)
    head = (f"`{e.arm}` − `{control}` at the challenge's compute ({decades:.1f} decades above the largest rung): "
            f"predicted {p:+.4f} nats/token, 95% prediction interval [{lo:+.4f}, {hi:+.4f}]. ")
    if e.fit.df == 0:
        body = ("With two rungs the line has no degrees of freedom left: it is a line through two points, not a "
                "prediction, and no verdict is drawn from it.")
    elif hi < -BAR_NATS:
        body = (f"The whole interval is below −{BAR_NATS}: if the trend holds, `{e.arm}` beats `{control}` by at "
                "least the challenge's bar.")
    elif hi < 0:
        body = (f"The interval is below zero: if the trend holds, `{e.arm}` helps, but it may not reach the "
                f"{BAR_NATS} bar.")
    elif lo > 0:
        body = f"The interval is above zero: if the trend holds, `{e.arm}` hurts at the challenge's scale."
    elif hi - lo > 4 * BAR_NATS:
        body = (f"The interval is too wide to say anything: it holds zero and is {hi - lo:.3f} nats wide, more "
                f"than four times the {BAR_NATS} bar, so it allows a clear gain, no effect and a clear loss.")
    else:
        body = (f"The interval holds zero and is narrow: the ladder predicts no effect larger than "
                f"{max(abs(lo), abs(hi)):.4f} nats/token either way.")
    f = e.fit
    slope = (f" The effect changes by {f.slope:+.4f} ± {f.slope_se:.4f} nats/token per decade of compute "
             f"(chi²/df = {f.chi2 / f.df:.2f}{', errors inflated by it' if f.scale > 1 else ''})." if f.df > 0 else
             f" The effect changes by {f.slope:+.4f} ± {f.slope_se:.4f} nats/token per decade of compute.")
    return head + body + slope + (f" Note: {e.note}." if e.note else "")


def where_rows(results: Sequence[RungResult]) -> list[list[str]]:
    """Per rung and arm: the round trip's Δ and the pre-quantisation Δ, each with CI, p and MDE."""
    body = []
    for r in results:
        for what, t, mde in (("round trip (the score)", r.test, r.mde), ("before quantisation", r.prequant,
                                                                           r.prequant_mde)):
            if t is None:
                body.append([r.rung, r.arm, what, "n/a", "n/a", "n/a", "n/a", "n/a", "n/a"])
                continue
            body.append([r.rung, r.arm, what, f"{t.mean:+.4f}", _fmt_ci(t, 1.0), _fmt_p(t.p_two_sided),
                         _fmt_mde(mde), _fmt_p(t.p_wilcoxon), failures(t)])
    return body


MATCH_WORDS = {
    "wallclock": "**equal wall-clock**: every arm trains the control's seconds at each rung (step counts "
                 "calibrated on this machine), the challenge's currency",
    "flops": "**equal training FLOPs**: every arm trains the control's FLOPs at each rung",
    "steps": "**equal steps**: every arm trains the control's steps at each rung (the organisers' first test: a "
             "sign of life, whatever each step costs); the equal-time comparison is a separate ladder "
             "(--match wallclock)",
}


def comparison_line(matches: Sequence[str]) -> str:
    """Which comparison the tables are, in words (runs of other or unknown matches said so)."""
    known = [m for m in dict.fromkeys(matches) if m]
    if not known:
        return "Comparison: not recorded in these rows (runs.csv from before the match was written)."
    if len(known) == 1:
        return f"Comparison: {MATCH_WORDS.get(known[0], known[0])}."
    return f"Comparison: **mixed** ({', '.join(known)}): rungs matched differently are not one comparison."


def ladder_markdown(
    results: Sequence[RungResult], extrapolations: Sequence[Extrapolation], control: str, plan_notes: Sequence[str],
    challenge: Mapping[str, tuple[float, int, float]], plots: Sequence[str], warnings: Sequence[str],
    models: Sequence[ComputeModel] = (), comparison: str = "",
) -> str:
    x0 = challenge_flops()
    lines = [
        "# Compute ladder",
        "",
        *([comparison, ""] if comparison else []),
        "## What it predicts",
        "",
    ]
    lines += [verdict(e, control) + "\n" for e in extrapolations]
    lines += [
        "How sure: the interval covers the line's uncertainty (its parameters, inflated when the rungs scatter "
        "more than their seed-to-seed errors allow) and a new measurement's noise, under the assumption that "
        "Δ is linear in log compute all the way from these rungs to the challenge's. That assumption is the "
        "weak part: nothing here tests it beyond the largest rung, and the rungs differ from the challenge in "
        "data, sequence length and tokens per parameter (table below).",
        "",
        "## Rungs",
        "",
        f"Δ = round-trip val_loss of the arm − the control's (`{control}`), nats per validation token, paired by "
        "seed; 95% CI from the paired t; MDE = the smallest |Δ| the paired t-test finds with 80% power at "
        f"alpha 0.05 (two-sided) with this many seeds and the measured sd. {CONTROL_FLOPS_NOTE}.",
        "",
    ]
    body = []
    for r in results:
        t = r.test
        ci = _fmt_ci(t, 1.0)
        mde = "n/a" if math.isnan(r.mde) else f"{r.mde:.4f}" + (" ✓" if r.mde < BAR_NATS else "")
        sd = "n/a" if math.isnan(t.sd) else f"{t.sd:.4f}"
        body_tpp = "n/a" if math.isnan(r.tokens_per_non_embed_param) else f"{r.tokens_per_non_embed_param:.1f}"
        body.append([r.rung, r.arm, str(r.n), f"{r.flops:.3g}", f"{r.params:,}", f"{r.tokens:,.0f}",
                     f"{r.tokens_per_param:.1f}", body_tpp, f"{t.mean:+.4f}", ci, sd, mde])
    lines += [_md_table(["rung", "arm", "pairs", "control FLOPs", "params", "control tokens", "tokens/param",
                         "tokens/non-embedding param", "Δ nats/token", "95% CI", "paired sd",
                         f"MDE (✓ < {BAR_NATS})"], body), ""]
    lines += ["Where the effect lives: the same Δ after the round trip (the score; the verdict and the fits rest "
              "on it) and before quantisation (the exported weights in float), each with its paired test. Where "
              "they differ, the export moved the effect.", ""]
    lines += [_md_table(["rung", "arm", "measured on", "Δ nats/token", "95% CI", "paired t p (2-sided)",
                         "MDE nats/token", WILCOXON_HEADER, FAILURES_HEADER], where_rows(results)), ""]
    lines += ["## Fit and extrapolation", "",
              f"Weighted least squares Δ = a + b·log10(FLOPs), weights 1/SE². The challenge's compute: "
              f"{CHALLENGE_GPUS} GPUs x {CHALLENGE_SECONDS:g} s x MFU {CHALLENGE_MFU} (the v3 trainer, plain CE, "
              f"measured on the lent H200) x {PEAK_FLOPS / 1e12:.1f} TFLOP/s peak = **{x0:.3g} FLOPs** "
              f"(log10 = {math.log10(x0):.2f}).", ""]
    body = []
    for e in extrapolations:
        if e.fit is None:
            body.append([e.arm, str(len(e.points)), "n/a", "n/a", "n/a", "n/a", "n/a", e.note])
            continue
        f = e.fit
        lo, hi = e.interval
        tlo, thi = e.trend_interval
        body.append([e.arm, str(len(e.points)), f"{f.intercept:+.4f} ± {f.intercept_se:.4f}",
                     f"{f.slope:+.4f} ± {f.slope_se:.4f}", f"{f.chi2:.2f} / {f.df}", f"{e.prediction:+.4f}",
                     f"[{tlo:+.4f}, {thi:+.4f}] / [{lo:+.4f}, {hi:+.4f}]", e.note])
    lines += [_md_table(["arm", "rungs", "a", "b per decade", "chi² / df", "Δ at challenge",
                         "95% trend CI / prediction interval", "note"], body), ""]
    if models:
        lines += compute_model_markdown(models, control)
    lines += ["Tokens per parameter at the challenge's compute (v3 shape, tokens = challenge FLOPs / the arm's "
              "training FLOPs per token):", ""]
    lines += [_md_table(["arm", "training tokens", "params", "tokens/param"],
                        [[a, f"{t:.3g}", f"{n:,}", f"{t / n:.0f}"] for a, (t, n, _) in challenge.items()]), ""]
    if plan_notes:
        lines += ["## Plan", ""] + [f"- {n}" for n in plan_notes] + [""]
    if warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in warnings] + [""]
    lines += ["## Files", "", "- `runs.csv`: one row per run; `ladder.json`: every number above; "
              "`rungs/<rung>/`: each rung's ablation (ablation.md, runs.csv, run folders)"]
    lines += [f"- `{p}`" for p in plots]
    return "\n".join(lines) + "\n"


def plot_ladder(extrapolations: Sequence[Extrapolation], path: Path, models: Sequence[ComputeModel] = ()) -> Path:
    """Δ against training FLOPs (log x): rung means with 95% CIs, the fit with its 95% band, and the
    extrapolated point with its prediction interval; with ``models``, a second panel of the effective-compute
    multipliers m (log y), their line and its value at the challenge."""
    import numpy as np

    from jepagolf.research.report import _colors, _pyplot

    plt = _pyplot()
    fitted = [m for m in models if m.points]
    if fitted:
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(14, 5))
        _plot_multipliers(ax2, fitted, _colors(len(fitted)))
    else:
        fig, ax = plt.subplots(figsize=(8, 5))
    x0 = challenge_flops()
    colors = _colors(len(extrapolations))
    for k, (e, color) in enumerate(zip(extrapolations, colors, strict=True)):
        jitter = 10 ** (0.02 * (k - (len(extrapolations) - 1) / 2))  # arms side by side at one rung
        xs = [r.flops * jitter for r in e.points]
        ys = [r.test.mean for r in e.points]
        err = [[r.test.mean - r.test.ci_low for r in e.points], [r.test.ci_high - r.test.mean for r in e.points]]
        ax.errorbar(xs, ys, yerr=err, fmt="o", color=color, capsize=3, label=f"{e.arm} (rungs, 95% CI)")
        if e.fit is None:
            continue
        lx = np.linspace(min(math.log10(r.flops) for r in e.points) - 0.2, e.x0 + 0.2, 200)
        band = np.array([e.fit.confidence_interval(v) for v in lx])
        ax.plot(10**lx, [e.fit.predict(v) for v in lx], color=color, lw=1)
        ax.fill_between(10**lx, band[:, 0], band[:, 1], color=color, alpha=0.15)
        lo, hi = e.interval
        ax.errorbar([x0 * jitter], [e.prediction], yerr=[[e.prediction - lo], [hi - e.prediction]], fmt="D",
                    color=color, capsize=5, mfc="white", label=f"{e.arm} at the challenge (95% PI)")
        ax.annotate(f"{e.prediction:+.3f} [{lo:+.3f}, {hi:+.3f}]", (x0, e.prediction), fontsize=7, color=color,
                    xytext=(-6, 8 + 10 * k), textcoords="offset points", ha="right")
    # The y range follows the rungs and the predictions; a prediction interval much wider than that runs off
    # the plot (its numbers are written beside the point), so that the measured points stay readable.
    ys = [-2 * BAR_NATS, 2 * BAR_NATS] + [v for e in extrapolations for r in e.points
                                            for v in (r.test.ci_low, r.test.ci_high) if math.isfinite(v)]
    ys += [e.prediction for e in extrapolations if e.fit is not None]
    span = max(ys) - min(ys)
    ax.set_ylim(min(ys) - 0.5 * span, max(ys) + 0.5 * span)
    ax.axhline(0.0, color="black", lw=0.8)
    ax.axhline(-BAR_NATS, color="gray", lw=0.8, ls="--", label=f"the bar (−{BAR_NATS} nats)")
    ax.axvline(x0, color="gray", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs of the control (log scale)")
    ax.set_ylabel("Δ val_loss, arm − control (nats/token)")
    ax.set_title("Compute ladder: effect against compute, fit band, extrapolation")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_multipliers(ax: Any, models: Sequence[ComputeModel], colors: Sequence[Any]) -> None:
    import numpy as np

    for k, (m, color) in enumerate(zip(models, colors, strict=True)):
        jitter = 10 ** (0.02 * (k - (len(models) - 1) / 2))
        xs = [r.flops * jitter for r, *_ in m.points]
        ys = [10**lm for _, lm, _, _ in m.points]
        err = [[10**lm - 10**lo for _, lm, lo, _ in m.points], [10**hi - 10**lm for _, lm, _, hi in m.points]]
        ax.errorbar(xs, ys, yerr=err, fmt="o", color=color, capsize=3, label=f"{m.arm} (rungs, 95% CI)")
        if m.fit is None:
            continue
        lx = np.linspace(min(math.log10(r.flops) for r, *_ in m.points) - 0.2, m.x0 + 0.2, 200)
        band = np.array([m.fit.confidence_interval(v) for v in lx])
        ax.plot(10**lx, 10 ** np.array([m.fit.predict(v) for v in lx]), color=color, lw=1)
        ax.fill_between(10**lx, 10 ** band[:, 0], 10 ** band[:, 1], color=color, alpha=0.15)
        lm, lo, hi = m.prediction
        ax.errorbar([10**m.x0 * jitter], [10**lm], yerr=[[10**lm - 10**lo], [10**hi - 10**lm]], fmt="D",
                    color=color, capsize=5, mfc="white", label=f"{m.arm} at the challenge (95% PI)")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.axvline(10 ** models[0].x0, color="gray", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training FLOPs of the control (log scale)")
    ax.set_ylabel("m: the arm is worth m x the control's compute")
    ax.set_title("Effective compute (m > 1: the arm helps)")
    ax.legend(fontsize=7, loc="best")


def unequal_time_warnings(rows: Sequence[Mapping[str, Any]], control: str, tolerance: float = 0.10) -> list[str]:
    """A rung whose arms' mean training seconds differ from the control's by more than ``tolerance``: its
    step counts came from a calibration the runs did not bear out, so its Δ is not at equal wall-clock."""
    out = []
    for rung in dict.fromkeys(r["rung"] for r in rows):
        secs: dict[str, list[float]] = {}
        for r in rows:
            if r["rung"] == rung:
                secs.setdefault(r["arm"], []).append(float(r["seconds"]))
        if control not in secs:
            continue
        base = stats.mean_std(secs[control])[0]
        for arm, v in secs.items():
            mean = stats.mean_std(v)[0]
            if arm != control and base > 0 and abs(mean / base - 1) > tolerance:
                out.append(f"rung {rung}, arm {arm}: trained {mean:.1f} s on average against the control's "
                           f"{base:.1f} s ({mean / base - 1:+.0%}): the calibrated step counts missed, so this rung's "
                           "Δ is not an equal-wall-clock comparison")
    return out


def analyse(
    rows: Sequence[Mapping[str, Any]], control: str, out: Path, plan_notes: Sequence[str] = (),
    arm_overrides: Mapping[str, Mapping[str, str]] | None = None, warnings: Sequence[str] = (),
) -> str:
    """runs.csv, ladder.json, ladder.png, ladder.md from the rows of every rung; returns the printed summary."""
    write_runs_csv(rows, out / "runs.csv", CSV_COLUMNS)
    results = rung_results(rows, control)
    extrapolations = extrapolate(results)
    models = compute_models(results)
    arms = [control] + list(dict.fromkeys(r.arm for r in results))
    over = arm_overrides or {}
    challenge = {a: challenge_tokens_per_param(over[a]) for a in arms if a in over}
    warnings = list(warnings)
    plots: list[str] = []
    try:
        plots.append(plot_ladder(extrapolations, out / "ladder.png", models).name)
    except ImportError as e:  # matplotlib is optional
        warnings.append(f"plot skipped: {e}")
    # Only equal-time rungs promise equal seconds (rows from before the match was written were all such).
    warnings += unequal_time_warnings([r for r in rows if r.get("match", "wallclock") == "wallclock"], control)
    smallest = min(results, key=lambda r: r.flops).rung if results else None
    for r in results:
        if r.rung == smallest and not r.mde < BAR_NATS:
            warnings.append(f"rung {r.rung}, arm {r.arm}: MDE {r.mde:.4f} nats is not below {BAR_NATS} with "
                            f"{r.n} seeds (paired sd {r.test.sd:.4f}); more seeds would be needed")
    comparison = comparison_line([str(r.get("match") or "") for r in rows])
    md = ladder_markdown(results, extrapolations, control, plan_notes, challenge, plots, warnings, models, comparison)
    atomic_write_text(out / "ladder.md", md)
    doc = {
        "control": control,
        "comparison": comparison,
        "verdict_rests_on": "round trip (the score)",
        "challenge": {"gpus": CHALLENGE_GPUS, "seconds": CHALLENGE_SECONDS, "mfu": CHALLENGE_MFU,
                      "peak_flops": PEAK_FLOPS, "train_flops": challenge_flops(),
                      "tokens_params_per_arm": {a: list(v) for a, v in challenge.items()}},
        "rungs": [{"rung": r.rung, "arm": r.arm, "seeds": r.seeds, "deltas_nats": r.deltas, "mean": r.test.mean,
                   "sd": _num(r.test.sd), "se": _num(r.test.se), "ci": [_num(r.test.ci_low), _num(r.test.ci_high)],
                   "mde": _num(r.mde), "p": _num(r.test.p_two_sided), "p_wilcoxon": _num(r.test.p_wilcoxon),
                   "failures": r.test.count_above(FAILURE_NATS), "failure_nats": FAILURE_NATS,
                   "train_flops": r.flops, "params": r.params, "tokens": r.tokens,
                   "non_embed_params": r.non_embed_params or None,
                   "prequant": None if r.prequant is None else {
                       "mean": r.prequant.mean, "sd": _num(r.prequant.sd), "ci": [_num(r.prequant.ci_low),
                                                                                  _num(r.prequant.ci_high)],
                       "p": _num(r.prequant.p_two_sided), "mde": _num(r.prequant_mde),
                       "p_wilcoxon": _num(r.prequant.p_wilcoxon),
                       "failures": r.prequant.count_above(FAILURE_NATS)}}
                  for r in results],
        "fits": [{"arm": e.arm, "note": e.note, "rungs": [r.rung for r in e.points],
                  **({"intercept": e.fit.intercept, "slope": e.fit.slope, "cov": e.fit.cov, "chi2": e.fit.chi2,
                      "df": e.fit.df, "scale": e.fit.scale, "x0": e.x0, "prediction": e.prediction,
                      "prediction_interval": list(e.interval), "trend_interval": list(e.trend_interval)}
                     if e.fit else {})} for e in extrapolations],
        "compute_models": [
            {"arm": m.arm, "note": m.note,
             "control_curve": None if m.curve is None else {
                 "intercept": m.curve.intercept, "slope": m.curve.slope, "cov": m.curve.cov, "chi2": m.curve.chi2,
                 "df": m.curve.df},
             "log10_m": [{"rung": r.rung, "mean": lm, "ci": [lo, hi]} for r, lm, lo, hi in m.points],
             **({"slope": m.fit.slope, "intercept": m.fit.intercept, "cov": m.fit.cov, "chi2": m.fit.chi2,
                 "df": m.fit.df, "log10_m_at_challenge": list(m.prediction), "delta_at_challenge": list(m.delta)}
                if m.fit else {})} for m in models],
        "warnings": warnings,
    }
    atomic_write_text(out / "ladder.json", json.dumps(doc, indent=2, sort_keys=True) + "\n")
    lines = [comparison.replace("**", "")]
    for r in results:
        pre = "" if r.prequant is None else (f"; before quantisation {r.prequant.mean:+.4f} [{r.prequant.ci_low:+.4f}, "
                                              f"{r.prequant.ci_high:+.4f}], MDE {r.prequant_mde:.4f}")
        lines.append(f"rung {r.rung} arm {r.arm}: Δ {r.test.mean:+.4f} nats/token (round trip) over {r.n} seeds, 95% "
                     f"CI [{r.test.ci_low:+.4f}, {r.test.ci_high:+.4f}], MDE {r.mde:.4f}, Wilcoxon p "
                     f"{_fmt_p(r.test.p_wilcoxon)}, {failures(r.test)} runs worse by > {FAILURE_NATS}{pre}; "
                     f"FLOPs {r.flops:.3g}")
    lines += [verdict(e, control).replace("`", "") for e in extrapolations]
    for m in models:
        if m.fit is not None:
            lm, lo, hi = m.prediction
            d, dlo, dhi = m.delta
            lines.append(f"effective compute: {m.arm} is worth {10**lm:.3f}x {control}'s compute at the challenge "
                         f"(95% PI [{10**lo:.3f}, {10**hi:.3f}]): Δ* {d:+.4f} nats/token [{dlo:+.4f}, {dhi:+.4f}]")
    lines += [f"warning: {w}" for w in warnings]
    return "\n".join(lines)


def _num(v: float) -> float | None:
    return None if math.isnan(v) else v
