"""PNG plots of run folders: losses, val_bpb, JEPA terms and collapse diagnostics.

``jepagolf report RUN_DIR... [--out DIR]`` overlays runs, one colour each. ``plot_ablation`` draws
groups of runs (an ablation's arms): the mean over the group's seeds as a line and the min-max
range as a band. Everything is read from each run's ``metrics.jsonl`` and ``summary.json``.
matplotlib is an optional dependency (``pip install 'jepagolf[plots]'``).
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jepagolf.jepa.diagnostics import share_group_order
from jepagolf.jsonfile import read_json_object
from jepagolf.research.stepwise import (
    DEFAULT_WINDOW_STEPS,
    STEPWISE_KEY,
    Spike,
    Window,
    control_peak,
    paired_spikes,
    paired_windows,
    windows_markdown,
)
from jepagolf.train.logger import atomic_write_text


class ReportError(RuntimeError):
    """A run folder cannot be plotted (missing or empty metrics), or matplotlib is missing."""


class PlotDependencyError(ReportError, ImportError):
    """matplotlib is not installed (it is an optional dependency)."""


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise PlotDependencyError("plots need matplotlib: pip install 'jepagolf[plots]' (or matplotlib)") from e
    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


@dataclass
class RunData:
    path: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any]

    def series(self, kind: str, key: str, x: str = "step") -> tuple[np.ndarray, np.ndarray]:
        pts = [(r[x], r[key]) for r in self.rows
               if r.get("kind") == kind and _finite_number(r.get(x)) and _finite_number(r.get(key))]
        if not pts:
            return np.zeros(0), np.zeros(0)
        xs, ys = zip(*pts, strict=True)
        return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)


def _finite_number(v: Any) -> bool:
    """A plottable value: a finite int or float (a NaN, an infinity, a string or a bool is left out)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer beyond any float
        return False


# The trainer writes rows of a few hundred bytes; a longer line, or a longer file, is not its metrics.
MAX_METRICS_LINE = 1 << 20
MAX_METRICS_BYTES = 1 << 30


def load_run(path: Path) -> RunData:
    """The rows of ``path``/metrics.jsonl (each a JSON object; non-finite or wrongly typed values are not
    plotted) and its summary.json; ReportError, one line naming the file and line, for anything else."""
    metrics = path / "metrics.jsonl"
    if not metrics.is_file():
        raise ReportError(f"{path} is not a run folder: no metrics.jsonl")
    if (size := metrics.stat().st_size) > MAX_METRICS_BYTES:
        raise ReportError(f"{metrics}: {size:,} bytes, more than a run's metrics can be ({MAX_METRICS_BYTES:,})")
    rows = []
    with open(metrics, "rb") as f:
        n = 0
        while raw := f.readline(MAX_METRICS_LINE + 1):
            n += 1
            if len(raw) > MAX_METRICS_LINE:
                raise ReportError(f"{metrics}:{n}: a line longer than {MAX_METRICS_LINE:,} bytes; not a run's "
                                  "metrics.jsonl")
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError) as e:
                why = "nested too deeply" if isinstance(e, RecursionError) else "not JSON"
                raise ReportError(f"{metrics}:{n}: {why}") from None
            if not isinstance(row, dict):
                raise ReportError(f"{metrics}:{n}: a {type(row).__name__}, not a JSON object")
            rows.append(row)
    if not rows:
        raise ReportError(f"{metrics} is empty")
    summary_path = path / "summary.json"
    summary = read_json_object(summary_path) if summary_path.is_file() else {}
    return RunData(path, rows, summary)


@dataclass
class Curve:
    """A group's curve on a common x grid: mean, and min/max over the group's runs."""

    x: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n: int


