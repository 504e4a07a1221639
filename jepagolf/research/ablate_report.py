"""An ablation's analysis: paired tests of every arm against the control, tables, ablation.md, plots."""


from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jepagolf.jepa.diagnostics import share_group_order
from jepagolf.jsonfile import bounded_lines
from jepagolf.research import stats
from jepagolf.research.ablate_plan import BAR_NATS, BAR_P, FAILURE_NATS, VARY_NOTES, AblationError, AblationPlan
from jepagolf.research.ablate_run import write_runs_csv
from jepagolf.research.flops import mask_setting
from jepagolf.summary import score_kind
from jepagolf.train.logger import atomic_write_text


@dataclass
class Comparison:
    arm: str
    seeds: list[int]
    control_bpb: list[float]
    arm_bpb: list[float]
    paired: stats.PairedTest  # on bpb, arm - control
    welch: stats.WelchTest  # one-sided, H1: arm lower (no margin)
    bar_welch: stats.WelchTest  # one-sided, H1: arm lower by more than the bar
    bar_paired_p: float
    nats_per_bpb: float
    prequant: stats.PairedTest | None = None  # on the pre-quantisation bpb, arm - control

    def where(self) -> list[tuple[str, stats.PairedTest]]:
        """The round trip (the score: the verdict rests on it) and, beside it, the same weights before
        quantisation: where the effect lives when the two differ."""
        out = [("round trip (the score; the verdict rests on it)", self.paired)]
        return out + ([("before quantisation", self.prequant)] if self.prequant is not None else [])

    @property
    def bar_bpb(self) -> float:
        return BAR_NATS / self.nats_per_bpb

    @property
    def improvement_nats(self) -> float:
        return -self.paired.mean * self.nats_per_bpb

    @property
    def bar_met(self) -> bool:
        return self.improvement_nats >= BAR_NATS and self.bar_welch.p < BAR_P

    def sentence(self, control: str) -> str:
        imp = self.improvement_nats
        direction = "better" if imp > 0 else "worse"
        p = self.bar_welch.p
        p_text = "undefined (fewer than 2 seeds, or no spread)" if math.isnan(p) else f"{p:.3g}"
        verdict = "MET" if self.bar_met else "NOT met"
        reasons = []
        if imp < BAR_NATS:
            reasons.append(f"the mean improvement is {imp:+.4f} nats/token, below {BAR_NATS}")
        if not p < BAR_P:
            reasons.append(f"p = {p_text} is not below {BAR_P}")
        why = f" ({'; '.join(reasons)})" if reasons else ""
        return (
            f"Challenge bar (>= {BAR_NATS} nats/token better at p < {BAR_P}): **{verdict}** for `{self.arm}` vs "
            f"`{control}`{why}. `{self.arm}` is {abs(imp):.4f} nats/token ({abs(self.paired.mean):.4f} bpb) "
            f"{direction} on average over {self.paired.n} seeds; the one-sided Welch test of "
            f"H0: improvement <= {BAR_NATS} nats/token gives p = {p_text} (paired version: "
            f"p = {_fmt_p(self.bar_paired_p)})."
        )


def _fmt_p(p: float) -> str:
    return "n/a" if math.isnan(p) else f"{p:.3g}"


def compare(rows: Sequence[Mapping[str, Any]], plan: AblationPlan) -> tuple[list[Comparison], float, list[str]]:
    """Paired comparisons of every arm with the control on seeds both finished; (comparisons,
    nats per bpb, warnings)."""
    warnings: list[str] = []
    by = {(r["arm"], r["seed"]): r for r in rows}
    ctrl = plan.control.name
    ratios = {r["val_bytes"] / r["val_tokens"] for r in rows}
    ctrl_rows = [r for r in rows if r["arm"] == ctrl] or list(rows)
    bytes_per_token = ctrl_rows[0]["val_bytes"] / ctrl_rows[0]["val_tokens"]
    if len(ratios) > 1:
        warnings.append("runs were scored on different numbers of validation tokens (e.g. another "
                        "train_seq_len): nats use the control's bytes per token, bpb stays exact")
    nats_per_bpb = math.log(2) * bytes_per_token
    comps = []
    for arm in plan.arms[1:]:
        seeds = [s for s in plan.seeds if (ctrl, s) in by and (arm.name, s) in by]
        c = [by[(ctrl, s)]["val_bpb"] for s in seeds]
        a = [by[(arm.name, s)]["val_bpb"] for s in seeds]
        bar_bpb = BAR_NATS / nats_per_bpb
        paired = stats.paired_t_test(c, a)
        pre = stats.paired_t_test([by[(ctrl, s)]["prequant_val_bpb"] for s in seeds],
                                  [by[(arm.name, s)]["prequant_val_bpb"] for s in seeds])
        comps.append(Comparison(
            arm=arm.name, seeds=seeds, control_bpb=c, arm_bpb=a, paired=paired,
            welch=stats.welch_t_test(c, a, "less"), bar_welch=stats.welch_t_test(c, a, "less", margin=bar_bpb),
            bar_paired_p=paired.p_less(bar_bpb), nats_per_bpb=nats_per_bpb, prequant=pre,
        ))
    for r in rows:
        cfg_steps = plan.config(next(a for a in plan.arms if a.name == r["arm"]), r["seed"]).train.iterations
        if r["steps"] < cfg_steps:
            warnings.append(f"run {r['arm']}-seed{r['seed']} stopped at step {r['steps']} of {cfg_steps} (time cap): "
                            "its warmdown did not finish")
    return comps, nats_per_bpb, warnings


