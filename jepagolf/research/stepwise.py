"""From which step on does an arm pay? The paired difference of the training CE by window of steps.

Within one seed every arm of an ablation reads the same training tokens in the same order, and at step s each
arm logs the CE of the batch it is about to train on: tokens no run has seen, so the logged CE is the
live model's held-out loss on that batch. Arm minus control at the same step and seed therefore removes the
batch's difficulty, and the mean of those differences over a window of steps, one number per seed, is a paired
sample like the final scores'. The window's paired t-test says whether the arm is ahead there.

The same pairing finds runs that spiked: an arm whose CE on one logged batch rises far above its control's on the
same batch (in the first 14 seeds of the miniature challenge's stage 2, three JEPA runs rose 0.6-6.7 nats above
their controls and ended 0.1-0.24 nats behind, while no control rose more than 0.16 above its seed's arms' median).

What it is not: the final score's model. The score is the exported artifact EMA after the round trip; this is the
live weights, before the artifact EMA and the quantisation, on a few thousand tokens a step.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from jepagolf.research.stats import PairedTest, paired_t_test

DEFAULT_WINDOW_STEPS = 500
# A jump of the paired CE this large at one logged step is a spike, not batch noise: in stage 2 of the miniature
# challenge (docs/results/miniature/, its first 14 seeds) the largest paired jump of a run that did not fail was
# 0.27 nats.
SPIKE_NATS = 0.5
STEPWISE_KEY = "ce_loss"  # the CE term alone: JEPA arms log their total loss elsewhere (train_loss repeats it)


@dataclass(frozen=True)
class Window:
    """Steps start < s <= end: arm minus control, one mean per seed, tested."""

    arm: str
    start: int
    end: int
    points: int  # logged steps per seed in the window (the fewest over the seeds)
    test: PairedTest


def paired_windows(control: Mapping[int, Mapping[int, float]], arm: Mapping[int, Mapping[int, float]], name: str,
                   window: int = DEFAULT_WINDOW_STEPS) -> list[Window]:
    """The arm's windows against the control: the seeds both have, the steps both logged in each seed; a window
    enters only when every one of those seeds logged a step in it in both arms."""
    if window < 1:
        raise ValueError(f"window must be >= 1 step (got {window})")
    seeds = sorted(set(control) & set(arm))
    if not seeds:
        return []
    diffs = {s: {t: arm[s][t] - control[s][t] for t in set(control[s]) & set(arm[s])
                 if math.isfinite(arm[s][t]) and math.isfinite(control[s][t])} for s in seeds}
    last = max((max(d) for d in diffs.values() if d), default=0)
    out = []
    for k in range(math.ceil(last / window)):
        lo, hi = k * window, (k + 1) * window
        per_seed = [[v for t, v in d.items() if lo < t <= hi] for d in diffs.values()]
        if any(not v for v in per_seed):
            continue
        means = np.asarray([float(np.mean(v)) for v in per_seed])
        out.append(Window(name, lo, hi, min(len(v) for v in per_seed), paired_t_test(np.zeros_like(means), means)))
    return out


@dataclass(frozen=True)
class Spike:
    """A run whose CE at one logged step rose more than SPIKE_NATS above its control's on the same batch."""

    arm: str
    seed: int
    step: int
    jump: float  # arm minus control at that step, nats/token
    last: float  # arm minus control averaged over the run's last window: did it recover?


def paired_spikes(control: Mapping[int, Mapping[int, float]], arm: Mapping[int, Mapping[int, float]], name: str,
                  window: int = DEFAULT_WINDOW_STEPS, threshold: float = SPIKE_NATS) -> list[Spike]:
    """Each seed's largest arm-minus-control jump at one logged step (after step 1, where every run starts
    alike), reported when it exceeds ``threshold``, with the mean difference over the last ``window`` steps."""
    out = []
    for seed in sorted(set(control) & set(arm)):
        d = {t: arm[seed][t] - control[seed][t] for t in set(control[seed]) & set(arm[seed])
             if t > 1 and math.isfinite(arm[seed][t]) and math.isfinite(control[seed][t])}
        if not d:
            continue
        step = max(d, key=lambda t: (d[t], -t))
        if d[step] > threshold:
            end = max(d)
            last = [v for t, v in d.items() if t > end - window]
            out.append(Spike(name, seed, step, d[step], float(np.mean(last))))
    return out