def group_curve(runs: Sequence[RunData], kind: str, key: str, x: str = "step") -> Curve | None:
    """Aggregate one metric over runs at the steps they share (all seeds of an arm log the same steps).

    With x = train_time_s the x of each step is the runs' mean training time at that step.
    """
    per_run = []
    for r in runs:
        steps, ys = r.series(kind, key, "step")
        if steps.size:
            _, ts = r.series(kind, "train_time_s", "step") if x == "train_time_s" else (steps, steps)
            per_run.append((steps, ys, ts))
    if not per_run:
        return None
    common = set(per_run[0][0].tolist())
    for steps, _, _ in per_run[1:]:
        common &= set(steps.tolist())
    grid = np.asarray(sorted(common))
    if grid.size == 0:
        return None
    ys = np.stack([np.interp(grid, s, y) for s, y, _ in per_run])  # (runs, points), exact at shared steps
    if x == "train_time_s":
        if any(t.size != s.size for s, _, t in per_run):
            return None
        xs = np.stack([np.interp(grid, s, t) for s, _, t in per_run]).mean(axis=0)
    else:
        xs = grid
    return Curve(xs, ys.mean(axis=0), ys.min(axis=0), ys.max(axis=0), len(per_run))


# One panel: (title, [(kind, key, label suffix, linestyle)], log-scale y)
Panel = tuple[str, list[tuple[str, str, str, str]], bool]

JEPA_PANELS: list[Panel] = [
    ("JEPA loss (mse + 0.15 var + 0.02 cov)", [("train", "jepa_loss", "", "-")], False),
    ("latent MSE", [("train", "jepa_mse", "", "-")], False),
    ("JEPA weight lambda (ramped)", [("train", "jepa_lambda", "", "-")], False),
    ("VICReg variance hinge (solid: predictor, trained; dashed: target, logged)",
     [("train", "jepa_var", "", "-"), ("train", "target_var", "", "--")], False),
    ("VICReg covariance (solid: predictor; dashed: target)",
     [("train", "jepa_cov", "", "-"), ("train", "target_cov", "", "--")], True),
    ("mask fraction", [("train", "mask_frac", "", "-")], False),
]

DIAG_PANELS: list[Panel] = [
    ("mean per-feature std (solid: prediction, dashed: target)",
     [("train", "pred_std", "", "-"), ("train", "target_std", "", "--")], False),
    ("min per-feature std (solid: prediction, dashed: target)",
     [("train", "pred_std_min", "", "-"), ("train", "target_std_min", "", "--")], False),
    ("effective rank (solid: prediction, dashed: target)",
     [("train", "pred_erank", "", "-"), ("train", "target_erank", "", "--")], False),
    ("mean cosine(prediction, target)", [("train", "pred_target_cos", "", "-")], False),
    ("JEPA share of the GPT's gradient norm", [("train", "jepa_grad_share", "", "-")], False),
    ("cosine(CE gradient, JEPA gradient)", [("train", "grad_cos_ce_jepa", "", "-")], False),
    ("R^2 of the targets (solid: predictor; dashed: constant, the other rows' mean; dotted: identity, "
     "the context state)", [("train", "r2_pred", "", "-"), ("train", "r2_const", "", "--"),
                            ("train", "r2_identity", "", ":")], False),
    ("share of the JEPA loss (solid: mse; dashed: var hinge; dotted: cov)",
     [("train", "jepa_share_mse", "", "-"), ("train", "jepa_share_var", "", "--"),
      ("train", "jepa_share_cov", "", ":")], False),
]


def block_share_panels(data: Mapping[str, Sequence[RunData]]) -> list[Panel]:
    """One panel per parameter group whose JEPA gradient share the runs logged (embed, block0, ...)."""
    keys = {k for runs in data.values() for run in runs for row in run.rows for k in row
            if k.startswith("jepa_grad_share_")}
    return [(f"JEPA share of the gradient norm: {k.removeprefix('jepa_grad_share_')}", [("train", k, "", "-")], False)
            for k in sorted(keys, key=share_group_order)]


def _colors(n: int) -> list[Any]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10")
    return [cmap(i % 10) for i in range(n)]


