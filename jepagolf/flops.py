"""Analytic FLOP counts per trained token, for MFU and for FLOP-matched ablations.

Conventions: a matmul of (m x k) by (k x n) is 2mkn FLOPs; backward costs twice the forward.
Causal attention scores and values cost 2 * 2 * T * hd per head per token with the full square
counted (what a dense SDPA kernel computes), halved for the causal triangle. Elementwise work
(norms, activations, RoPE, softmax) is left out, as is customary for MFU.
"""

from __future__ import annotations

from dataclasses import dataclass

from jepagolf.config import Config
from jepagolf.jepa.masking import jepa_rows, span_bounds


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
        return 3 * self.body_fwd + target + 3 * self.predictor_fwd * self.mask_frac

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


def flops_per_token(cfg: Config) -> FlopBreakdown:
    m, T, j = cfg.model, cfg.train.train_seq_len, cfg.jepa
    D, hd = m.model_dim, m.head_dim
    kv = m.num_kv_heads * hd
    attn_proj = 2 * D * (D + 2 * kv + D)  # q, k, v, out projections
    attn_core = 2 * 2 * T * D / 2  # QK^T and AV over the causal half, all heads
    mlp = 2 * 2 * D * m.mlp_hidden
    body = m.num_layers * (attn_proj + attn_core + mlp)
    head = 2 * D * m.vocab_size
    pred = 2 * 2 * D * j.jepa_pred_hidden
    frac = expected_mask_fraction(cfg) if j.active else 0.0
    rows = cfg.train.micro_batch_tokens // T
    return FlopBreakdown(
        body_fwd=body, head_fwd=head, predictor_fwd=pred, mask_frac=frac, attention_fwd=m.num_layers * attn_core,
        row_fraction=jepa_rows(rows, j.jepa_batch_fraction) / rows, every=j.jepa_every,
        target_pass=j.jepa_target == "ema",
    )


def train_flops_per_token(cfg: Config) -> float:
    """Training FLOPs per token of the configured objective."""
    f = flops_per_token(cfg)
    return f.jepa_step if cfg.jepa.active else f.ce_step