def _md_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def _pm(values: Sequence[float], digits: int = 4) -> str:
    m, s = stats.mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}" if not math.isnan(s) else f"{m:.{digits}f}"


def summary_tables(rows: Sequence[Mapping[str, Any]], plan: AblationPlan, comps: Sequence[Comparison]) -> str:
    """The per-arm table and the comparison table (markdown), as printed at the end of an ablation."""
    per_arm = []
    for arm in plan.arms:
        rs = [r for r in rows if r["arm"] == arm.name]
        if not rs:
            continue
        per_arm.append([
            arm.name, str(len(rs)), _pm([r["val_bpb"] for r in rs]), _pm([r["prequant_val_bpb"] for r in rs]),
            _pm([r["val_loss"] for r in rs]), "/".join(sorted({str(r["steps"]) for r in rs})),
            f"{stats.mean_std([r['seconds'] for r in rs])[0]:.1f}", f"{plan.flops_per_step[arm.name]:.3g}",
            f"{stats.mean_std([r['artifact_bytes'] for r in rs])[0]:.0f}",
        ])
    t1 = _md_table(["arm", "runs", "val_bpb (score, round-trip)", "pre-quant val_bpb", "score val_loss nats/token",
                    "steps", "train s (mean)", "FLOPs/step", "artifact bytes (mean)"], per_arm)
    body = []
    ctrl = plan.control.name
    for c in comps:
        p = c.paired
        body.append([
            f"{c.arm} − {ctrl}", str(p.n), f"{p.mean:+.4f}", f"{p.mean * c.nats_per_bpb:+.4f}",
            _fmt_ci(p, c.nats_per_bpb), _fmt_p(p.p_two_sided),
            _fmt_p(c.welch.p), _fmt_p(c.bar_welch.p), "met" if c.bar_met else "not met",
        ])
    t2 = _md_table(["difference", "pairs", "Δ bpb", "Δ nats/token", "95% CI nats/token", "paired t p (2-sided)",
                    "Welch p (1-sided)", "bar p", "bar"], body)
    return t1 + "\n\n" + t2 + "\n\n" + where_table(comps, ctrl)


def _fmt_ci(t: stats.PairedTest, unit: float) -> str:
    """The test's 95% CI times ``unit`` (e.g. nats per bpb); n/a with one pair (no spread to build it from)."""
    return f"[{t.ci_low * unit:+.4f}, {t.ci_high * unit:+.4f}]" if t.n >= 2 else "n/a"


def _fmt_mde(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.4f}"


FAILURES_HEADER = f"runs worse by > {FAILURE_NATS} nats"
WILCOXON_HEADER = "Wilcoxon p (2-sided)"


def failures(t: stats.PairedTest, nats_per_unit: float = 1.0) -> str:
    """'k of n': the pairs in which the arm is worse than the control by more than FAILURE_NATS nats/token."""
    return f"{t.count_above(FAILURE_NATS, nats_per_unit)} of {t.n}"


def where_table(comps: Sequence[Comparison], ctrl: str) -> str:
    """Δ after the round trip and before quantisation, each with its paired CI, p and MDE (nats/token), and
    beside the t-test the signed-rank p and the count of failed runs, so a verdict resting on one run shows."""
    body = []
    for c in comps:
        for what, t in c.where():
            k = c.nats_per_bpb
            body.append([f"{c.arm} − {ctrl}", what, f"{t.mean * k:+.4f}", _fmt_ci(t, k), _fmt_p(t.p_two_sided),
                         _fmt_mde(t.mde * k), _fmt_p(t.p_wilcoxon), failures(t, k)])
    return _md_table(["difference", "measured on", "Δ nats/token", "95% CI", "paired t p (2-sided)",
                      "MDE nats/token", WILCOXON_HEADER, FAILURES_HEADER], body)


