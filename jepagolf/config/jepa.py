"""The JEPA section (``JepaConfig``) and the keys that select an objective variant."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jepagolf.config.bounds import ConfigError, _check_types, _fraction, _positive
from jepagolf.config.spans import SpanPlan, span_plan
from jepagolf.recipes import recipe_values


@dataclass
class JepaConfig:
    jepa: bool = True
    """Enable the span-masked JEPA auxiliary objective."""
    jepa_lambda: float = 0.12
    """Weight of the JEPA loss in ce + lambda*jepa (0 runs the plain-CE path)."""
    jepa_lambda_warmup_steps: int = 100
    """Lambda rises linearly from 0 to jepa_lambda over this many steps."""
    jepa_lambda_warmup_frac: float = 0.02
    """With schedule_scale=run: the lambda ramp's length as a fraction of the run (v3: ~100 of ~4,600 steps)."""
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
    """A named recipe (jepagolf/recipes.py: v3, v3-fix, v2-nextk, chunk-latent, multi-horizon, attn-predictor,
    sigreg, grid-l0.001, grid-l0.2, nextlat, nextlat-kl) whose values apply on top of the preset; keys set
    explicitly win over it."""
    jepa_mode: str = "span"
    """span: masked spans predicted from a masked context pass (v3) | nextk: no masking, from position t of the CE
    pass predict the targets at t+1..t+jepa_horizons | chunk: no masking, chunk c's mean-pooled target latent
    predicted from chunk c-1's pooled context latent (a learned start vector for c = 0) | nextlat: no masking,
    the CE pass's state at t and the embedding of token t+1 predict its state at t+1 (NextLat: a token-conditioned
    transition; with jepa_horizons = k > 1 rolled out to t+k on tokens t+1..t+k)."""
    jepa_horizons: int = 1
    """nextk: how many future positions each position predicts. nextlat: rollout steps k (the transition applied
    k times to its own output, horizon j's loss weighted jepa_horizon_decay^(j-1))."""
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
    jepa_pred_leaky_slope: float = 0.0
    """MLP predictors' activation: 0 = relu^2 (v3) | s in (0, 1) = leaky_relu(h, s)^2, which keeps gradient in
    units that are negative on every row (v3's predictor dies into the identity in long runs: issue 19)."""
    jepa_pred_optimizer: str = "muon"
    """The predictor's matrices: muon (with the GPT's matrices, v3) | adam (a group of their own, beta/eps as the
    GPT's Adam). Muon moves a matrix a full orthogonalised step even as its gradient vanishes (issue 19)."""
    jepa_pred_lr: float = 0.0
    """The predictor matrices' learning rate (scheduled like every other); 0 = matrix_lr (v3)."""
    jepa_nextlat_kl_weight: float = 0.0
    """nextlat: weight of KL(softmax(head(true state)) || softmax(head(predicted state))) in the JEPA loss, the
    true side and the head's weights detached (0: off). Needs jepa_target_source=final and jepa_target_norm=none
    (the state the head reads)."""
    jepa_nextlat_kl_grad: str = "states"
    """nextlat's KL term: where its gradient goes. states: the transition, and through its input the CE pass's
    states and the token embeddings (the KL asks h(t) for token t+2's distribution through the residual path,
    while CE asks it for t+1's: issue 19's screen) | transition: the transition's weights only (its KL
    predictions recomputed from detached states and embeddings: one more transition forward)."""
    jepa_lambda_schedule: str = "constant"
    """constant: lambda after the warm-up ramp (v3) | warmdown: also multiplied by the LR warmdown factor, so it
    anneals to 0 as the LR does."""

    def __post_init__(self) -> None:
        _check_types(self)
        _positive(self, "jepa_span_min", "jepa_pred_hidden", "jepa_every", "jepa_horizons",
                  "jepa_chunk_size", "jepa_target_top_k", "jepa_sigreg_projections", "jepa_pred_layers",
                  "jepa_pred_heads", "jepa_var_gamma_scale", "jepa_horizon_decay")
        choices = {
            "jepa_mode": ("span", "nextk", "chunk", "nextlat"),
            "jepa_target_source": ("final", "block", "encoder", "top-avg"),
            "jepa_target_norm": ("none", "layernorm", "running"), "jepa_loss_fn": ("mse", "smooth_l1", "cosine"),
            "jepa_var_mode": ("one", "target", "off"), "jepa_reg": ("vicreg", "sigreg"),
            "jepa_reg_side": ("pred", "target", "both"), "jepa_predictor": ("mlp", "attn"),
            "jepa_pred_optimizer": ("muon", "adam"), "jepa_nextlat_kl_grad": ("states", "transition"),
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
        if not 0.0 <= self.jepa_pred_leaky_slope < 1.0:
            raise ConfigError(f"jepa_pred_leaky_slope={self.jepa_pred_leaky_slope} must be in [0, 1) (0: relu^2)")
        if self.jepa_pred_lr < 0:
            raise ConfigError(f"jepa_pred_lr={self.jepa_pred_lr} must be >= 0 (0: matrix_lr)")
        if self.jepa_nextlat_kl_weight < 0:
            raise ConfigError(f"jepa_nextlat_kl_weight={self.jepa_nextlat_kl_weight} must be >= 0 (0: off)")
        if self.jepa_mode == "nextlat" and self.jepa_predictor != "mlp":
            raise ConfigError("jepa_mode=nextlat has its own MLP transition; set jepa_predictor=mlp")
        if self.jepa_nextlat_kl_weight and (self.jepa_mode != "nextlat" or self.jepa_target_source != "final"
                                            or self.jepa_target_norm != "none"):
            raise ConfigError("jepa_nextlat_kl_weight > 0 needs jepa_mode=nextlat, jepa_target_source=final and "
                              "jepa_target_norm=none (the output head reads the final state as it is)")
        if self.jepa_nextlat_kl_grad != "states" and not self.jepa_nextlat_kl_weight:
            raise ConfigError(f"jepa_nextlat_kl_grad={self.jepa_nextlat_kl_grad} routes the KL term's gradient; "
                              "set jepa_nextlat_kl_weight > 0")
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
        _fraction(self, "jepa_lambda_warmup_frac")
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


# The JEPA fields that select an objective variant (issue 15); at their defaults the objective is v3.
JEPA_VARIANT_KEYS = (
    "jepa_recipe", "jepa_mode", "jepa_horizons", "jepa_nextk_rollout", "jepa_horizon_decay", "jepa_chunk_size",
    "jepa_target", "jepa_target_source", "jepa_target_block", "jepa_target_top_k", "jepa_target_norm",
    "jepa_target_stopgrad", "jepa_loss_fn", "jepa_var_mode", "jepa_var_gamma_scale", "jepa_reg", "jepa_reg_side",
    "jepa_sigreg_weight", "jepa_predictor", "jepa_pred_layers", "jepa_pred_infill", "jepa_lambda_schedule",
    "jepa_pred_leaky_slope", "jepa_pred_optimizer", "jepa_pred_lr", "jepa_nextlat_kl_weight",
    "jepa_nextlat_kl_grad",
)
# Keys added after results were committed (issue 19), left out of Config.hash() while at their default: every config
# that does not use them keeps the hash it had, so committed runs stay matched and a ladder still resumes.
HASH_SILENT_DEFAULTS: dict[str, dict[str, Any]] = {
    "jepa": {"jepa_pred_leaky_slope": 0.0, "jepa_pred_optimizer": "muon", "jepa_pred_lr": 0.0,
             "jepa_nextlat_kl_weight": 0.0, "jepa_nextlat_kl_grad": "states"},
}


def jepa_variant_settings(jepa: Mapping[str, Any]) -> dict[str, Any]:
    """The variant fields of a config's jepa section (``Config.to_dict()["jepa"]``) that differ from v3's."""
    v3 = dataclasses.asdict(JepaConfig())
    return {k: jepa[k] for k in JEPA_VARIANT_KEYS if k in jepa and jepa[k] != v3[k]}
