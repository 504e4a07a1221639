"""Compute ladder: arms x rungs x seeds on CPU, a fit of the effect against compute, and its extrapolation
to the challenge's compute.

``jepagolf ladder [--data DIR] [--out DIR]`` runs every arm (the first is the control) with every seed
of every rung, where a rung is a model shape and a wall-clock budget. Each rung is a seed-paired ablation
(``jepagolf/research/ablate.py``) in ``OUT/rungs/<rung>/``, matched by wall-clock (every arm the rung's seconds,
steps calibrated on this machine with the arms timed in interleaved rounds (``ablate.measure_step_seconds``),
step-based warmdown over the last ``WARMDOWN_FRACTION`` of them) or,
with ``--match flops``, by training FLOPs (the control gets the calibrated steps, the other arms the
same FLOPs). Rerunning the same command resumes: finished runs are kept, calibrations reused.

The analysis: per rung and arm, Δ = val_loss(arm) - val_loss(control) in nats per validation token
(round-trip artifact, paired by seed), its mean, 95% CI and the minimal detectable effect of the paired
t-test (80% power, alpha 0.05 two-sided, from the measured paired sd); then a weighted least-squares line
Δ = a + b log10(training FLOPs) (weights 1/SE², x = the control's training FLOPs in the budget) and its
value at the challenge's compute with a 95% prediction interval. ``OUT/ladder.md`` says what that means,
``OUT/ladder.png`` shows it, ``OUT/runs.csv`` has one row per run (``--add-points`` merges other ladders'
runs.csv files, e.g. the GPU rungs of scripts/gpu_ladder.sh), ``OUT/ladder.json`` every number.

Default ladder sizing (README, "Compute ladder"), from the step times calibrated on the idle 2-core machine
(docs/results/ladder/plan.md): the control trains 1.9e11, 3.8e11, 2.2e12, 5.5e12 and 1.0e13 FLOPs on r0..r4
(55x). Wall time with the three default arms = sum over rungs of 3 x seeds x (seconds + overhead), the overhead
being model build, three exact evaluations of the 262,144 scored validation tokens, GPTQ and LZMA (measured
per run: 17, 23, 54, 127 and 192 s in all): 3 x (12 x 17 + 8 x 23 + 14 x 54 + 3 x 127 + 3 x 192) s = 6,303 s
~ 1.75 h, plus ~6 min of calibration. r2 carries the MDE: the first ladder measured paired sds of ~0.02 nats
at r0-r1 (v3) but 0.003-0.006 at r2 (from 3 seeds each), and 14 seeds put r2's MDE below 0.005 nats for a
paired sd up to 0.006. ``--plan-only`` measures the step times on the machine and prints this estimate.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jepagolf.config import Config, build_config
from jepagolf.jsonfile import read_json_object
from jepagolf.research import stats
from jepagolf.research.ablate import (
    AblationError,
    AblationPlan,
    Arm,
    _md_table,
    finalize,
    ignored_environment,
    parse_arm,
    parse_seeds,
    plan_ablation,
    plan_calibrated,
    run_ablation,
    write_runs_csv,
)
from jepagolf.research.flops import flops_per_token, train_flops_per_token
from jepagolf.train.logger import atomic_write_text

# ----- the challenge's compute (docs/results/gpu-h200/gpu_check.jsonl: the v3 trainer on a lent H200) -----

CHALLENGE_GPUS = 8
CHALLENGE_SECONDS = 600.0
PEAK_FLOPS = 989.4e12  # bf16 dense datasheet peak assumed by gpu_check (H100 SXM and H200 alike)
CHALLENGE_MFU = 0.2292  # v3 trainer, plain CE, compiled, 524,288-token steps (JEPA on: 0.2313)
CHALLENGE_PRESET = "v3"
BAR_NATS = 0.005  # the challenge's record bar

WARMDOWN_FRACTION = 0.25  # v3: 1200 of ~4,700-10,700 steps
CONTROL_FLOPS_NOTE = "x = the control's training FLOPs in the rung's budget (jepagolf/research/flops.py conventions)"


class LadderError(AblationError):
    """The ladder request is inconsistent (bad rung, data too small for a rung, bad --add-points file)."""


def challenge_flops() -> float:
    """Training FLOPs of the control in the challenge: 8 GPUs x 600 s x MFU x peak."""
    return CHALLENGE_GPUS * CHALLENGE_SECONDS * CHALLENGE_MFU * PEAK_FLOPS


@dataclass(frozen=True)
class Rung:
    """A model shape (config overrides) and a budget: wall-clock seconds per run, and seeds."""

    name: str
    overrides: dict[str, str] = field(default_factory=dict)
    seconds: float = 60.0  # wall-clock budget of every arm's run ...
    seeds: int = 3
    flops: float | None = None  # ... or, when set, the control's training FLOPs; the budget is then the time
    # the control takes for them on this machine (calibrated), and every arm gets that time

    def spec(self) -> str:
        budget = f"flops={self.flops:g}" if self.flops is not None else f"seconds={self.seconds:g}"
        kv = [f"{k}={v}" for k, v in self.overrides.items()] + [budget, f"seeds={self.seeds}"]
        return f"{self.name}:" + ",".join(kv)


RUNG_KEYS = ("seconds", "flops", "seeds")


def parse_rung(spec: str) -> Rung:
    """``NAME:KEY=VAL,...,seconds=S,seeds=N`` (or ``flops=F`` instead of seconds): config overrides (the
    shape) plus the budget."""
    arm = parse_arm(spec, "--rung", RUNG_KEYS)
    over = dict(arm.overrides)
    if ("seconds" in over) == ("flops" in over) or "seeds" not in over:
        raise LadderError(f"--rung {spec!r}: give seeds= and one of seconds= or flops= (a rung is a shape and a "
                          "budget)")
    try:
        seeds = int(over.pop("seeds"))
        seconds = float(over.pop("seconds", "1"))
        flops = float(over.pop("flops")) if "flops" in over else None
    except ValueError:
        raise LadderError(f"--rung {spec!r}: seconds and flops must be numbers and seeds an integer") from None
    if not (seconds > 0 and (flops is None or flops > 0)) or seeds < 2:
        raise LadderError(f"--rung {spec!r}: seconds and flops must be > 0 and seeds >= 2 (a paired sd needs two)")
    return Rung(arm.name, over, seconds, seeds, flops)


def _shape(layers: int, dim: int, heads: int, kv: int, seq: int, batch: int) -> dict[str, str]:
    return {"num_layers": str(layers), "model_dim": str(dim), "num_heads": str(heads), "num_kv_heads": str(kv),
            "train_seq_len": str(seq), "train_batch_tokens": str(batch), "micro_batch_tokens": str(batch)}


# The default ladder, on the cpu-demo preset (r4 is cpu-demo's shape with twice its batch; r0 is r1 at half
# its budget). r2 carries the MDE (the paired sd falls from ~0.02 nats at r0-r1 to ~0.005 at r2-r3, so seeds
# buy most there); r0-r1 and r3-r4 carry the reach in compute. See the module docstring.
DEFAULT_RUNGS = (
    Rung("r0", _shape(2, 64, 2, 1, 128, 2048), 6.0, 12),
    Rung("r1", _shape(2, 64, 2, 1, 128, 2048), 12.0, 8),
    Rung("r2", _shape(3, 96, 2, 1, 128, 4096), 40.0, 14),
    Rung("r3", _shape(4, 128, 4, 2, 256, 4096), 100.0, 3),
    Rung("r4", _shape(4, 192, 4, 2, 256, 8192), 150.0, 3),
)
# Two tiny rungs on the smoke preset: the whole ladder in seconds (tests, a first look). FLOP budgets (the
# control trains 16 and 20 steps; the other arms the time those take), so a busy machine changes no step count
# of the control.
SMOKE_RUNGS = (
    Rung("s1", {"num_layers": "2", "model_dim": "32"}, 1.0, 2, flops=5e9),
    Rung("s2", {"num_layers": "3", "model_dim": "64"}, 1.0, 2, flops=2e10),
)
DEFAULT_ARMS = ("ce:jepa=false", "v3:", "fast:jepa_target=online,jepa_batch_fraction=0.25,jepa_batched=true")
DEFAULT_SEEDS = ",".join(["1337", "42", "2025", *(str(s) for s in range(1, 14))])  # 16 distinct
# Every rung: no periodic validation or diagnostics (they would cost time inside the budget), a step
# limit the clock always reaches first.
LADDER_COMMON = {"iterations": "1000000", "val_loss_every": "0", "diag_every": "-1", "train_log_every": "100"}


def default_data_dir() -> Path:
    from jepagolf.data.corpus import default_cache_dir
    from jepagolf.data.research import RESEARCH_DIR

    return default_cache_dir() / RESEARCH_DIR


# ----- planning -----------------------------------------------------------------------------------


@dataclass
class RungPlan:
    rung: Rung
    plan: AblationPlan
    out: Path

    @property
    def control(self) -> str:
        return self.plan.control.name

    def config(self, arm: str) -> Config:
        return self.plan.config(next(a for a in self.plan.arms if a.name == arm), self.plan.seeds[0])

    def steps(self, arm: str) -> int:
        return self.config(arm).train.iterations

    def tokens(self, arm: str) -> int:
        c = self.config(arm)
        return c.train.iterations * c.train.train_batch_tokens

    def control_flops(self) -> float:
        return self.plan.flops_per_step[self.control] * self.steps(self.control)

    @property
    def seconds(self) -> float:
        """Every arm's wall-clock budget (the rung's, or the one its FLOPs take the control here)."""
        return float((self.plan.calibration or {}).get("budget_seconds", self.rung.seconds))


def rung_common(rung: Rung, common: Mapping[str, str]) -> dict[str, str]:
    return {**LADDER_COMMON, **rung.overrides, **common, "max_wallclock_seconds": f"{rung.seconds:g}"}


def plan_rung(
    preset: str, arms: Sequence[Arm], rung: Rung, seeds: Sequence[int], common: Mapping[str, str], match: str,
    out: Path, rt: Any, log: Callable[[str], None], calib_steps: int, wallclock_slack: float = 1.0,
) -> RungPlan:
    """The rung's ablation plan: wall-clock matched, or FLOP matched from the control's calibrated steps."""
    if len(seeds) < rung.seeds:
        raise LadderError(f"rung {rung.name} needs {rung.seeds} seeds but --seeds gives {len(seeds)}")
    rung_out = out / "rungs" / rung.name
    over = rung_common(rung, common)
    plan = plan_calibrated(preset, arms, seeds[: rung.seeds], "wallclock", over, rung_out, rt, log,
                           calib_steps=calib_steps, warmdown_fraction=WARMDOWN_FRACTION,
                           wallclock_slack=wallclock_slack)
    if rung.flops is not None:
        # The budget is the time the control needs for the rung's FLOPs at its calibrated step time;
        # the step times measured above (at a nominal budget) are reused for every arm.
        measured = [float(plan.calibration["arms"][a.name]["step_seconds"]) for a in arms]  # type: ignore[index]
        ctrl_steps = max(1, round(rung.flops / plan.flops_per_step[arms[0].name]))
        over["max_wallclock_seconds"] = f"{(ctrl_steps + 0.5) * measured[0]:.6g}"
        plan = plan_ablation(preset, arms, seeds[: rung.seeds], "wallclock", over,
                             step_timer=lambda _c, _s: measured, calib_steps=calib_steps,
                             warmdown_fraction=WARMDOWN_FRACTION, wallclock_slack=wallclock_slack)
    if match == "flops":
        ctrl = plan.config(plan.control, plan.seeds[0])
        iters = ctrl.train.iterations
        flops_over = {**over, "iterations": str(iters), "warmdown_iters": str(round(WARMDOWN_FRACTION * iters)),
                      "max_wallclock_seconds": "0"}
        calibration = plan.calibration
        plan = plan_ablation(preset, arms, seeds[: rung.seeds], "flops", flops_over)
        plan.calibration = calibration  # the step times stay known (estimates, the budget shown)
    return RungPlan(rung, plan, rung_out)


def count_params(cfg: Config) -> int:
    """Parameters of the exported GPT of a config (built on the meta device: no memory, no time)."""
    import torch

    from jepagolf.model.gpt import GPT
    from jepagolf.model.gpt import count_params as count

    with torch.device("meta"):
        return count(GPT(cfg.model, cfg.train.train_seq_len))


def train_tokens_available(data_dir: Path) -> int:
    from jepagolf.data.shards import list_shards, read_header

    return sum(read_header(p) for p in list_shards(data_dir, "train"))


def val_tokens_available(data_dir: Path) -> int:
    from jepagolf.data.shards import list_shards, read_header

    return sum(read_header(p) for p in list_shards(data_dir, "val"))


DEFAULT_VAL_TOKENS = 262_144


def data_view(data_dir: Path, tokenizer: Path, out: Path, val_tokens: int) -> Path:
    """``OUT/data``: the corpus's train shards and tokenizer linked, its validation split cut to the first
    ``val_tokens`` tokens. Every run of the ladder is scored on that cut (three exact evaluations a run of a
    large split would cost more than the small rungs' training); reused when it exists for the same source."""
    import numpy as np

    from jepagolf.data.shards import list_shards, load_tokens, write_shard

    view = out / "data"
    meta = {"source": str(data_dir.resolve()), "tokenizer": str(tokenizer.resolve()), "val_tokens": val_tokens}
    stamp = view / "view.json"
    if view.exists():
        if stamp.is_file() and read_json_object(stamp) == meta:
            return view
        raise LadderError(f"{view} exists but is not this ladder's view of {data_dir} with {val_tokens} validation "
                          "tokens; use another --out")
    view.mkdir(parents=True)
    for p in list_shards(data_dir, "train"):
        (view / p.name).symlink_to(p.resolve())
    (view / "tokenizer.model").symlink_to(tokenizer.resolve())
    val_paths = list_shards(data_dir, "val")
    prefix = val_paths[0].name.rsplit("_val_", 1)[0]
    write_shard(view / f"{prefix}_val_000000.bin", np.asarray(load_tokens(val_paths, None)[:val_tokens]))
    atomic_write_text(stamp, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return view


def check_epochs(plans: Sequence[RungPlan], train_tokens: int, max_epochs: float) -> list[str]:
    """Refuse a rung whose arm would read more than ``max_epochs`` of the corpus; returns notes."""
    notes = []
    for rp in plans:
        worst = max(rp.plan.arms, key=lambda a: rp.tokens(a.name))
        tokens = rp.tokens(worst.name)
        epochs = tokens / train_tokens
        if epochs > max_epochs:
            raise LadderError(
                f"rung {rp.rung.name}: arm {worst.name} would read {tokens:,} tokens, {epochs:.2f} epochs of the "
                f"corpus's {train_tokens:,} train tokens (limit {max_epochs:g}); shorten the rung's seconds, use a "
                "bigger corpus, or pass --max-epochs"
            )
        notes.append(f"{rp.rung.name}: {tokens:,} tokens at most ({epochs:.3f} epochs)")
    return notes


def estimate_run_seconds(rp: RungPlan, val_tokens: int) -> float:
    """Expected wall seconds of one run: the budget plus three exact evaluations of the validation split
    (forward only, about a third of a training step's FLOPs per token, at the control's measured rate)
    plus a few seconds of build and export."""
    calib = (rp.plan.calibration or {}).get("arms", {}).get(rp.control)
    if not calib:
        return rp.seconds
    rate = rp.plan.flops_per_step[rp.control] / float(calib["step_seconds"])  # FLOP/s measured
    ctrl = rp.config(rp.control)
    eval_s = 3 * val_tokens * flops_per_token(ctrl).ce_step / 3 / rate
    return rp.seconds + eval_s + 3.0


def plan_table(plans: Sequence[RungPlan], train_tokens: int, val_tokens: int) -> tuple[str, float]:
    """The plan as a markdown table, and the estimated wall seconds of the whole ladder."""
    body, total = [], 0.0
    for rp in plans:
        c = rp.config(rp.control)
        m = c.model
        n = count_params(c)
        run_s = estimate_run_seconds(rp, val_tokens)
        runs = len(rp.plan.arms) * len(rp.plan.seeds)
        total += runs * run_s
        steps = ", ".join(f"{a.name} {rp.steps(a.name)}" for a in rp.plan.arms)
        body.append([
            rp.rung.name, f"{m.num_layers}x{m.model_dim}, seq {c.train.train_seq_len}, "
            f"batch {c.train.train_batch_tokens}", f"{n:,}", f"{rp.seconds:.4g}", str(len(rp.plan.seeds)), steps,
            f"{rp.tokens(rp.control):,}", f"{rp.tokens(rp.control) / train_tokens:.3f}",
            f"{rp.tokens(rp.control) / n:.1f}", f"{rp.control_flops():.3g}", f"{runs} x {run_s:.0f} s",
        ])
    header = ["rung", "shape", "params", "seconds", "seeds", "steps", "control tokens", "epochs", "tokens/param",
              "control FLOPs", "runs x est. wall"]
    return _md_table(header, body), total


# ----- rows ---------------------------------------------------------------------------------------

CSV_COLUMNS = ("rung", "arm", "seed", "val_bpb", "prequant_val_bpb", "val_loss", "steps", "tokens", "seconds",
               "params", "train_flops", "artifact_bytes", "config_hash", "run_dir")
_NUMERIC = {"seed": int, "val_bpb": float, "prequant_val_bpb": float, "val_loss": float, "steps": int,
            "tokens": int, "seconds": float, "params": int, "train_flops": float}
MAX_POINTS_BYTES = 16 << 20


def ladder_rows(rp: RungPlan, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "rung": rp.rung.name, "train_flops": rp.plan.flops_per_step[r["arm"]] * r["steps"]} for r in rows]


def load_points(path: Path) -> list[dict[str, Any]]:
    """Rows of another ladder's runs.csv (e.g. GPU rungs), checked column by column."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise LadderError(f"--add-points {path}: no such file") from None
    if size > MAX_POINTS_BYTES:
        raise LadderError(f"--add-points {path}: {size:,} bytes, more than a runs.csv can be ({MAX_POINTS_BYTES:,})")
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("rung", "arm", *_NUMERIC) if c not in (reader.fieldnames or [])]
        if missing:
            raise LadderError(f"--add-points {path}: not a ladder runs.csv (missing columns {', '.join(missing)})")
        for i, raw in enumerate(reader, start=2):
            try:
                row: dict[str, Any] = {**raw, **{k: t(raw[k]) for k, t in _NUMERIC.items()}}
            except (TypeError, ValueError):
                raise LadderError(f"--add-points {path}: line {i} has a non-numeric value") from None
            if not all(math.isfinite(float(row[k])) for k in _NUMERIC):
                raise LadderError(f"--add-points {path}: line {i} has a non-finite value")
            rows.append(row)
    if not rows:
        raise LadderError(f"--add-points {path}: no runs in it")
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

    @property
    def n(self) -> int:
        return len(self.deltas)

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.params


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
            mde = stats.paired_mde(test.sd, test.n) if test.n >= 2 and test.sd > 0 else math.nan
            c_mean, c_sd = stats.mean_std(c)
            out.append(RungResult(rung, arm, seeds, [y - x for x, y in zip(c, a, strict=True)], flops, params,
                                  tokens, test, mde, c_mean, c_sd / math.sqrt(len(c)) if len(c) > 1 else math.nan))
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


def challenge_tokens_per_param(arm_overrides: Mapping[str, str] | None = None) -> tuple[float, int, float]:
    """(training tokens, params, tokens/param) of the v3 shape in the challenge's compute for an arm,
    tokens = challenge FLOPs / that arm's training FLOPs per token."""
    cfg = build_config(CHALLENGE_PRESET, dict(arm_overrides or {}), environ={})
    tokens = challenge_flops() / train_flops_per_token(cfg)
    params = count_params(cfg)
    return tokens, params, tokens / params


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


def ladder_markdown(
    results: Sequence[RungResult], extrapolations: Sequence[Extrapolation], control: str, plan_notes: Sequence[str],
    challenge: Mapping[str, tuple[float, int, float]], plots: Sequence[str], warnings: Sequence[str],
    models: Sequence[ComputeModel] = (),
) -> str:
    x0 = challenge_flops()
    lines = [
        "# Compute ladder",
        "",
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
        ci = f"[{t.ci_low:+.4f}, {t.ci_high:+.4f}]" if t.n >= 2 else "n/a"
        mde = "n/a" if math.isnan(r.mde) else f"{r.mde:.4f}" + (" ✓" if r.mde < BAR_NATS else "")
        sd = "n/a" if math.isnan(t.sd) else f"{t.sd:.4f}"
        body.append([r.rung, r.arm, str(r.n), f"{r.flops:.3g}", f"{r.params:,}", f"{r.tokens:,.0f}",
                     f"{r.tokens_per_param:.1f}", f"{t.mean:+.4f}", ci, sd, mde])
    lines += [_md_table(["rung", "arm", "pairs", "control FLOPs", "params", "control tokens", "tokens/param",
                         "Δ nats/token", "95% CI", "paired sd", f"MDE (✓ < {BAR_NATS})"], body), ""]
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
    warnings += unequal_time_warnings(rows, control)
    smallest = min(results, key=lambda r: r.flops).rung if results else None
    for r in results:
        if r.rung == smallest and not r.mde < BAR_NATS:
            warnings.append(f"rung {r.rung}, arm {r.arm}: MDE {r.mde:.4f} nats is not below {BAR_NATS} with "
                            f"{r.n} seeds (paired sd {r.test.sd:.4f}); more seeds would be needed")
    md = ladder_markdown(results, extrapolations, control, plan_notes, challenge, plots, warnings, models)
    atomic_write_text(out / "ladder.md", md)
    doc = {
        "control": control,
        "challenge": {"gpus": CHALLENGE_GPUS, "seconds": CHALLENGE_SECONDS, "mfu": CHALLENGE_MFU,
                      "peak_flops": PEAK_FLOPS, "train_flops": challenge_flops(),
                      "tokens_params_per_arm": {a: list(v) for a, v in challenge.items()}},
        "rungs": [{"rung": r.rung, "arm": r.arm, "seeds": r.seeds, "deltas_nats": r.deltas, "mean": r.test.mean,
                   "sd": _num(r.test.sd), "se": _num(r.test.se), "ci": [_num(r.test.ci_low), _num(r.test.ci_high)],
                   "mde": _num(r.mde), "train_flops": r.flops, "params": r.params, "tokens": r.tokens}
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
    lines = []
    for r in results:
        lines.append(f"rung {r.rung} arm {r.arm}: Δ {r.test.mean:+.4f} nats/token over {r.n} seeds, 95% CI "
                     f"[{r.test.ci_low:+.4f}, {r.test.ci_high:+.4f}], MDE {r.mde:.4f}, FLOPs {r.flops:.3g}")
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


# ----- the command --------------------------------------------------------------------------------


def main_ladder(
    arm_specs: Sequence[str] | None, rung_specs: Sequence[str] | None, seeds_text: str, common: Mapping[str, str],
    out: Path, *, data: str | None, smoke: bool = False, match: str = "wallclock", calib_steps: int = 20,
    max_epochs: float = 1.0, add_points: Sequence[Path] = (), plan_only: bool = False, train_fn: Any = None,
    rt: Any = None, val_tokens: int = DEFAULT_VAL_TOKENS, wallclock_slack: float = 1.0,
) -> str:
    """The whole ``jepagolf ladder`` command; returns what it prints at the end."""
    from jepagolf.data.dataset import resolve_dataset
    from jepagolf.train.runtime import setup_runtime

    if match not in ("wallclock", "flops"):
        raise LadderError(f"--match {match!r}: a ladder matches wallclock (the challenge's currency) or flops")
    if calib_steps < 1 or not max_epochs > 0 or val_tokens < 0 or wallclock_slack < 0:
        raise LadderError("--calib-steps must be >= 1, --max-epochs > 0, --val-tokens and --wallclock-slack >= 0")
    preset = "smoke" if smoke else "cpu-demo"
    arms = [parse_arm(s) for s in (arm_specs or DEFAULT_ARMS)]
    rungs = [parse_rung(s) for s in rung_specs] if rung_specs else list(SMOKE_RUNGS if smoke else DEFAULT_RUNGS)
    if len({r.name for r in rungs}) != len(rungs):
        raise LadderError("rung names must be distinct")
    seeds = parse_seeds(seeds_text)
    extra_rows = [row for p in add_points for row in load_points(Path(p))]
    clash = {r["rung"] for r in extra_rows} & {r.name for r in rungs}
    if clash:
        raise LadderError(f"--add-points rungs {sorted(clash)} have the names of this ladder's rungs; rename them")
    common = dict(common)
    if data:
        common["data_path"] = str(Path(data).resolve())
    elif not smoke:
        research = default_data_dir()
        if not research.is_dir():
            raise LadderError(f"no research corpus at {research}: build it with `jepagolf data research` "
                              "(or pass --data DIR, or --smoke for the demo corpus)")
        common["data_path"] = str(research)
    ignored = ignored_environment()
    if ignored:
        print(f"note: ladder ignores config environment variables ({', '.join(ignored)}); use --set", file=sys.stderr)
    first = build_config(preset, {**rung_common(rungs[0], common), **arms[0].overrides}, environ={})
    paths = resolve_dataset(first.data.data_path or None, first.data.tokenizer_path or None)
    rt = rt or setup_runtime(first.train.device)
    log = print if rt.is_main else (lambda _msg: None)
    if 0 < val_tokens < val_tokens_available(paths.data_dir):
        view = data_view(paths.data_dir, paths.tokenizer, out, val_tokens)
        log(f"data: scoring on the first {val_tokens:,} validation tokens of {paths.data_dir} ({view})")
        common["data_path"], common["tokenizer_path"] = str(view.resolve()), str((view / "tokenizer.model").resolve())
        paths = resolve_dataset(common["data_path"], common["tokenizer_path"], announce=False)
    train_tokens, val_tokens = train_tokens_available(paths.data_dir), val_tokens_available(paths.data_dir)
    log(f"ladder: {len(rungs)} rungs x {len(arms)} arms, data {paths.data_dir} ({train_tokens:,} train / "
        f"{val_tokens:,} val tokens), match {match}, out {out}")
    plans = []
    for rung in rungs:
        rp = plan_rung(preset, arms, rung, seeds, common, match, out, rt, log, calib_steps, wallclock_slack)
        plans.append(rp)
    notes = check_epochs(plans, train_tokens, max_epochs)
    table, total_s = plan_table(plans, train_tokens, val_tokens)
    log("\n" + table + f"\n\nestimated wall time: {total_s / 60:.1f} min ({total_s / 3600:.2f} h)")
    if rt.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "plan.md", table + f"\n\nestimated wall time: {total_s / 3600:.2f} h\n")
    if plan_only:
        return table
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    done_s = 0.0
    for i, rp in enumerate(plans, start=1):
        elapsed = time.perf_counter() - start
        left = max(0.0, total_s - done_s)
        log(f"== rung {rp.rung.name} ({i}/{len(plans)}): {len(rp.plan.arms) * len(rp.plan.seeds)} runs of "
            f"{rp.seconds:.4g} s; ladder {elapsed / 60:.1f} min in, ~{left / 60:.1f} min left (estimate)")
        rung_rows = run_ablation(rp.plan, rp.out, rt, train_fn=train_fn,
                                 log=lambda m, n=rp.rung.name: log(f"rung {n} {m}"))
        done_s += len(rung_rows) * estimate_run_seconds(rp, val_tokens)
        if rt.is_main:
            finalize(rung_rows, rp.plan, rp.out, plots_wanted=False)
            rows += ladder_rows(rp, rung_rows)
            write_runs_csv(rows, out / "runs.csv", CSV_COLUMNS)  # a ladder cut short keeps its finished rungs
    if not rt.is_main:
        return ""
    warnings = [f"rung {rp.rung.name}: every run of it was stopped by the guard cap" for rp in plans
                if all(r["steps"] < rp.steps(r["arm"]) for r in rows if r["rung"] == rp.rung.name)]
    over = {a.name: a.overrides for a in arms}
    return analyse(rows + extra_rows, arms[0].name, out, notes, over, warnings)


__all__ = ["DEFAULT_RUNGS", "LadderError", "Rung", "analyse", "challenge_flops", "extrapolate", "load_points",
           "main_ladder", "parse_rung", "rung_results"]