def control_peak(control: Mapping[int, Mapping[int, float]], arms: Mapping[str, Mapping[int, Mapping[int, float]]],
                 window: int = DEFAULT_WINDOW_STEPS) -> Spike | None:
    """How far the control itself strayed: its largest rise above any arm's CE at one logged step (after step 1)
    over every seed, as a Spike whose ``arm`` is the arm it rose above and whose ``jump`` is control minus that
    arm (``last``: the same difference over the run's last window). None when no step pairs. Beside the arms'
    spikes it says whether a spike is the arm's failure or a batch on which every run did badly."""
    peaks = [s for name, arm in arms.items() for s in paired_spikes(arm, control, name, window, -math.inf)]
    return max(peaks, key=lambda s: (s.jump, -s.seed, -s.step), default=None)


def _fmt(x: float, digits: int = 4) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:+.{digits}f}"


def windows_markdown(windows: Sequence[Window], control: str, marker: str, spikes: Sequence[Spike] = (),
                     threshold: float = SPIKE_NATS, peak: Spike | None = None) -> str:
    """The windows as a Markdown table, led by ``marker`` (the line by which a rerun knows the file as its own),
    then the runs that spiked and, given ``peak`` (control_peak), how far the control itself strayed."""
    lines = [marker, "", f"# Paired Δ of the training CE by window of steps: arm − {control}", "",
             "Arm minus control of the CE each run logged on the batch it was about to train on (unseen tokens: "
             "the live model's held-out loss), averaged over the logged steps of each window, one mean per seed; "
             "paired t over the seeds. Nats/token, negative = the arm is ahead. Live weights, not the scored "
             "artifact (artifact EMA, round trip). Many windows are tested: at p < 0.05 one window in twenty "
             "comes out by chance alone, so read a run of windows, not one.", "",
             "| arm | steps | seeds | logged steps per seed | mean Δ | 95% CI | paired t p |",
             "|---|---|---|---|---|---|---|"]
    for w in windows:
        t = w.test
        ci = "n/a" if not math.isfinite(t.ci_low) else f"[{_fmt(t.ci_low)}, {_fmt(t.ci_high)}]"
        p = "n/a" if not math.isfinite(t.p_two_sided) else f"{t.p_two_sided:.3g}"
        lines.append(f"| {w.arm} | {w.start + 1}-{w.end} | {t.n} | {w.points} | {_fmt(t.mean)} | {ci} | {p} |")
    lines += ["", f"## Runs that spiked: arm − {control} above {threshold:g} nats/token on one logged batch", ""]
    if not spikes:
        lines.append(f"None: no arm's CE rose more than {threshold:g} nats above its control's on any logged batch.")
    else:
        lines += ["| arm | seed | step | arm − control there | mean over the last window |", "|---|---|---|---|---|"]
        lines += [f"| {s.arm} | {s.seed} | {s.step} | {_fmt(s.jump, 3)} | {_fmt(s.last)} |" for s in spikes]
    if peak is not None:
        verdict = (f"above {threshold:g}: the control spiked there" if peak.jump > threshold
                   else f"under {threshold:g}: no control spiked")
        lines += ["", f"The control's own largest rise above an arm's CE on one logged batch, over every seed: "
                      f"{_fmt(peak.jump, 3)} nats/token ({control} seed {peak.seed}, step {peak.step}, above "
                      f"{peak.arm}); {verdict}."]
    return "\n".join(lines) + "\n"
