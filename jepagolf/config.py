"""Typed configuration: one dataclass per concern, presets, and overrides.

Every field has a flat name that is unique across sections, so one key addresses it
everywhere: ``--set num_layers=4``, ``--set model.num_layers=4`` and the environment
variable ``NUM_LAYERS=4`` (the parameter-golf spelling) all set the same field.
Precedence: preset < environment < ``--set``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple, get_type_hints

from jepagolf.recipes import recipe_values


class ConfigError(ValueError):
    """A configuration value is unknown, malformed or inconsistent."""


@dataclass
class ModelConfig:
    vocab_size: int = 1024
    """Tokenizer vocabulary size; must match the tokenizer file."""
    num_layers: int = 11
    """Transformer blocks. The first floor(L/2) push U-Net skips, the rest pop them."""
    model_dim: int = 512
    """Residual stream width D."""
    num_heads: int = 8
    """Query heads; model_dim / num_heads is the head dim (must be even for RoPE)."""
    num_kv_heads: int = 4
    """Key/value heads (GQA); must divide num_heads."""
    mlp_mult: float = 3.0
    """MLP hidden width = mlp_mult * model_dim."""
    mlp_leaky_slope: float = 0.5
    """Negative slope of the LeakyReLU before squaring (0 gives relu^2, the baseline)."""
    rope_base: float = 10000.0
    """RoPE frequency base."""
    logit_softcap: float = 30.0
    """Logits are soft-capped as c*tanh(l/c); 0 disables."""
    qk_gain_init: float = 4.0
    """Initial value of the learnable per-head query gain (applied after QK RMSNorm)."""
    tied_embed_init_std: float = 0.005
    """Init std of the tied token embedding / output head."""
    bigram_buckets: int = 2048
    """Rows of the BigramHash embedding table; 0 disables it."""
    bigram_init_std: float = 0.01
    """Init std of the BigramHash table."""
    unet_skips: bool = True
    """U-Net skip connections from the first half of the blocks to the second."""

    def __post_init__(self) -> None:
        _check_types(self)
        _positive(self, "vocab_size", "num_layers", "model_dim", "num_heads", "num_kv_heads", "mlp_mult", "rope_base")
        if self.num_layers > MAX_LAYERS:
            raise ConfigError(f"num_layers={self.num_layers} is more than {MAX_LAYERS}")
        if self.mlp_mult > MAX_MLP_MULT:
            raise ConfigError(f"mlp_mult={self.mlp_mult} is more than {MAX_MLP_MULT}")
        if self.vocab_size > 65536:
            raise ConfigError(f"vocab_size={self.vocab_size}: shards store uint16 tokens, so at most 65536")
        if self.model_dim % self.num_heads:
            raise ConfigError(
                f"model_dim={self.model_dim} is not divisible by num_heads={self.num_heads}; "
                "pick num_heads that divides model_dim"
            )
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(
                f"num_heads={self.num_heads} is not divisible by num_kv_heads={self.num_kv_heads} (GQA needs "
                "each KV head shared by the same number of query heads)"
            )
        if (self.model_dim // self.num_heads) % 2:
            raise ConfigError(
                f"head dim model_dim/num_heads={self.model_dim // self.num_heads} is odd; RoPE rotates pairs "
                "of channels, so it must be even"
            )
        if self.bigram_buckets < 0 or self.logit_softcap < 0:
            raise ConfigError("bigram_buckets and logit_softcap must be >= 0 (0 disables)")
        if self.tied_embed_init_std < 0 or self.bigram_init_std < 0:
            raise ConfigError("tied_embed_init_std and bigram_init_std must be >= 0")
        params = self.param_count()
        if params > MAX_PARAMS:
            raise ConfigError(
                f"the model has {params:,} parameters: more than {MAX_PARAMS:,}, it cannot fit the "
                f"{CAP_BYTES:,}-byte cap even at 1 bit per weight; lower num_layers, model_dim, mlp_mult, "
                "vocab_size or bigram_buckets"
            )

    def param_count(self) -> int:
        """Parameters of the GPT this config builds (``jepagolf.model.gpt.GPT``), in Python ints, so
        that a hostile or careless shape is refused before anything is allocated."""
        D, L, kv = self.model_dim, self.num_layers, self.num_kv_heads * self.head_dim
        attn = D * D + 2 * D * kv + D * D + self.num_heads  # q, k, v, out projections, q_gain
        mlp = 2 * D * self.mlp_hidden
        block = attn + mlp + 4 * D  # attn_scale, mlp_scale, resid_mix (2, D)
        encoder = L // 2 if self.unet_skips else 0
        skips = min(encoder, L - encoder) * D
        return (self.vocab_size + self.bigram_buckets) * D + L * block + skips

    @property
    def head_dim(self) -> int:
        return self.model_dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.mlp_mult * self.model_dim)


# JEPA span lengths (jepagolf.jepa.masking samples them); here so the config can validate them.
class SpanPlan(NamedTuple):
    """What ``sample_spans`` draws at one sequence length: the span count, the geometric's p and the
    lower clamp of the lengths (the upper clamp follows from ``span_bounds``)."""

    num_spans: int
    p: float
    span_min: int


def span_plan(seq_len: int, mask_frac: float, num_spans: int, p: float, span_min: int) -> SpanPlan:
    """The spans that mask ~``mask_frac`` of a sequence of ``seq_len`` tokens (DESIGN section 3).

    ``mask_frac`` = 0 is the fixed rule: ``num_spans`` spans of Geometric(p) clamped to [span_min, ...] at
    every length (~6% masked at T = 1024, 22% at 256, ~40% at 64). Otherwise the masked tokens per
    sequence are m = mask_frac * T: the span count is ``num_spans`` if positive, else round(m * p) (at
    least 1), and the mean span length is m / count, capped below at 1 token, so it stays 1/p wherever
    count = m * p exactly (v3: 4 spans of Geometric(1/16) at T = 1024); where it must shrink below 1/p
    (short sequences) the lower clamp shrinks in proportion. The lower clamp lifts the expected fraction
    a little above mask_frac (6.4% at T = 1024 for 1/16).
    """
    if mask_frac <= 0:
        return SpanPlan(num_spans, p, span_min)
    masked = mask_frac * seq_len
    n = num_spans if num_spans > 0 else max(1, round(masked * p))
    mean = max(1.0, masked / n)
    shrink = min(1.0, mean * p)  # < 1 only where spans must be shorter than 1/p on average
    return SpanPlan(n, min(1.0, 1.0 / mean), max(1, min(span_min, round(span_min * shrink))))


def span_bounds(seq_len: int, num_spans: int, span_min: int) -> tuple[int, int]:
    """(min, max) span length: lengths are clamped to [min, max(min, T // (2 * num_spans))]."""
    return span_min, max(span_min, seq_len // (2 * num_spans))


def check_span_settings(seq_len: int, num_spans: int, span_min: int) -> None:
    """ValueError when num_spans spans of the longest length, with gaps, do not fit in seq_len."""
    lo, hi = span_bounds(seq_len, num_spans, span_min)
    need = num_spans * hi + (num_spans - 1)
    if need > seq_len:
        raise ValueError(
            f"train_seq_len={seq_len} is too short for jepa_num_spans={num_spans} spans of up to {hi} "
            f"tokens with gaps (needs {need}); raise train_seq_len or lower jepa_num_spans/jepa_span_min"
        )


@dataclass
class JepaConfig:
    jepa: bool = True
    """Enable the span-masked JEPA auxiliary objective."""
    jepa_lambda: float = 0.12
    """Weight of the JEPA loss in ce + lambda*jepa (0 runs the plain-CE path)."""
    jepa_lambda_warmup_steps: int = 100
    """Lambda rises linearly from 0 to jepa_lambda over this many steps."""
    jepa_mask_frac: float = 1.0 / 16
    """Target fraction of each sequence masked, the same at every train_seq_len: m = frac * T tokens in
    round(m * jepa_span_p) spans (>= 1; or jepa_num_spans if set) of mean length m / count, which is 1/p
    at T = 1024 (v3: 4 spans of Geometric(1/16), 6.4% after the clamps) and shorter, with the lower clamp
    scaled alike, where a sequence is too short for one span of 1/p (T = 256: 1 span, mean 16; T = 64:
    1 span, mean 4, clamp 1). 0 = the fixed rule of runs before this key existed: jepa_num_spans spans of
    Geometric(p) clamped to [jepa_span_min, T // (2 * spans)] at every T (22% masked at T = 256, ~40% at 64)."""
    jepa_num_spans: int = 0
    """Masked spans per sequence (exactly this many, disjoint); 0 = derived from jepa_mask_frac."""
    jepa_span_p: float = 1.0 / 16
    """Span lengths ~ Geometric(p) on {1,2,...} (mean 1/p) where the sequence is long enough (see
    jepa_mask_frac), then clamped."""
    jepa_span_min: int = 4
    """Lower clamp of span lengths (scaled down with the mean on short sequences); the upper clamp is
    max(min, seq_len // (2*num_spans))."""
    jepa_span_per_sequence: bool = False
    """Sample a span set per sequence instead of one per micro-batch."""
    jepa_pred_hidden: int = 256
    """Hidden width of the residual predictor MLP."""
    jepa_var_weight: float = 0.15
    """VICReg variance (std hinge) weight, predictor side."""
    jepa_cov_weight: float = 0.02
    """VICReg covariance weight, predictor side."""
    jepa_ema_start: float = 0.9
    """Target-encoder EMA momentum at the start of training."""
    jepa_ema_end: float = 0.999
    """Target-encoder EMA momentum at the end (linear in training progress)."""
    # Efficiency options (see jepagolf/bench.py for their measured cost); the defaults are v3 as specified.
    jepa_batch_fraction: float = 1.0
    """JEPA passes (context and target) on the first ceil(f * rows) rows of each micro-batch only."""
    jepa_every: int = 1
    """JEPA term on every k-th optimizer step only, its weight multiplied by k (same expected gradient)."""
    jepa_target: str = "ema"
    """ema: targets from the EMA target encoder (v3) | online: the CE pass's own z, detached (no target pass)."""
    jepa_batched: bool = False
    """Run the CE rows and the masked context rows through the network as one concatenated batch."""
    # Objective variants (issue 15); every default is v3 as specified. See jepagolf/recipes.py for the
    # public recipes built from them and README "JEPA variants" for the table.
    jepa_recipe: str = ""
    """A named recipe (jepagolf/recipes.py: v3, v2-nextk, chunk-latent, multi-horizon, attn-predictor, sigreg,
    grid-l0.001, grid-l0.2) whose values apply on top of the preset; keys set explicitly win over it."""
    jepa_mode: str = "span"
    """span: masked spans predicted from a masked context pass (v3) | nextk: no masking, from position t of the CE
    pass predict the targets at t+1..t+jepa_horizons | chunk: no masking, chunk c's mean-pooled target latent
    predicted from chunk c-1's pooled context latent (a learned start vector for c = 0)."""
    jepa_horizons: int = 1
    """nextk: how many future positions each position predicts."""
    jepa_nextk_rollout: bool = False
    """nextk: one shared predictor applied recursively (horizon j = j applications) instead of one per horizon."""
    jepa_horizon_decay: float = 1.0
    """nextk: horizon j's loss is weighted decay^(j-1); the weighted terms are averaged (weights normalised)."""
    jepa_chunk_size: int = 8
    """chunk: tokens per chunk (must divide train_seq_len)."""
    jepa_target_source: str = "final"
    """final: the final RMSNorm output z (v3) | block: block jepa_target_block's output | encoder: the last U-Net
    encoder block's output | top-avg: the mean of the top jepa_target_top_k blocks' layer-normed outputs (data2vec).
    block and encoder also take the context state from that block; all block outputs are RMS-normalised first."""
    jepa_target_block: int = -1
    """Block index for jepa_target_source=block (0-based; negative counts from the last block)."""
    jepa_target_top_k: int = 3
    """Blocks averaged for jepa_target_source=top-avg."""
    jepa_target_norm: str = "none"
    """Target normalisation: none (v3) | layernorm (no affine, I-JEPA) | running (per-feature standardisation with
    running mean/var buffers updated from the targets, no grad)."""
    jepa_target_norm_momentum: float = 0.99
    """Momentum of the running mean/var for jepa_target_norm=running."""
    jepa_target_stopgrad: bool = True
    """Targets carry no gradient (v3). false needs jepa_target=online: the online network's own states are the
    targets and get gradient too (LeWorldModel, no stop-gradient)."""
    jepa_loss_fn: str = "mse"
    """Latent regression: mse (v3) | smooth_l1 | cosine (1 - cosine similarity, per position)."""
    jepa_var_mode: str = "one"
    """Variance hinge target gamma: one (relu(1 - std_d), v3) | target (gamma_d = jepa_var_gamma_scale * the
    targets' std of feature d, detached) | off."""
    jepa_var_gamma_scale: float = 1.0
    """Multiplier on the targets' per-feature std for jepa_var_mode=target."""
    jepa_reg: str = "vicreg"
    """Anti-collapse regulariser: vicreg (variance hinge + covariance, v3) | sigreg (LeWorldModel's sketched
    isotropic-Gaussian regulariser, weight jepa_sigreg_weight; the VICReg terms are then off)."""
    jepa_reg_side: str = "pred"
    """Where the regulariser acts: pred (v3) | target | both (target needs targets with gradient)."""
    jepa_sigreg_weight: float = 0.02
    """Weight of SIGReg in the JEPA loss."""
    jepa_sigreg_projections: int = 256
    """Random unit directions SIGReg projects on (drawn afresh each step)."""
    jepa_sigreg_knots: int = 17
    """Quadrature points of the characteristic-function distance on t in [0, 3]."""
    jepa_predictor: str = "mlp"
    """mlp: per-position residual MLP (v3) | attn: small transformer blocks over all context states, then gathered."""
    jepa_pred_layers: int = 1
    """attn predictor: transformer blocks (width jepa_pred_hidden)."""
    jepa_pred_heads: int = 4
    """attn predictor: attention heads (jepa_pred_hidden / heads must be even, for RoPE)."""
    jepa_pred_infill: bool = False
    """attn predictor in span mode: attend to every position, those after the span included (non-causal)."""
    jepa_lambda_schedule: str = "constant"
    """constant: lambda after the warm-up ramp (v3) | warmdown: also multiplied by the LR warmdown factor, so it
    anneals to 0 as the LR does."""

    def __post_init__(self) -> None:
        _check_types(self)
        _positive(self, "jepa_span_min", "jepa_pred_hidden", "jepa_every", "jepa_horizons",
                  "jepa_chunk_size", "jepa_target_top_k", "jepa_sigreg_projections", "jepa_pred_layers",
                  "jepa_pred_heads", "jepa_var_gamma_scale", "jepa_horizon_decay")
        choices = {
            "jepa_mode": ("span", "nextk", "chunk"), "jepa_target_source": ("final", "block", "encoder", "top-avg"),
            "jepa_target_norm": ("none", "layernorm", "running"), "jepa_loss_fn": ("mse", "smooth_l1", "cosine"),
            "jepa_var_mode": ("one", "target", "off"), "jepa_reg": ("vicreg", "sigreg"),
            "jepa_reg_side": ("pred", "target", "both"), "jepa_predictor": ("mlp", "attn"),
            "jepa_lambda_schedule": ("constant", "warmdown"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r}: use one of {', '.join(allowed)}")
        if self.jepa_recipe:
            try:
                recipe_values(self.jepa_recipe)
            except KeyError as e:
                raise ConfigError(e.args[0]) from None
        if not 0.0 <= self.jepa_target_norm_momentum < 1.0:
            raise ConfigError(f"jepa_target_norm_momentum={self.jepa_target_norm_momentum} must be in [0, 1)")
        if self.jepa_sigreg_weight < 0 or self.jepa_sigreg_knots < 2:
            raise ConfigError("jepa_sigreg_weight must be >= 0 and jepa_sigreg_knots >= 2")
        if not self.jepa_target_stopgrad and self.jepa_target != "online":
            raise ConfigError("jepa_target_stopgrad=false needs jepa_target=online (an EMA target has no gradient)")
        if self.jepa_reg_side != "pred" and self.jepa_target_stopgrad:
            raise ConfigError(f"jepa_reg_side={self.jepa_reg_side}: a regulariser on the targets needs targets with "
                              "gradient (jepa_target=online, jepa_target_stopgrad=false); use pred")
        width, heads = self.jepa_pred_hidden, self.jepa_pred_heads
        if self.jepa_predictor == "attn" and (width % heads or (width // heads) % 2):
            raise ConfigError(f"jepa_pred_hidden={width} / jepa_pred_heads={heads} must be a whole, even head width "
                              "(RoPE rotates pairs)")
        if self.jepa_pred_infill and (self.jepa_predictor != "attn" or self.jepa_mode != "span"):
            raise ConfigError("jepa_pred_infill=true needs jepa_predictor=attn and jepa_mode=span (in nextk/chunk "
                              "mode the future is the target itself)")
        if self.jepa_mode != "span" and self.jepa_batched:
            raise ConfigError(f"jepa_batched=true batches the masked context pass; jepa_mode={self.jepa_mode} has none")
        if not 0.0 <= self.jepa_mask_frac <= 0.5:
            raise ConfigError(f"jepa_mask_frac={self.jepa_mask_frac} must be in [0, 0.5] (0: fixed span count)")
        if self.jepa_num_spans < 0 or (self.jepa_num_spans == 0 and self.jepa_mask_frac == 0):
            raise ConfigError(f"jepa_num_spans={self.jepa_num_spans} must be > 0 (or 0 with jepa_mask_frac > 0)")
        if not 0.0 < self.jepa_batch_fraction <= 1.0:
            raise ConfigError(f"jepa_batch_fraction={self.jepa_batch_fraction} must be in (0, 1]")
        if self.jepa_target not in ("ema", "online"):
            raise ConfigError(f"jepa_target={self.jepa_target!r}: use ema or online")
        if not 0.0 < self.jepa_span_p < 1.0:
            raise ConfigError(f"jepa_span_p={self.jepa_span_p} must be in (0, 1) (the geometric's p)")
        if self.jepa_lambda < 0 or self.jepa_lambda_warmup_steps < 0:
            raise ConfigError("jepa_lambda and jepa_lambda_warmup_steps must be >= 0")
        for name in ("jepa_ema_start", "jepa_ema_end"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name}={getattr(self, name)} must be in [0, 1)")

    @property
    def active(self) -> bool:
        """Whether the JEPA passes run at all (lambda 0 takes the plain-CE path)."""
        return self.jepa and self.jepa_lambda > 0

    def span_plan(self, seq_len: int) -> SpanPlan:
        """Span count, geometric p and lower clamp at ``seq_len`` (see jepa_mask_frac)."""
        return span_plan(seq_len, self.jepa_mask_frac, self.jepa_num_spans, self.jepa_span_p, self.jepa_span_min)


@dataclass
class OptimConfig:
    matrix_lr: float = 0.04
    """Muon learning rate for 2-D hidden matrices (predictor included)."""
    scalar_lr: float = 0.04
    """Adam learning rate for vectors, scalars and control tensors (mask_emb included)."""
    tied_embed_lr: float = 0.05
    """Adam learning rate for the tied embedding and the BigramHash table."""
    muon_momentum: float = 0.95
    """Muon momentum after warm-up."""
    muon_momentum_warmup_start: float = 0.85
    """Muon momentum at step 0."""
    muon_momentum_warmup_steps: int = 500
    """Steps over which Muon momentum rises to muon_momentum."""
    muon_backend_steps: int = 5
    """Newton-Schulz iterations."""
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    warmdown_iters: int = 1200
    """Linear LR warmdown length in steps (converted to wall-clock when a cap is set)."""
    warmdown_mode: str = "auto"
    """auto: wall-clock warmdown when max_wallclock_seconds > 0 (and by steps if `iterations` comes
    first), else by steps | steps: always over the last warmdown_iters of `iterations`, even under a cap
    (the cap still stops the run; ablations use this with a calibrated step count) | wallclock: as auto,
    requires a cap | reference: the reference trainer's rule, by the clock only under a cap (a run that
    `iterations` ends first gets no warmdown), by steps without one."""
    grad_clip_norm: float = 0.0
    """Clip the global gradient norm; 0 disables."""
    artifact_ema_decay: float = 0.9999
    """Decay of the exported weight EMA; warmed up as min(d, (1+t)/(10+t))."""

    def __post_init__(self) -> None:
        _check_types(self)
        _positive(self, "matrix_lr", "scalar_lr", "tied_embed_lr", "muon_backend_steps")
        if self.warmdown_iters < 0 or self.muon_momentum_warmup_steps < 0:
            raise ConfigError("warmdown_iters and muon_momentum_warmup_steps must be >= 0")
        if not 0.0 <= self.artifact_ema_decay < 1.0:
            raise ConfigError(f"artifact_ema_decay={self.artifact_ema_decay} must be in [0, 1)")
        if self.warmdown_mode not in ("auto", "steps", "wallclock", "reference"):
            raise ConfigError(f"warmdown_mode={self.warmdown_mode!r}: use auto, steps, wallclock or reference")


@dataclass
class TrainConfig:
    seed: int = 1337
    """Seeds init, data order offset-free, and the span generators."""
    iterations: int = 20000
    """Maximum optimizer steps."""
    train_batch_tokens: int = 524_288
    """Global batch in tokens per optimizer step (fixed whatever the world size)."""
    micro_batch_tokens: int = 65_536
    """Tokens per forward on one process; accumulation = batch / (world * micro)."""
    train_seq_len: int = 1024
    """Sequence length for training and evaluation."""
    max_wallclock_seconds: float = 600.0
    """Training time cap (clock stopped during validation); 0 = none, step-based schedule."""
    val_loss_every: int = 0
    """Validate every N steps (0: only at the end)."""
    val_max_tokens: int = 0
    """Cap on tokens for the periodic validations only (0 = whole split); the final is exact."""
    val_batch_tokens: int = 65_536
    """Tokens per evaluation forward on one process."""
    eval_seq_len: int = 0
    """Window length of the final scoring and of `jepagolf eval` (0 = train_seq_len); any length works."""
    eval_stride: int = 0
    """Sliding-window scoring: windows of eval_seq_len advanced by this many tokens, each scoring only the
    targets the previous one did not reach (its last eval_stride), every target once; 0 = non-overlapping.
    The records' habit is 64 at 1024 (v3); costs about eval_seq_len / eval_stride plain evaluations."""
    train_log_every: int = 50
    """Log train metrics every N steps (and at the first and last)."""
    diag_every: int = 0
    """JEPA collapse diagnostics (effective ranks, cosine, JEPA share of the gradient) every N steps, and
    at the first and last; 0 = at the train_log_every steps, -1 = off. Costs extra backward passes on
    those steps only."""
    device: str = "auto"
    """auto | cpu | cuda (auto picks cuda when available)."""
    compile: str = "auto"
    """torch.compile the model: auto (on for CUDA, off for CPU) | on | off."""
    checkpoint_every_steps: int = 0
    """Write a resumable checkpoint to RUN_DIR/checkpoints every N steps (0: off)."""
    checkpoint_every_seconds: float = 0.0
    """Also write one when this many wall-clock seconds have passed since the last (0: off)."""
    checkpoint_keep: int = 3
    """Keep only the newest K checkpoints (older ones are deleted after a successful write)."""
    skip_nonfinite_steps: int = 0
    """Skip up to this many steps with a non-finite loss or gradient (no update, no EMA) before
    stopping; 0 stops at the first one."""
    batch_slicing: str = "shared"
    """How a step's micro-batches are cut from the token stream: shared (consecutive micro-batches share
    their boundary token; a step reads train_batch_tokens + 1) | reference (each reads its own
    micro_batch_tokens + 1 tokens, as the reference trainer's loader does)."""
    compile_warmup_steps: int = -1
    """Training steps run before the clock starts to compile and warm up kernels, after which the
    weights, optimizer states, EMAs and data position are restored; -1 = 20 when compiling, else 0."""

    def __post_init__(self) -> None:
        _check_types(self)
        _positive(self, "iterations", "train_batch_tokens", "micro_batch_tokens", "train_seq_len",
                  "val_batch_tokens", "train_log_every")
        check_seq_len(self.train_seq_len)
        if self.eval_seq_len > MAX_SEQ_LEN:
            raise ConfigError(f"eval_seq_len={self.eval_seq_len} must be at most {MAX_SEQ_LEN}")
        for name in ("train_batch_tokens", "micro_batch_tokens", "val_batch_tokens"):
            if getattr(self, name) > MAX_BATCH_TOKENS:
                raise ConfigError(f"{name}={getattr(self, name)} is more than {MAX_BATCH_TOKENS} tokens")
        if self.micro_batch_tokens % self.train_seq_len:
            raise ConfigError(
                f"micro_batch_tokens={self.micro_batch_tokens} is not a multiple of "
                f"train_seq_len={self.train_seq_len}"
            )
        if self.train_batch_tokens % self.micro_batch_tokens:
            raise ConfigError(
                f"train_batch_tokens={self.train_batch_tokens} is not a multiple of "
                f"micro_batch_tokens={self.micro_batch_tokens}"
            )
        if self.val_batch_tokens < self.train_seq_len:
            raise ConfigError("val_batch_tokens must hold at least one sequence (>= train_seq_len)")
        if self.eval_seq_len < 0 or self.eval_stride < 0:
            raise ConfigError(f"eval_seq_len={self.eval_seq_len} and eval_stride={self.eval_stride} must be >= 0 "
                              "(0: train_seq_len, and non-overlapping windows)")
        if self.eval_stride > self.scoring_seq_len:
            raise ConfigError(f"eval_stride={self.eval_stride} is longer than the evaluation window eval_seq_len="
                              f"{self.scoring_seq_len}: use 1..{self.scoring_seq_len} (0: non-overlapping)")
        if self.diag_every < -1:
            raise ConfigError(f"diag_every={self.diag_every}: use N > 0, 0 (= train_log_every) or -1 (off)")
        if self.max_wallclock_seconds < 0 or self.val_loss_every < 0 or self.val_max_tokens < 0:
            raise ConfigError("max_wallclock_seconds, val_loss_every and val_max_tokens must be >= 0")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device={self.device!r}: use auto, cpu or cuda")
        if self.compile not in ("auto", "on", "off"):
            raise ConfigError(f"compile={self.compile!r}: use auto, on or off")
        if self.checkpoint_every_steps < 0 or self.checkpoint_every_seconds < 0 or self.skip_nonfinite_steps < 0:
            raise ConfigError(
                "checkpoint_every_steps, checkpoint_every_seconds and skip_nonfinite_steps must be >= 0 (0: off)"
            )
        if self.checkpoint_keep < 1:
            raise ConfigError(f"checkpoint_keep={self.checkpoint_keep} must be >= 1")
        if self.batch_slicing not in ("shared", "reference"):
            raise ConfigError(f"batch_slicing={self.batch_slicing!r}: use shared or reference")
        if self.compile_warmup_steps < -1:
            raise ConfigError(f"compile_warmup_steps={self.compile_warmup_steps}: use -1 (auto) or a count >= 0")

    @property
    def scoring_seq_len(self) -> int:
        """The window length the final score uses (eval_seq_len, or train_seq_len when 0)."""
        return self.eval_seq_len or self.train_seq_len


@dataclass
class DataConfig:
    data_path: str = ""
    """Dataset folder with <prefix>_train_*.bin / <prefix>_val_*.bin; empty = offline demo corpus."""
    tokenizer_path: str = ""
    """SentencePiece model; empty = the dataset folder's tokenizer.model (or the demo one)."""

    def __post_init__(self) -> None:
        _check_types(self)


@dataclass
class ExportConfig:
    int6_min_numel: int = 16_384
    """2-D tensors with at least this many elements are stored as int6; smaller ones stay float."""
    int5_patterns: str = "mlp.,attn.,bigram"
    """Comma-separated name fragments of int6 matrices stored as int5 instead (levels -15..15, about
    1 bit less per weight); empty = all int6. The tied embedding (the output head) stays int6.
    Measured on cpu-demo with GPTQ: 0.58 bytes/param and a 0.0056 bpb gap, against 0.69 and 0.0126
    for int6 everywhere rounded to nearest; v3 does not fit the cap at int6 (~19 MB predicted)."""
    gptq: bool = True
    """Round the int5/int6 matrices by GPTQ (Hessian-aware, on train-split calibration sequences)
    instead of to nearest: same format and size, lower output error."""
    gptq_calib_tokens: int = 65_536
    """Training tokens whose activations give the GPTQ input statistics."""
    export_scheme: str = "int6-lzma"
    """int6-lzma: jepagolf's export (int6/int5 per row, GPTQ when gptq is on, LZMA) | int8-zlib: the
    reference trainer's (int8 per row clipped at the 99.99984th percentile, tensors of <= 65,536
    elements kept in fp16/fp32, zlib level 9), as the naive baseline scores it."""
    embed_quant: str = "int6"
    """Storage of the tied embedding / output head: int5 | int6 | int8. On cpu-demo (int5 elsewhere,
    GPTQ) int8 costs 0.03 bytes/param more and cuts the quantisation gap from 0.0056 to 0.0013 bpb."""

    def __post_init__(self) -> None:
        _check_types(self)
        _positive(self, "int6_min_numel", "gptq_calib_tokens")
        if self.export_scheme not in ("int6-lzma", "int8-zlib"):
            raise ConfigError(f"export_scheme={self.export_scheme!r}: use int6-lzma or int8-zlib")
        if self.export_scheme == "int8-zlib" and self.gptq:
            raise ConfigError("gptq=true rounds the int6-lzma export; export_scheme=int8-zlib rounds to nearest as "
                              "the reference does: set gptq=false or export_scheme=int6-lzma")
        if self.embed_quant not in ("int5", "int6", "int8"):
            raise ConfigError(f"embed_quant={self.embed_quant!r}: use int5, int6 or int8")


@dataclass
class Config:
    preset: str = "v3"
    model: ModelConfig = field(default_factory=ModelConfig)
    jepa: JepaConfig = field(default_factory=JepaConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def __post_init__(self) -> None:
        t, j = self.train, self.jepa
        if not isinstance(self.preset, str):
            raise ConfigError(f"preset={self.preset!r}: expected a value of type str")
        check_rope_tables(self.model, t.train_seq_len)
        if self.optim.warmdown_mode == "wallclock" and t.max_wallclock_seconds <= 0:
            raise ConfigError("warmdown_mode=wallclock needs max_wallclock_seconds > 0; use auto or steps")
        if j.active:
            try:
                if j.jepa_mode == "span":
                    plan = j.span_plan(t.train_seq_len)
                    check_span_settings(t.train_seq_len, plan.num_spans, plan.span_min)
            except ValueError as e:
                raise ConfigError(str(e)) from None
            L = self.model.num_layers
            if not -L <= j.jepa_target_block < L:
                raise ConfigError(f"jepa_target_block={j.jepa_target_block} is outside the {L} blocks (num_layers)")
            if j.jepa_target_source == "top-avg" and j.jepa_target_top_k > L:
                raise ConfigError(f"jepa_target_top_k={j.jepa_target_top_k} exceeds num_layers={L}")
            if j.jepa_target_source == "encoder" and (not self.model.unet_skips or L < 2):
                raise ConfigError("jepa_target_source=encoder needs U-Net skips and num_layers >= 2 (an encoder half)")
            if j.jepa_mode == "chunk" and t.train_seq_len % j.jepa_chunk_size:
                raise ConfigError(f"jepa_chunk_size={j.jepa_chunk_size} does not divide "
                                  f"train_seq_len={t.train_seq_len}")
            if j.jepa_mode == "nextk" and j.jepa_horizons >= t.train_seq_len:
                raise ConfigError(f"jepa_horizons={j.jepa_horizons} must be < train_seq_len={t.train_seq_len}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def hash(self) -> str:
        """Short hash of everything that changes the trained model (not the device or data paths)."""
        return config_dict_hash(self.to_dict())


def config_dict_hash(config: dict[str, Any]) -> str:
    """``Config.hash()`` of a config dict (``Config.to_dict()``, or a config.json exactly as stored,
    which lacks the fields added since it was written): the preset name, the data paths and the
    operational train keys are left out."""
    d = {k: v for k, v in config.items() if k not in ("preset", "data")}
    d["train"] = {k: v for k, v in config.get("train", {}).items() if k not in OPERATIONAL_TRAIN_KEYS}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


SECTIONS = ("model", "jepa", "optim", "train", "data", "export")
# The JEPA fields that select an objective variant (issue 15); at their defaults the objective is v3.
JEPA_VARIANT_KEYS = (
    "jepa_recipe", "jepa_mode", "jepa_horizons", "jepa_nextk_rollout", "jepa_horizon_decay", "jepa_chunk_size",
    "jepa_target", "jepa_target_source", "jepa_target_block", "jepa_target_top_k", "jepa_target_norm",
    "jepa_target_stopgrad", "jepa_loss_fn", "jepa_var_mode", "jepa_var_gamma_scale", "jepa_reg", "jepa_reg_side",
    "jepa_sigreg_weight", "jepa_predictor", "jepa_pred_layers", "jepa_pred_infill", "jepa_lambda_schedule",
)


def jepa_variant_settings(jepa: Mapping[str, Any]) -> dict[str, Any]:
    """The variant fields of a config's jepa section (``Config.to_dict()["jepa"]``) that differ from v3's."""
    v3 = dataclasses.asdict(JepaConfig())
    return {k: jepa[k] for k in JEPA_VARIANT_KEYS if k in jepa and jepa[k] != v3[k]}

CAP_BYTES = 16_000_000  # the challenge's size cap, decimal: code bytes + compressed model bytes (DESIGN section 2)
# Limits that a configuration (and so an artifact's or checkpoint's header) must keep, checked before
# anything is built: a file read from disk must not be able to make the tool allocate without bound.
MAX_PARAMS = 8 * CAP_BYTES  # more parameters than this cannot fit the cap even at 1 bit per weight
MAX_LAYERS = 1024
MAX_MLP_MULT = 64.0
MAX_SEQ_LEN = 1 << 16
MAX_BATCH_TOKENS = 1 << 27  # tokens per step, micro-batch or evaluation batch (256x the v3 batch)
MAX_ROPE_BYTES = 256 << 20  # the RoPE tables, fp32 cos + sin for every layer: L * T * head_dim * 4 bytes
# Train fields that change how a run is executed or kept, not the model it trains: left out of
# Config.hash(), and free to change when a run is resumed.
OPERATIONAL_TRAIN_KEYS = ("device", "compile", "checkpoint_every_steps", "checkpoint_every_seconds",
                          "checkpoint_keep", "skip_nonfinite_steps", "eval_seq_len", "eval_stride")


def _section_classes() -> dict[str, type]:
    hints = get_type_hints(Config)
    return {name: hints[name] for name in SECTIONS}


def field_index() -> dict[str, tuple[str, type]]:
    """Flat field name -> (section, python type)."""
    return dict(_field_index())


@functools.cache
def _field_index() -> dict[str, tuple[str, type]]:
    # Computed once: every key resolution used to repeat get_type_hints over all sections, which made
    # build_config cost ~0.15 s on a loaded 2-core machine.
    index: dict[str, tuple[str, type]] = {}
    for section, cls in _section_classes().items():
        hints = get_type_hints(cls)
        for f in fields(cls):
            assert f.name not in index, f"duplicate config key {f.name}"
            index[f.name] = (section, hints[f.name])
    return index


def check_seq_len(seq_len: int) -> None:
    if not 0 < seq_len <= MAX_SEQ_LEN:
        raise ConfigError(f"train_seq_len={seq_len} must be in 1..{MAX_SEQ_LEN}")


def check_rope_tables(model: ModelConfig, seq_len: int) -> None:
    """Refuse a shape whose RoPE tables (built per block for the longest sequence) would be too large."""
    nbytes = model.num_layers * seq_len * model.head_dim * 4
    if nbytes > MAX_ROPE_BYTES:
        raise ConfigError(
            f"num_layers={model.num_layers} x train_seq_len={seq_len} x head dim {model.head_dim} needs "
            f"{nbytes:,} bytes of RoPE tables, more than {MAX_ROPE_BYTES:,}; lower train_seq_len"
        )


@functools.cache
def _field_types(cls: type) -> dict[str, type]:
    return get_type_hints(cls)


def _check_types(obj: object) -> None:
    """Every field of a config section has its declared type (an int is accepted for a float; a bool is
    not a number here) and every number is finite and fits 64 bits: a config read from a file, or a
    value like ``--set x=1e400`` or ``nan``, is refused here with the field's name."""
    for name, typ in _field_types(type(obj)).items():
        value = getattr(obj, name)
        numeric = typ in (int, float)
        ok = (isinstance(value, typ) if not numeric else
              isinstance(value, int if typ is int else (int, float)) and not isinstance(value, bool))
        if not ok:
            raise ConfigError(f"{name}={value!r}: expected a value of type {typ.__name__}")
        if numeric and not _finite_64(value):
            fits = " that fits 64 bits" if typ is int else ""
            raise ConfigError(f"{name}={value!r} must be a finite number{fits}")


def _finite_64(value: int | float) -> bool:
    if isinstance(value, int):
        return -(1 << 63) <= value < (1 << 63)
    return math.isfinite(value)


def _positive(obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value <= 0:
            raise ConfigError(f"{name}={value} must be > 0")


def _parse(key: str, raw: Any, typ: type) -> Any:
    if not isinstance(raw, str):
        return typ(raw)
    text = raw.strip()
    try:
        if typ is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if typ is int:
            if "e" not in text.lower():
                return int(text.replace("_", ""))
            number = float(text)
            if not number.is_integer():  # also false for inf and nan
                raise ValueError(text)
            return int(number)
        if typ is float:
            return float(text)
        return text
    except ValueError:
        raise ConfigError(f"{key}={raw!r}: expected a value of type {typ.__name__}") from None


def resolve_key(key: str) -> tuple[str, str]:
    """Map 'num_layers', 'model.num_layers' or 'NUM_LAYERS' to (section, field); suggest on typos."""
    index = field_index()
    name = key.strip().lower()
    if "." in name:
        section, _, name = name.partition(".")
        if section not in SECTIONS:
            raise ConfigError(f"unknown config section {section!r} in {key!r}; sections: {', '.join(SECTIONS)}")
    if name not in index:
        close = difflib.get_close_matches(name, list(index), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else "; see `jepagolf train --list-keys`"
        raise ConfigError(f"unknown config key {key!r}{hint}")
    return index[name][0], name


def build_config(
    preset: str = "v3",
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Preset values, then matching environment variables, then explicit overrides; validated."""
    if preset not in PRESETS:
        close = difflib.get_close_matches(preset, list(PRESETS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown preset {preset!r}{hint}; presets: {', '.join(PRESETS)}")
    index = field_index()
    values: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for key, value in PRESETS[preset].items():
        section, name = resolve_key(key)
        values[section][name] = value
    explicit = _apply_settings(values, index, overrides, environ)
    _apply_recipe(values, index, explicit)
    classes = _section_classes()
    return Config(preset=preset, **{s: classes[s](**values[s]) for s in SECTIONS})


def config_from_dict(d: Mapping[str, Any]) -> Config:
    """Rebuild a Config from ``Config.to_dict()`` output (e.g. a run's config.json); anything else
    (not a dict, unknown keys, values of the wrong type or out of range) raises ConfigError."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"a config must be a JSON object, not {type(d).__name__}")
    unknown = set(d) - set(SECTIONS) - {"preset"}
    if unknown:
        raise ConfigError(f"config has unknown sections {sorted(map(str, unknown))}")
    jepa = d.get("jepa", {})
    if isinstance(jepa, Mapping) and jepa and "jepa_mask_frac" not in jepa:
        d = {**d, "jepa": {**jepa, "jepa_mask_frac": 0.0}}  # written before the key existed: the fixed span rule
    sections = {s: section_from_dict(s, d.get(s, {})) for s in SECTIONS}
    return Config(preset=d.get("preset", "custom"), **sections)


MAX_CONFIG_JSON_BYTES = 1 << 20


def read_config_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A run's config.json as stored, after checking that it holds a valid configuration
    (``config_from_dict``); ConfigError naming the file otherwise. Files over 1 MiB are not read."""
    try:
        size = os.path.getsize(path)
        if size > MAX_CONFIG_JSON_BYTES:
            raise ConfigError(f"{path}: {size:,} bytes is too large for a run configuration")
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        config_from_dict(d)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError, ConfigError) as e:
        why = "JSON nested too deeply" if isinstance(e, RecursionError) else str(e).removeprefix(f"{path}: ")
        raise ConfigError(f"{path}: not a valid run configuration ({why})") from None
    return d


def section_from_dict(section: str, d: Any) -> Any:
    """One config section (e.g. ``ModelConfig``) from a dict of its fields, validated; fields left
    out keep their defaults."""
    cls = _section_classes()[section]
    if not isinstance(d, Mapping):
        raise ConfigError(f"config section {section!r} must be a JSON object, not {type(d).__name__}")
    extra = set(d) - {f.name for f in fields(cls)}
    if extra:
        raise ConfigError(f"config section {section!r} has unknown keys {sorted(map(str, extra))}")
    return cls(**d)


def override_config(
    cfg: Config, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """``cfg`` with matching environment variables, then explicit overrides applied; validated."""
    d = cfg.to_dict()
    index = field_index()
    explicit = _apply_settings(d, index, overrides, environ)
    if "jepa_recipe" in explicit and d["jepa"]["jepa_recipe"] != cfg.jepa.jepa_recipe:
        # Only a newly chosen recipe is expanded: cfg already holds its own recipe's values and the keys set
        # explicitly when it was built, which re-expanding would overwrite.
        _apply_recipe(d, index, explicit)
    return config_from_dict(d)


def _apply_recipe(values: dict[str, dict[str, Any]], index: dict[str, tuple[str, type]], explicit: set[str]) -> None:
    """Set the values of the chosen ``jepa_recipe`` that were not set explicitly (those win over the recipe)."""
    name = values["jepa"].get("jepa_recipe", "")
    try:
        recipe = recipe_values(name)
    except KeyError as e:
        raise ConfigError(e.args[0]) from None
    for key, value in recipe.items():
        if key not in explicit:
            values[index[key][0]][key] = value


# Variables of the reference trainer's Hyperparameters (openai/parameter-golf train_gpt.py) whose
# name is not a jepagolf key. Every other one of them is a key of the same name and meaning.
ENV_ALIASES = {"WARMUP_STEPS": "compile_warmup_steps"}
"""Same meaning, another name: steps run before the clock starts, then weights and optimizer
states (and data position) put back."""
REFUSED_ENV = {
    "RUN_ID": "jepagolf names runs by folder: use --out DIR (OUT_DIR=DIR for train_gpt.py)",
    "VAL_BATCH_SIZE": "it is the reference's global evaluation batch; use VAL_BATCH_TOKENS, the tokens per "
                      "evaluation forward on one process (the reference's VAL_BATCH_SIZE / 8)",
    "EMBED_LR": "it is the learning rate of an untied embedding and jepagolf always ties it to the output head; "
                "use TIED_EMBED_LR",
    "HEAD_LR": "it is the learning rate of an untied output head and jepagolf always ties it to the embedding; "
               "use TIED_EMBED_LR",
    "CONTROL_TENSOR_NAME_PATTERNS": "jepagolf routes tensors to optimizers and export formats by shape and name "
                                    "itself; use INT6_MIN_NUMEL / INT5_PATTERNS for the export",
    "INT8_KEEP_FLOAT_FP32_NAME_PATTERNS": "jepagolf routes tensors to export formats itself; use INT6_MIN_NUMEL / "
                                          "INT5_PATTERNS",
}
"""Reference variables with no jepagolf equivalent of the same meaning: refused, never ignored."""


def _reference_env(env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """{field: (variable, raw value)} for the reference's variables that are spelled differently here;
    ConfigError for those jepagolf cannot honour."""
    for var, why in REFUSED_ENV.items():
        if var in env:
            raise ConfigError(f"{var} is not supported: {why}; unset {var}")
    if "TIE_EMBEDDINGS" in env and not _parse("TIE_EMBEDDINGS", env["TIE_EMBEDDINGS"], bool):
        raise ConfigError("TIE_EMBEDDINGS=0 is not supported: jepagolf always ties the embedding and the output "
                          "head (no key unties them); unset TIE_EMBEDDINGS")
    out = {}
    for var, name in ENV_ALIASES.items():
        if var in env:
            if name.upper() in env and env[name.upper()] != env[var]:
                raise ConfigError(f"{var}={env[var]} and {name.upper()}={env[name.upper()]} set the same key "
                                  f"{name}; set only one")
            out[name] = (var, env[var])
    return out


def _apply_settings(
    values: dict[str, dict[str, Any]], index: dict[str, tuple[str, type]],
    overrides: Mapping[str, Any] | None, environ: Mapping[str, str] | None,
) -> set[str]:
    """Set ``values[section][name]`` from matching environment variables (NUM_LAYERS=...) and the
    reference's other spellings (``ENV_ALIASES``), then from explicit overrides, which win; every value
    is parsed to its field's type. The reference's variables jepagolf cannot honour are refused.
    Returns the names set."""
    env = os.environ if environ is None else environ
    aliased = _reference_env(env)
    explicit: set[str] = set()
    for name, (section, typ) in index.items():
        if name.upper() in env:
            values[section][name] = _parse(name.upper(), env[name.upper()], typ)
            explicit.add(name)
        elif name in aliased:
            values[section][name] = _parse(aliased[name][0], aliased[name][1], typ)
            explicit.add(name)
    for key, raw in (overrides or {}).items():
        section, name = resolve_key(key)
        values[section][name] = _parse(key, raw, index[name][1])
        explicit.add(name)
    return explicit


def parse_set_args(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        out[key] = value
    return out


# Presets (DESIGN section 7). Only the differences from the dataclass defaults (= v3) are listed.
# The challenge's naive baseline, as the reference trainer (openai/parameter-golf train_gpt.py) runs it
# end to end: 9 blocks, width 512, relu^2 MLP x2, no JEPA, no bigram; its micro-batch slicing, its
# warmdown rule, its logging and validation cadence; the last weights exported in its int8 + zlib scheme.
BASELINE: dict[str, Any] = {
    "num_layers": 9,
    "mlp_mult": 2.0,
    "mlp_leaky_slope": 0.0,
    "qk_gain_init": 1.5,
    "bigram_buckets": 0,
    "jepa": False,
    "batch_slicing": "reference",
    "warmdown_mode": "reference",
    "val_loss_every": 1000,
    "train_log_every": 200,
    "artifact_ema_decay": 0.0,
    "export_scheme": "int8-zlib",
    "gptq": False,
}
PRESETS: dict[str, dict[str, Any]] = {
    "v3": {
        # Scored as every record since March 2026: sliding windows, stride 64 at seq 1024.
        "eval_stride": 64,
    },
    "baseline": BASELINE,
    # The same training, shipped with jepagolf's export: artifact EMA, GPTQ int5/int6, LZMA.
    "baseline-plus": {**BASELINE, "artifact_ema_decay": 0.9999, "export_scheme": "int6-lzma", "gptq": True},
    "cpu-demo": {
        # Small enough for ~4 minutes of training on 2 CPU cores with JEPA on; step-based schedule
        # so that runs with the same seed are comparable across machines.
        "num_layers": 4,
        "model_dim": 192,
        "num_heads": 4,
        "num_kv_heads": 2,
        "mlp_mult": 3.0,
        "train_seq_len": 256,
        "train_batch_tokens": 4096,
        "micro_batch_tokens": 4096,
        "iterations": 250,
        "warmdown_iters": 80,
        "muon_momentum_warmup_steps": 50,
        "jepa_lambda_warmup_steps": 25,
        "max_wallclock_seconds": 0.0,
        "val_loss_every": 50,
        "val_max_tokens": 65_536,
        "val_batch_tokens": 16_384,
        "train_log_every": 25,
        "artifact_ema_decay": 0.99,
        "int6_min_numel": 4096,
        "device": "cpu",
    },
    "smoke": {
        # Tiny: exercises every code path (U-Net skips, GQA, bigram, JEPA, accumulation, export).
        "num_layers": 3,
        "model_dim": 64,
        "num_heads": 4,
        "num_kv_heads": 2,
        "mlp_mult": 2.0,
        "bigram_buckets": 256,
        "jepa_pred_hidden": 32,
        "jepa_lambda_warmup_steps": 4,
        "train_seq_len": 64,
        "train_batch_tokens": 1024,
        "micro_batch_tokens": 512,
        "iterations": 12,
        "warmdown_iters": 4,
        "muon_momentum_warmup_steps": 4,
        "max_wallclock_seconds": 0.0,
        "val_loss_every": 6,
        "val_max_tokens": 8192,
        "val_batch_tokens": 4096,
        "train_log_every": 3,
        "artifact_ema_decay": 0.9,
        "int6_min_numel": 1024,
        "gptq_calib_tokens": 8192,
        "device": "cpu",
    },
}