def _draw(ax, groups: Mapping[str, Sequence[RunData]], kind: str, key: str, x: str, style: str,
          colors: Mapping[str, Any], labelled: set[str]) -> bool:
    drew = False
    for name, runs in groups.items():
        c = group_curve(runs, kind, key, x)
        if c is None:
            continue
        label = None
        if name not in labelled:
            label = name if c.n == 1 else f"{name} (mean of {c.n}, band min-max)"
            labelled.add(name)
        ax.plot(c.x, c.mean, style, color=colors[name], label=label, lw=1.6, marker="." if c.x.size < 30 else None)
        if c.n > 1:
            ax.fill_between(c.x, c.lo, c.hi, color=colors[name], alpha=0.2, lw=0)
        drew = True
    return drew


def _panel_figure(groups: Mapping[str, Sequence[RunData]], panels: Sequence[Panel], title: str, path: Path,
                  x: str = "step") -> Path | None:
    plt = _pyplot()
    colors = dict(zip(groups, _colors(len(groups)), strict=True))
    ncols = 3
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.6 * nrows), squeeze=False)
    labelled: set[str] = set()
    any_drawn = False
    for ax, (ptitle, lines, log_y) in zip(axes.flat, panels, strict=False):
        drew = False
        for kind, key, _suffix, style in lines:
            drew |= _draw(ax, groups, kind, key, x, style, colors, labelled)
        ax.set_title(textwrap.fill(ptitle, 70), fontsize=9)  # long titles would run into the next panel
        ax.set_xlabel("step" if x == "step" else "training seconds", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        if log_y and drew:
            ax.set_yscale("symlog", linthresh=1e-4)
        if not drew:
            ax.text(0.5, 0.5, "not logged\n(JEPA off?)", ha="center", va="center", transform=ax.transAxes,
                    color="gray")
        any_drawn |= drew
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if not any_drawn:
        plt.close(fig)
        return None
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="upper center", ncol=min(4, len(labels)), fontsize=9,
               bbox_to_anchor=(0.5, 1.0))
    fig.suptitle(title, y=1.04, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": PNG_SOFTWARE})
    plt.close(fig)
    return path


def _val_figure(groups: Mapping[str, Sequence[RunData]], path: Path) -> Path:
    """val_bpb and train CE against step and against training seconds; final round-trip as markers."""
    plt = _pyplot()
    colors = dict(zip(groups, _colors(len(groups)), strict=True))
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.4))
    labelled: set[str] = set()
    for col, x in enumerate(("step", "train_time_s")):
        ax = axes[0, col]
        _draw(ax, groups, "val", "val_bpb", x, "-", colors, labelled)
        for name, runs in groups.items():  # final round trip, non-overlapping like the lines
            fx = [r.summary.get("steps" if x == "step" else "train_seconds") for r in runs]
            fy = [r.summary.get("roundtrip_val_bpb") for r in runs]
            pts = [(a, b) for a, b in zip(fx, fy, strict=True) if _finite_number(a) and _finite_number(b)]
            if pts:
                ax.scatter(*zip(*pts, strict=True), marker="D", s=28, color=colors[name], edgecolor="black",
                           lw=0.5, zorder=3)
        ax.set_title("val_bpb (lines: periodic validation; diamonds: final round-trip artifact, whole split;\n"
                     "y zoomed on the lowest 75% of points)", fontsize=9)
        ax.set_ylabel("val_bpb")
        ax = axes[1, col]
        _draw(ax, groups, "train", "ce_loss", x, "-", colors, labelled)
        ax.set_title("train CE loss (nats/token, one logged step)", fontsize=9)
        ax.set_ylabel("CE")
        for ax in axes[:, col]:
            ax.set_xlabel("step" if x == "step" else "training seconds (clock stopped during validation)",
                          fontsize=8)
            ax.grid(alpha=0.3)
    _zoom_tail(axes[0, 0])
    _zoom_tail(axes[0, 1])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    h2, l2 = axes[1, 0].get_legend_handles_labels()
    for h, lab in zip(h2, l2, strict=True):
        if lab not in labels:
            handles.append(h)
            labels.append(lab)
    if labels:  # none when no run has a finite value to plot
        fig.legend(handles, labels, loc="upper center", ncol=min(4, len(labels)), fontsize=9,
                   bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": PNG_SOFTWARE})
    plt.close(fig)
    return path


def _zoom_tail(ax) -> None:
    """Zoom y on the lowest 75% of the points: early validations sit far above the end of training,
    where the arms differ by hundredths of a bpb."""
    from matplotlib.collections import PathCollection

    parts = [np.asarray(line.get_ydata(), dtype=np.float64) for line in ax.get_lines()]
    parts += [np.asarray(c.get_offsets(), dtype=np.float64)[:, 1] for c in ax.collections
              if isinstance(c, PathCollection) and len(c.get_offsets())]  # the final-score markers
    ys = np.concatenate(parts) if parts else np.zeros(0)
    ys = ys[np.isfinite(ys)]
    if ys.size > 3:
        lo, hi = float(ys.min()), float(np.quantile(ys, 0.75))
        pad = 0.05 * max(hi - lo, 1e-6)
        ax.set_ylim(lo - pad, hi + 3 * pad)


def _final_figure(groups: Mapping[str, Sequence[RunData]], path: Path) -> Path | None:
    """Final score per run (the challenge's number: round trip, sliding window when set; the round trip
    for summaries written before the score was named), arms side by side, seeds joined by lines."""
    plt = _pyplot()
    names = list(groups)
    by_seed: dict[Any, dict[str, float]] = {}
    for name, runs in groups.items():
        for r in runs:
            score = r.summary.get("score_val_bpb", r.summary.get("roundtrip_val_bpb"))
            if _finite_number(score):
                seed = r.summary.get("seed")
                by_seed.setdefault(seed if isinstance(seed, int | str) else repr(seed), {})[name] = score
    if not by_seed:
        return None
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(names), 4.2))
    for seed, vals in by_seed.items():
        xs = [i for i, n in enumerate(names) if n in vals]
        ax.plot(xs, [vals[names[i]] for i in xs], "o-", color="gray", alpha=0.7, ms=5)
        if xs:
            ax.annotate(f"seed {seed}", (xs[-1], vals[names[xs[-1]]]), textcoords="offset points", xytext=(6, 0),
                        fontsize=7, va="center")
    for i, n in enumerate(names):
        v = [vals[n] for vals in by_seed.values() if n in vals]
        if v:
            ax.hlines(np.mean(v), i - 0.25, i + 0.25, color="black", lw=2)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.5, len(names) - 0.5)
    ax.set_ylabel("final score val_bpb (round trip)")
    ax.set_title("per seed (grey lines pair the seeds; bar = mean)", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": PNG_SOFTWARE})
    plt.close(fig)
    return path


def arm_and_seed(name: str) -> tuple[str, int] | None:
    """(arm, seed) of an ablation run folder's name, ``<arm>-seed<seed>``; None for any other name."""
    arm, sep, seed = name.rpartition("-seed")
    return (arm, int(seed)) if arm and sep and seed.isdigit() else None


def run_seed(run: RunData) -> int | None:
    """The seed of an ablation's run: from its folder name (<arm>-seed<seed>), else its summary."""
    named = arm_and_seed(run.path.name)
    if named is not None:
        return named[1]
    seed = run.summary.get("seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def by_seed(runs: Sequence[RunData], key: str = STEPWISE_KEY) -> dict[int, dict[int, float]]:
    """Each run's ``key`` (default the training CE) by step, keyed by the run's seed (runs of one arm)."""
    out: dict[int, dict[int, float]] = {}
    for r in runs:
        seed = run_seed(r)
        if seed is None:
            continue
        if seed in out:
            raise ReportError(f"{r.path}: seed {seed} appears twice in one arm; its runs cannot be paired")
        steps, ys = r.series("train", key)
        out[seed] = {int(t): float(y) for t, y in zip(steps, ys, strict=True)}
    return out


def stepwise_windows(groups: Mapping[str, Sequence[RunData]], control: str, window: int = DEFAULT_WINDOW_STEPS
                     ) -> tuple[list[Window], list[Spike], Spike | None]:
    """Every other arm's paired Δ of the training CE against ``control``, by window of steps, its runs that
    spiked (paired_spikes), and the control's own largest rise above an arm (control_peak)."""
    ctrl = by_seed(groups[control])
    arms = {name: by_seed(runs) for name, runs in groups.items() if name != control}
    return ([w for name, arm in arms.items() for w in paired_windows(ctrl, arm, name, window)],
            [s for name, arm in arms.items() for s in paired_spikes(ctrl, arm, name, window)],
            control_peak(ctrl, arms, window))


def _delta_figure(windows: Sequence[Window], control: str, path: Path) -> Path | None:
    """One panel per arm: each window's mean paired Δ with its 95% CI, against the window's last step."""
    arms = list(dict.fromkeys(w.arm for w in windows))
    if not arms:
        return None
    plt = _pyplot()
    colors = dict(zip(arms, _colors(len(arms)), strict=True))
    ncols = min(3, len(arms))
    nrows = math.ceil(len(arms) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.6 * nrows), squeeze=False, sharey=True)
    for ax, arm in zip(axes.flat, arms, strict=False):
        ws = [w for w in windows if w.arm == arm]
        x = np.asarray([(w.start + w.end) / 2 for w in ws])
        m = np.asarray([w.test.mean for w in ws])
        lo = np.asarray([w.test.ci_low for w in ws])
        hi = np.asarray([w.test.ci_high for w in ws])
        ax.axhline(0.0, color="black", lw=0.8)
        ok = np.isfinite(lo) & np.isfinite(hi)
        ax.errorbar(x[ok], m[ok], yerr=np.stack([m[ok] - lo[ok], hi[ok] - m[ok]]), fmt="o-", color=colors[arm],
                    capsize=3, ms=4, lw=1.4)
        ax.plot(x[~ok], m[~ok], "o", color=colors[arm], ms=4)
        n = max(w.test.n for w in ws)
        ax.set_title(textwrap.fill(f"{arm} − {control}: training CE, mean of {n} seeds' window means, 95% CI",
                                   70), fontsize=9)
        ax.set_xlabel("step (window centre)", fontsize=8)
        ax.set_ylabel("Δ nats/token (< 0: arm ahead)", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(arms):]:
        ax.axis("off")
    fig.suptitle("paired Δ of the training CE by window of steps (live weights, unseen batches)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": PNG_SOFTWARE})
    plt.close(fig)
    return path


