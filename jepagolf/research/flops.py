"""Analytic FLOP counts per trained token, for MFU and for FLOP-matched ablations.

Conventions: a matmul of (m x k) by (k x n) is 2mkn FLOPs; backward costs twice the forward.
Causal attention scores and values cost 2 * 2 * T * hd per head per token with the full square
counted (what a dense SDPA kernel computes), halved for the causal triangle. Elementwise work
(norms, activations, RoPE, softmax) is left out, as is customary for MFU.
"""

from __future__ import annotations

from dataclasses import dataclass

from jepagolf.config import Config, span_bounds
from jepagolf.jepa.masking import jepa_rows


@dataclass(frozen=True)
class FlopBreakdown:
    body_fwd: float  # blocks (matmuls + attention) per token, forward
    head_fwd: float  # tied output head per token, forward
    predictor_fwd: float  # JEPA predictor per masked token, forward
    mask_frac: float  # expected fraction of masked positions
    attention_fwd: float = 0.0  # the attention kernels' share of body_fwd (scores and values, all layers)
    row_fraction: float = 1.0  # share of the micro-batch rows in the JEPA passes (jepa_batch_fraction)
    every: int = 1  # JEPA passes on one optimizer step in `every` (jepa_every)
    target_pass: bool = True  # an EMA target forward runs (jepa_target=ema); online targets cost nothing
    context_pass: bool = True  # a masked context pass runs (jepa_mode=span); nextk/chunk reuse the CE pass
    pred_per_token: float | None = None  # predictor evaluations per trained token (None: mask_frac, as in v3)

    @property
    def ce_step(self) -> float:
        """Plain CE training: forward + backward of body and head."""
        return 3 * (self.body_fwd + self.head_fwd)

    @property
    def jepa_extra(self) -> float:
        """What JEPA adds per trained token on a JEPA step, all rows in: masked context pass (fwd+bwd,
        no head), EMA target pass (fwd, no head) when there is one, predictor fwd+bwd on masked positions.
        One batched forward (jepa_batched) changes the kernels, not the count."""
        target = self.body_fwd if self.target_pass else 0.0
        context = 3 * self.body_fwd if self.context_pass else 0.0
        per_token = self.mask_frac if self.pred_per_token is None else self.pred_per_token
        return context + target + 3 * self.predictor_fwd * per_token

    @property
    def jepa_step(self) -> float:
        """JEPA training per token, averaged over steps: CE + the JEPA passes on a row_fraction of the rows
        every `every` steps. With the v3 defaults: CE + context fwd+bwd + target fwd + predictor."""
        return self.ce_step + self.jepa_extra * self.row_fraction / self.every


def expected_mask_fraction(cfg: Config) -> float:
    """E[masked tokens]/T for the clamped geometric span lengths."""
    j, T = cfg.jepa, cfg.train.train_seq_len
    n, p, lo = j.span_plan(T)
    lo, hi = span_bounds(T, n, lo)
    if p >= 1.0:
        return min(1.0, n * lo / T)
    pmf = lambda k: (1 - p) ** (k - 1) * p
    mean = lo * sum(pmf(k) for k in range(1, lo)) + sum(k * pmf(k) for k in range(lo, hi)) + hi * (1 - p) ** (hi - 1)
    return min(1.0, n * mean / T)


def mask_setting(cfg: Config) -> str:
    """One line that says which span masks a run used, to print beside its results."""
    j, T = cfg.jepa, cfg.train.train_seq_len
    n, p, lo = j.span_plan(T)
    hi = span_bounds(T, n, lo)[1]
    rule = f"jepa_mask_frac={j.jepa_mask_frac:g}" if j.jepa_mask_frac else "fixed span rule, jepa_mask_frac=0"
    rows = "one mask per row" if j.jepa_span_per_sequence else "one mask shared by the micro-batch"
    return (f"{n} spans of Geometric({p:.4g}) clamped to [{lo}, {hi}] at T={T}, {expected_mask_fraction(cfg):.1%} "
            f"masked expected ({rule}; {rows})")