DIAG_COLUMNS = ("pred_std", "target_std", "pred_erank", "target_erank", "pred_target_cos", "jepa_mse",
                "jepa_grad_share", "grad_cos_ce_jepa", "r2_pred", "r2_const", "r2_identity", "jepa_share_mse",
                "jepa_share_var", "jepa_share_cov")


MAX_METRICS_LINE_BYTES = 1 << 20  # a metrics row is under 2 kB


def last_diagnostics(run_dir: Path) -> dict[str, float] | None:
    """The last train row of a run that carries the collapse diagnostics (None for a plain-CE run)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    last = None
    # Line by line, each bounded: a garbled metrics.jsonl costs at most one line's bound in memory.
    for n, line in enumerate(bounded_lines(path, MAX_METRICS_LINE_BYTES, error=AblationError), 1):
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            raise AblationError(f"{path}: line {n} is not a JSON row; not a metrics log jepagolf wrote") from None
        if isinstance(row, dict) and row.get("kind") == "train" and "pred_erank" in row:
            last = row
    return last


def diagnostics_table(rows: Sequence[Mapping[str, Any]], plan: AblationPlan) -> str:
    body = []
    for arm in plan.arms:
        found = [d for d in (last_diagnostics(Path(r["run_dir"])) for r in rows if r["arm"] == arm.name) if d]
        if found:
            steps = "/".join(sorted({str(d["step"]) for d in found}))
            blocks = sorted({k for d in found for k in d if k.startswith("jepa_grad_share_")}, key=share_group_order)
            by_block = " / ".join(f"{_mean_of(found, k):.3g}" for k in blocks)
            body.append([arm.name, steps] + [f"{_mean_of(found, k):.4g}" for k in DIAG_COLUMNS] + [by_block])
    blocks_col = "jepa_grad_share by group (embed / block0 / ... / other)"
    return _md_table(["arm", "step", *DIAG_COLUMNS, blocks_col], body) if body else ""


def _mean_of(rows: Sequence[Mapping[str, float]], key: str) -> float:
    """Mean over the rows that logged ``key`` (runs from before a diagnostic existed lack it): NaN if none."""
    values = [d[key] for d in rows if key in d]
    return stats.mean_std(values)[0] if values else math.nan


def ablation_markdown(
    rows: Sequence[Mapping[str, Any]], plan: AblationPlan, comps: Sequence[Comparison], nats_per_bpb: float,
    warnings: Sequence[str], plots: Sequence[Path], out: Path,
) -> str:
    ctrl = plan.control.name
    base = plan.config(plan.control, plan.seeds[0])
    kinds = "; ".join(sorted({str(r["score_kind"]) for r in rows if r.get("score_kind")}))
    lines = [
        f"# Ablation: {' vs '.join(a.name for a in plan.arms)} (preset `{plan.preset}`)",
        "",
        f"- control: `{ctrl}` (the first arm); seeds: {', '.join(map(str, plan.seeds))}; "
        f"match: **{plan.match}**; seeds vary: **{plan.vary}** ({VARY_NOTES[plan.vary]})",
        f"- data: `{base.data.data_path or 'offline demo corpus'}`; common overrides: "
        f"`{json.dumps(plan.common, sort_keys=True)}`",
        *[f"- JEPA masks of `{a.name}`: {mask_setting(plan.config(a, plan.seeds[0]))}"
          for a in plan.arms if plan.config(a, plan.seeds[0]).jepa.active],
        "- score: `val_bpb` = the number the challenge would score (`score_val_bpb`): each run's final "
        "(post-warmdown) quantised artifact, round-tripped, over the whole validation split, "
        f"{kinds or score_kind(base).describe()}; "
        "`pre-quant` = the same EMA weights before quantisation, non-overlapping windows",
        f"- export (the round trip scored): {plan.export_note()}",
        "",
        "## Arms",
        "",
        _md_table(["arm", "overrides", "budget", "schedules"],
                  [[a.name, f"`{a.spec()}`", plan.notes[a.name], plan.schedule_note(a)] for a in plan.arms]),
        "",
        "## Results",
        "",
        summary_tables(rows, plan, comps),
        "",
        "Units and tests. Differences are arm − control (negative = the arm is better). Nats are nats per "
        f"validation token: Δnats = Δbpb × ln 2 × (validation bytes / tokens) = Δbpb × {nats_per_bpb:.6f} "
        "(the exact identity bpb = loss / ln 2 × tokens / bytes, with the control's byte and token counts). "
        "The t tests are scale-invariant, so their p-values are the same in bpb and in nats. "
        "95% CI: t-based interval of the mean paired difference (df = pairs − 1). "
        "`paired t p`: two-sided paired t-test of Δ = 0. `Welch p`: one-sided Welch t-test, H1: the arm's mean is "
        "lower. `bar p`: one-sided Welch t-test of H0: improvement <= "
        f"{BAR_NATS} nats/token (i.e. the arm's bpb shifted by {BAR_NATS / nats_per_bpb:.6f} bpb); "
        f"the bar is met when the mean improvement is >= {BAR_NATS} nats/token and bar p < {BAR_P}. Welch "
        "(unpaired) is the conservative choice the challenge itself makes when comparing with another "
        "submission's runs; the paired version is given in the sentence below. The last table puts the Δ "
        "of the same weights before quantisation beside the round trip's, each with its paired test and MDE: "
        "the verdict rests on the round trip (what the challenge scores); where the two differ, the export "
        f"({plan.export_note()}) moved the effect.",
        "",
    ]
    for c in comps:
        lines += [f"### {c.arm} vs {ctrl}", "", c.sentence(ctrl), ""]
        per_seed = [[str(s), f"{x:.5f}", f"{y:.5f}", f"{y - x:+.5f}", f"{(y - x) * c.nats_per_bpb:+.5f}"]
                    for s, x, y in zip(c.seeds, c.control_bpb, c.arm_bpb, strict=True)]
        lines += [_md_table(["seed", f"{ctrl} val_bpb", f"{c.arm} val_bpb", "Δ bpb", "Δ nats/token"], per_seed), ""]
        p, w = c.paired, c.welch
        lines += [
            f"- paired: mean Δ {p.mean:+.5f} bpb, sd {p.sd:.5f}, t = {p.t:.3f}, df = {p.df}, "
            f"p (two-sided) = {_fmt_p(p.p_two_sided)}, 95% CI [{p.ci_low:+.5f}, {p.ci_high:+.5f}] bpb",
            f"- Welch one-sided (H1: {c.arm} lower): t = {w.t:.3f}, df = {w.df:.2f}, p = {_fmt_p(w.p)}",
            f"- bar test (H0: improvement <= {BAR_NATS} nats/token): Welch t = {c.bar_welch.t:.3f}, df = "
            f"{c.bar_welch.df:.2f}, p = {_fmt_p(c.bar_welch.p)}; paired p = {_fmt_p(c.bar_paired_p)}",
            "",
        ]
    diag = diagnostics_table(rows, plan)
    if diag:
        lines += ["## Collapse diagnostics", "",
                  "At each JEPA run's last diagnostic step (masked positions), mean over seeds. Collapse shows "
                  "as prediction std and effective rank falling towards 0 and 1.", "", diag, ""]
    if warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in warnings] + [""]
    lines += ["## Files", "", "- `runs.csv`: one row per run; `ablation.json`: the plan; `runs/<arm>-seed<seed>/`: "
              "the run folders"]
    lines += [f"- `{p.relative_to(out)}`" for p in plots]
    return "\n".join(lines) + "\n"


def finalize(rows: Sequence[dict[str, Any]], plan: AblationPlan, out: Path, plots_wanted: bool = True) -> str:
    """runs.csv, plots (unless not wanted), ablation.md; returns the printed tables."""
    write_runs_csv(rows, out / "runs.csv")
    comps, nats_per_bpb, warnings = compare(rows, plan)
    plots: list[Path] = []
    if plots_wanted:
        plots, warnings = _plot_ablation(rows, plan, out, warnings)
    atomic_write_text(out / "ablation.md", ablation_markdown(rows, plan, comps, nats_per_bpb, warnings, plots, out))
    tables = summary_tables(rows, plan, comps)
    for c in comps:
        tables += "\n\n" + c.sentence(plan.control.name).replace("**", "")
    for w in warnings:
        tables += f"\nwarning: {w}"
    return tables


def _plot_ablation(
    rows: Sequence[Mapping[str, Any]], plan: AblationPlan, out: Path, warnings: list[str]
) -> tuple[list[Path], list[str]]:
    plots: list[Path] = []
    try:
        from jepagolf.research.report import plot_ablation

        groups = {a.name: [Path(r["run_dir"]) for r in rows if r["arm"] == a.name] for a in plan.arms}
        plots = plot_ablation(groups, out / "plots")
    except ImportError as e:  # matplotlib is optional: the numbers do not depend on it
        warnings = [*warnings, f"plots skipped: {e}"]
    return plots, warnings
