"""Planning a compute ladder: rungs (a shape and a budget), each rung's ablation plan, the data view, the
epoch guard and the plan's wall-time estimate. ``jepagolf/research/ladder.py`` says what a ladder is."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jepagolf.config import Config
from jepagolf.jsonfile import read_json_object
from jepagolf.research.ablate_plan import (
    AblationError,
    AblationPlan,
    Arm,
    parse_arm,
    plan_ablation,
    plan_calibrated,
    with_fast_path,
)
from jepagolf.research.ablate_report import _md_table
from jepagolf.research.flops import flops_per_token
from jepagolf.train.logger import atomic_write_text

# ----- the challenge's compute (docs/results/gpu-h200/gpu_check.jsonl: the v3 trainer on a lent H200) -----

CHALLENGE_GPUS = 8
CHALLENGE_SECONDS = 600.0
PEAK_FLOPS = 989.4e12  # bf16 dense datasheet peak assumed by gpu_check (H100 SXM and H200 alike)
CHALLENGE_MFU = 0.2292  # v3 trainer, plain CE, compiled, 524,288-token steps (JEPA on: 0.2313)
CHALLENGE_PRESET = "v3"
BAR_NATS = 0.005  # the challenge's record bar

LADDER_MATCHES = ("wallclock", "flops", "steps")
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
    steps: int | None = None  # ... or the control's optimizer steps
    tpp: float | None = None  # ... or the control's training tokens per parameter (whole model)

    @property
    def budget_kind(self) -> str:
        return next((k for k in ("flops", "steps", "tpp") if getattr(self, k) is not None), "seconds")

    def spec(self) -> str:
        kind = self.budget_kind
        budget = f"{kind}={getattr(self, kind):g}"
        kv = [f"{k}={v}" for k, v in self.overrides.items()] + [budget, f"seeds={self.seeds}"]
        return f"{self.name}:" + ",".join(kv)


BUDGET_KEYS = ("seconds", "flops", "steps", "tpp")
RUNG_KEYS = (*BUDGET_KEYS, "seeds")


def parse_rung(spec: str) -> Rung:
    """``NAME:KEY=VAL,...,seconds=S,seeds=N`` (or ``flops=F``, ``steps=N`` or ``tpp=K`` tokens per parameter
    instead of seconds): config overrides (the shape) plus the budget."""
    arm = parse_arm(spec, "--rung", RUNG_KEYS)
    over = dict(arm.overrides)
    if sum(k in over for k in BUDGET_KEYS) != 1 or "seeds" not in over:
        raise LadderError(f"--rung {spec!r}: give seeds= and one of seconds=, flops=, steps= or tpp= (a rung is a "
                          "shape and a budget)")
    try:
        seeds = int(over.pop("seeds"))
        seconds = float(over.pop("seconds", "1"))
        flops = float(over.pop("flops")) if "flops" in over else None
        steps = int(over.pop("steps")) if "steps" in over else None
        tpp = float(over.pop("tpp")) if "tpp" in over else None
    except ValueError:
        raise LadderError(f"--rung {spec!r}: seconds, flops and tpp must be numbers, steps and seeds integers") \
            from None
    budget_ok = all(v is None or (math.isfinite(v) and v > 0) for v in (seconds, flops, steps, tpp))
    if not budget_ok or seeds < 2:
        raise LadderError(f"--rung {spec!r}: the budget must be > 0 and seeds >= 2 (a paired sd needs two)")
    return Rung(arm.name, over, seconds, seeds, flops, steps, tpp)


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
LADDER_COMMON = {"iterations": "1000000", "val_loss_every": "0", "diag_every": "-1", "train_log_every": "100",
                 # Schedules by each run's own length (warmdown the last WARMDOWN_FRACTION of its steps), and
                 # a stated export: int8 + zlib, which keeps every tensor of <= 65,536 elements in float, so at
                 # these sizes the round trip costs about nothing and Δ measures training, not quantisation
                 # noise (int5 added 0.03-0.16 nats/token at 1,000-10,000 steps of a 271k model, by seed).
                 "schedule_scale": "run", "warmdown_frac": str(WARMDOWN_FRACTION),
                 "export_scheme": "int8-zlib", "gptq": "false"}
RESEARCH_EXPORT_NOTE = ("int8 + zlib (the reference's scheme: tensors of <= 65,536 elements stay float), no GPTQ: "
                        "at these sizes the round trip costs about nothing, so Δ measures training")


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
    vary: str = "all",
) -> RungPlan:
    """The rung's ablation plan: wall-clock matched (every arm the control's time), FLOP matched or step matched
    (every arm the control's steps), the control's steps being those its budget gives: calibrated from
    seconds, or from steps=, flops= or tpp= directly. The step times are calibrated in every case (the
    wall-time estimate and the progress lines use them)."""
    if match not in LADDER_MATCHES:
        raise LadderError(f"--match {match!r}: use one of {', '.join(LADDER_MATCHES)}")
    if len(seeds) < rung.seeds:
        raise LadderError(f"rung {rung.name} needs {rung.seeds} seeds but --seeds gives {len(seeds)}")
    rung_out = out / "rungs" / rung.name
    over = with_fast_path(preset, rung_common(rung, common), arms, rung.steps)
    plan = plan_calibrated(preset, arms, seeds[: rung.seeds], "wallclock", over, rung_out, rt, log,
                           calib_steps=calib_steps, warmdown_fraction=WARMDOWN_FRACTION,
                           wallclock_slack=wallclock_slack, vary=vary)
    ctrl_steps = control_steps(rung, plan)
    if ctrl_steps is not None:
        # The budget is the time the control needs for the rung's steps at its calibrated step time;
        # the step times measured above (at a nominal budget) are reused for every arm.
        first = plan.calibration["arms"]  # type: ignore[index]
        measured = [float(first[a.name]["step_seconds"]) for a in arms]
        over["max_wallclock_seconds"] = f"{(ctrl_steps + 0.5) * measured[0]:.6g}"
        plan = plan_ablation(preset, arms, seeds[: rung.seeds], "wallclock", over,
                             step_timer=lambda _c, _s: measured, calib_steps=calib_steps,
                             warmdown_fraction=WARMDOWN_FRACTION, wallclock_slack=wallclock_slack, vary=vary)
        for a in arms:  # measured when the first calibration was (a resume reuses it), not now
            plan.calibration["arms"][a.name]["measured_at"] = first[a.name]["measured_at"]  # type: ignore[index]
    if match in ("flops", "steps"):
        iters = plan.config(plan.control, plan.seeds[0]).train.iterations if ctrl_steps is None else ctrl_steps
        fixed_over = {**over, "iterations": str(iters), "warmdown_iters": str(round(WARMDOWN_FRACTION * iters)),
                      "max_wallclock_seconds": "0"}
        calibration = plan.calibration
        plan = plan_ablation(preset, arms, seeds[: rung.seeds], match, fixed_over, vary=vary)
        plan.calibration = calibration  # the step times stay known (estimates, the budget shown)
    return RungPlan(rung, plan, rung_out)


def control_steps(rung: Rung, plan: AblationPlan) -> int | None:
    """The control's steps that a steps=, flops= or tpp= budget asks for; None for a seconds budget (the
    calibration decides)."""
    if rung.steps is not None:
        return rung.steps
    if rung.flops is not None:
        return max(1, round(rung.flops / plan.flops_per_step[plan.control.name]))
    if rung.tpp is not None:
        ctrl = plan.config(plan.control, plan.seeds[0])
        return max(1, math.ceil(rung.tpp * count_params(ctrl) / ctrl.train.train_batch_tokens))
    return None


def count_non_embedding_params(cfg: Config) -> int:
    """Parameters of the exported GPT less its embedding tables (the tied token embedding and the bigram
    table): at the challenge's size those are ~6% of the model, at the small rungs most of it."""
    import torch

    from jepagolf.model.gpt import GPT

    with torch.device("meta"):
        gpt = GPT(cfg.model, cfg.train.train_seq_len)
    embedded = {id(p) for m in gpt.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    return sum(p.numel() for p in gpt.parameters() if id(p) not in embedded)


def count_params(cfg: Config) -> int:
    """Parameters of the exported GPT of a config (built on the meta device: no memory, no time)."""
    import torch

    from jepagolf.model.gpt import GPT
    from jepagolf.model.gpt import count_params as count

    with torch.device("meta"):
        return count(GPT(cfg.model, cfg.train.train_seq_len))


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


def estimate_run_seconds(rp: RungPlan, val_tokens: int, arm: str | None = None) -> float:
    """Expected wall seconds of one run (of ``arm``; default the control): its training (the budget at
    equal wall-clock; its steps times its calibrated step time when matched by steps or FLOPs) plus three
    exact evaluations of the validation split (forward only, about a third of a training step's FLOPs per
    token, at the control's measured rate) plus a few seconds of build and export."""
    arms = (rp.plan.calibration or {}).get("arms", {})
    calib = arms.get(rp.control)
    if not calib:
        return rp.seconds
    rate = rp.plan.flops_per_step[rp.control] / float(calib["step_seconds"])  # FLOP/s measured
    ctrl = rp.config(rp.control)
    eval_s = 3 * val_tokens * flops_per_token(ctrl).ce_step / 3 / rate
    train_s = rp.seconds
    arm = arm or rp.control
    if rp.plan.match != "wallclock" and arm in arms:
        train_s = rp.steps(arm) * float(arms[arm]["step_seconds"])
    return train_s + eval_s + 3.0


def rung_run_seconds(rp: RungPlan, val_tokens: int) -> list[float]:
    """Expected wall seconds of each of the rung's runs, in the order they run (seed by seed, arm by arm)."""
    per_arm = [estimate_run_seconds(rp, val_tokens, a.name) for a in rp.plan.arms]
    return per_arm * len(rp.plan.seeds)


def plan_table(plans: Sequence[RungPlan], train_tokens: int, val_tokens: int) -> tuple[str, float]:
    """The plan as a markdown table, and the estimated wall seconds of the whole ladder."""
    body, total = [], 0.0
    for rp in plans:
        c = rp.config(rp.control)
        m = c.model
        n, n_body = count_params(c), count_non_embedding_params(c)
        runs_s = rung_run_seconds(rp, val_tokens)
        total += sum(runs_s)
        steps = ", ".join(f"{a.name} {rp.steps(a.name)}" for a in rp.plan.arms)
        body.append([
            rp.rung.name, f"{m.num_layers}x{m.model_dim}, seq {c.train.train_seq_len}, "
            f"batch {c.train.train_batch_tokens}", f"{n:,}", f"{rp.seconds:.4g}", str(len(rp.plan.seeds)), steps,
            f"{rp.tokens(rp.control):,}", f"{rp.tokens(rp.control) / train_tokens:.3f}",
            f"{rp.tokens(rp.control) / n:.1f}", f"{rp.tokens(rp.control) / n_body:.1f}", f"{rp.control_flops():.3g}",
            f"{len(runs_s)} runs, {sum(runs_s) / 60:.1f} min",
        ])
    header = ["rung", "shape", "params", "control seconds", "seeds", "steps", "control tokens", "epochs",
              "tokens/param", "tokens/non-embedding param", "control FLOPs", "est. wall"]
    return _md_table(header, body), total