def flops_per_token(cfg: Config, seq_len: int = 0) -> FlopBreakdown:
    """Per-token FLOPs at the training length, or at ``seq_len`` (attention grows with it)."""
    m, T, j = cfg.model, seq_len or cfg.train.train_seq_len, cfg.jepa
    D, hd = m.model_dim, m.head_dim
    kv = m.num_kv_heads * hd
    attn_proj = 2 * D * (D + 2 * kv + D)  # q, k, v, out projections
    attn_core = 2 * 2 * T * D / 2  # QK^T and AV over the causal half, all heads
    mlp = 2 * 2 * D * m.mlp_hidden
    body = m.num_layers * (attn_proj + attn_core + mlp)
    head = 2 * D * m.vocab_size
    frac = expected_mask_fraction(cfg) if j.active and j.jepa_mode == "span" else 0.0
    pred, per_token = predictor_flops(cfg), None
    if j.jepa_mode in ("nextk", "nextlat"):
        per_token = float(j.jepa_horizons)  # every position, once per horizon (heads or rollout steps)
    elif j.jepa_mode == "chunk":
        per_token = 1.0 / j.jepa_chunk_size
    elif j.jepa_predictor == "attn":
        per_token = 1.0  # the attention predictor runs over every context state, not only the masked ones
    rows = cfg.train.micro_batch_tokens // T
    return FlopBreakdown(
        body_fwd=body, head_fwd=head, predictor_fwd=pred, mask_frac=frac, attention_fwd=m.num_layers * attn_core,
        row_fraction=jepa_rows(rows, j.jepa_batch_fraction) / rows, every=j.jepa_every,
        target_pass=j.jepa_target == "ema", context_pass=j.jepa_mode == "span", pred_per_token=per_token,
    )


def predictor_flops(cfg: Config) -> float:
    """Forward FLOPs of one predictor evaluation (one position)."""
    j, D, W = cfg.jepa, cfg.model.model_dim, cfg.jepa.jepa_pred_hidden
    if j.jepa_mode == "nextlat":
        # the state's and the token's first-layer halves and W2; the token half runs once per position, not
        # per rollout step, which this counts as per step (an upper bound for k > 1). With the KL term, the
        # tied head on the predicted state (fwd + bwd counted by the caller's 3x) and on the true state
        # (forward only, counted here as a third of a forward so that 3x gives one forward).
        # jepa_nextlat_kl_grad=transition runs the transition once more, from detached inputs, for the KL.
        kl = 2 * D * cfg.model.vocab_size * (1 + 1 / 3) if j.jepa_nextlat_kl_weight else 0.0
        again = 3 * 2 * D * W if j.jepa_nextlat_kl_grad == "transition" else 0.0
        return 3 * 2 * D * W + kl + again
    if j.jepa_predictor == "mlp":
        return 2 * 2 * D * W
    T = cfg.train.train_seq_len // (j.jepa_chunk_size if j.jepa_mode == "chunk" else 1)
    core = 2 * 2 * T * W / (1 if j.jepa_pred_infill else 2)  # scores and values (causal: half)
    block = 2 * W * 3 * W + 2 * W * W + 2 * 2 * W * 2 * W + core  # qkv, out, MLP (x2), attention
    return 2 * 2 * D * W + j.jepa_pred_layers * block


def train_flops_per_token(cfg: Config) -> float:
    """Training FLOPs per token of the configured objective."""
    f = flops_per_token(cfg)
    return f.jepa_step if cfg.jepa.active else f.ce_step


def eval_flops(cfg: Config, targets: int, seq_len: int, stride: int = 0) -> float:
    """Forward FLOPs of evaluating ``targets`` scored tokens (a multiple of seq_len) by windows of
    ``seq_len`` advanced by ``stride`` (0: non-overlapping): every window runs the body over all its
    positions, the output head only on the positions it scores (as ``jepagolf.model.eval`` does)."""
    stride = stride or seq_len
    windows = 1 + -(-(targets - seq_len) // stride)  # the first window, then one per stride (the last may be short)
    f = flops_per_token(cfg, seq_len)
    return windows * seq_len * f.body_fwd + targets * f.head_fwd