# The PNG names a report writes, and the tag in their metadata by which a rerun knows them as its own; the
# Markdown table it writes, and its first line, for the same purpose.
PNG_NAMES = ("val_bpb.png", "jepa_terms.png", "diagnostics.png", "final_val_bpb.png", "delta_by_step.png")
PNG_SOFTWARE = "jepagolf report"
MD_NAME = "delta_by_step.md"
MD_MARKER = "<!-- written by jepagolf report; a rerun replaces it -->"


def is_report_png(path: Path) -> bool:
    """Whether ``path`` is a PNG that a report wrote (its Software text chunk, before the image data)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    return head.startswith(b"\x89PNG\r\n\x1a\n") and b"tEXtSoftware\x00" + PNG_SOFTWARE.encode() in head


def is_report_md(path: Path) -> bool:
    """Whether ``path`` is the Markdown table a report wrote (its first line is MD_MARKER)."""
    try:
        with open(path, "rb") as f:
            return f.readline(len(MD_MARKER) + 2).rstrip(b"\n") == MD_MARKER.encode()
    except OSError:
        return False


def refuse_foreign_pngs(out: Path) -> None:
    """A report replaces only its own earlier files: never a file of the same name it did not write."""
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out} is a file; give a folder for the PNGs")
    foreign = [n for n in PNG_NAMES if (out / n).exists() and not is_report_png(out / n)]
    foreign += [MD_NAME] if (out / MD_NAME).exists() and not is_report_md(out / MD_NAME) else []
    if foreign:
        raise ReportError(f"{out} already holds {', '.join(foreign)}, not written by jepagolf report; choose "
                          "another --out")


def plot_groups(groups: Mapping[str, Sequence[Path]], out: Path, paired: bool = False,
                control: str | None = None, window: int = DEFAULT_WINDOW_STEPS) -> list[Path]:
    """Every figure for named groups of run folders; returns the paths written. ``paired`` (an ablation's arms):
    also the final scores paired by seed, and each arm's paired Δ of the training CE against ``control`` (the
    arm named ``ce`` when there is one, else the first) by window of ``window`` steps, drawn and tabled."""
    _pyplot()  # fail early and clearly when matplotlib is missing
    data = {name: [load_run(Path(p)) for p in paths] for name, paths in groups.items() if paths}
    if not data:
        raise ReportError("no run folders to plot")
    if paired:
        control = control or ("ce" if "ce" in data else next(iter(data)))
        if control not in data:
            raise ReportError(f"--control {control}: no such arm among {', '.join(data)}")
        windows, spikes, peak = stepwise_windows(data, control, window)
    refuse_foreign_pngs(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [_val_figure(data, out / "val_bpb.png")]
    for name, panels, title in (
        ("jepa_terms", JEPA_PANELS, "JEPA loss terms vs step"),
        ("diagnostics", DIAG_PANELS, "collapse diagnostics at masked positions (diagnostic steps) vs step"),
        ("grad_share_blocks", block_share_panels(data), "JEPA share of each block's gradient norm (diagnostic steps)"),
    ):
        if not panels:
            continue
        p = _panel_figure(data, panels, title, out / f"{name}.png")
        if p is not None:
            written.append(p)
    if paired:
        p = _final_figure(data, out / "final_val_bpb.png")
        if p is not None:
            written.append(p)
        p = _delta_figure(windows, control, out / "delta_by_step.png")
        if p is not None:
            written.append(p)
            atomic_write_text(out / MD_NAME, windows_markdown(windows, control, MD_MARKER, spikes, peak=peak))
            written.append(out / MD_NAME)
    return written


def plot_runs(run_dirs: Sequence[Path], out: Path) -> list[Path]:
    """``jepagolf report``: each run its own line (labelled by its folder name)."""
    names: dict[str, list[Path]] = {}
    for p in run_dirs:
        label = p.name or str(p)
        while label in names:
            label = label + "'"
        names[label] = [p]
    return plot_groups(names, out)


def arm_groups(run_dirs: Sequence[Path]) -> dict[str, list[Path]]:
    """Run folders named ``<arm>-seed<seed>`` (an ablation's or a ladder rung's ``runs/``) grouped by arm, in
    the order the arms first appear. ReportError names a folder that is not so named."""
    groups: dict[str, list[Path]] = {}
    for p in run_dirs:
        named = arm_and_seed(p.name)
        if named is None:
            raise ReportError(f"{p}: not an ablation run folder (<arm>-seed<seed>); drop --by-arm to plot it alone")
        groups.setdefault(named[0], []).append(p)
    return groups


def plot_ablation(groups: Mapping[str, Sequence[Path]], out: Path, control: str | None = None,
                  window: int | None = None) -> list[Path]:
    """An ablation's arms: mean line and min-max band over seeds, the paired final scores, and the paired Δ of
    the training CE by window of steps (default DEFAULT_WINDOW_STEPS) against the control."""
    return plot_groups(groups, out, paired=True, control=control, window=window or DEFAULT_WINDOW_STEPS)
