"""Analytic FLOP counts per trained token, for MFU and for FLOP-matched ablations.

Conventions: a matmul of (m x k) by (k x n) is 2mkn FLOPs; backward costs twice the forward.
Causal attention scores and values cost 2 * 2 * T * hd per head per token with the full square
counted (what a dense SDPA kernel computes), halved for the causal triangle. Elementwise work
(norms, activations, RoPE, softmax) is left out, as is customary for MFU.
"""

from __future__ import annotations

from dataclasses import dataclass

from jepagolf.config import Config
from jepagolf.jepa.masking import span_bounds


@dataclass(frozen=True)
class FlopBreakdown:
    body_fwd: float  # blocks (matmuls + attention) per token, forward
    head_fwd: float  # tied output head per token, forward
    predictor_fwd: float  # JEPA predictor per masked token, forward
    mask_frac: float  # expected fraction of masked positions

    @property
    def ce_step(self) -> float:
        """Plain CE training: forward + backward of body and head."""
        return 3 * (self.body_fwd + self.head_fwd)

    @property
    def jepa_step(self) -> float:
        """JEPA v3: CE pass + masked context pass (fwd+bwd, no head) + EMA target pass (fwd, no head)
        + predictor fwd+bwd on the masked positions."""
        return self.ce_step + 3 * self.body_fwd + self.body_fwd + 3 * self.predictor_fwd * self.mask_frac


def expected_mask_fraction(cfg: Config) -> float:
    """E[masked tokens]/T for the clamped geometric span lengths."""
    j, T = cfg.jepa, cfg.train.train_seq_len
    lo, hi = span_bounds(T, j.jepa_num_spans, j.jepa_span_min)
    p = j.jepa_span_p
    pmf = lambda k: (1 - p) ** (k - 1) * p
    mean = lo * sum(pmf(k) for k in range(1, lo)) + sum(k * pmf(k) for k in range(lo, hi)) + hi * (1 - p) ** (hi - 1)
    return min(1.0, j.jepa_num_spans * mean / T)


def flops_per_token(cfg: Config) -> FlopBreakdown:
    m, T = cfg.model, cfg.train.train_seq_len
    D, hd = m.model_dim, m.head_dim
    kv = m.num_kv_heads * hd
    attn_proj = 2 * D * (D + 2 * kv + D)  # q, k, v, out projections
    attn_core = 2 * 2 * T * D / 2  # QK^T and AV over the causal half, all heads
    mlp = 2 * 2 * D * m.mlp_hidden
    body = m.num_layers * (attn_proj + attn_core + mlp)
    head = 2 * D * m.vocab_size
    pred = 2 * 2 * D * cfg.jepa.jepa_pred_hidden
    frac = expected_mask_fraction(cfg) if cfg.jepa.active else 0.0
    return FlopBreakdown(body_fwd=body, head_fwd=head, predictor_fwd=pred, mask_frac=frac)


def train_flops_per_token(cfg: Config) -> float:
    """Training FLOPs per token of the configured objective."""
    f = flops_per_token(cfg)
    return f.jepa_step if cfg.jepa.active else f.ce_step
