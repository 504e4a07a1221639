"""JEPA predictors: the per-position residual MLP of v3 and a small attention predictor.

Both map context states (..., D) to predictions of the same shape and start as the identity (their output
projection is zero-initialised), so the first JEPA step predicts the context state itself. Their weights
train on JEPA's gradient only and never ship in the artifact.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from jepagolf.config import Config
from jepagolf.model.gpt import LeakyReluSquare, Rotary, rms_norm


class Predictor(nn.Module):
    """Per-position residual MLP: z + W2(relu(W1 rmsnorm(z))^2), W2 zero-initialised (v3).

    The square sits on the activation, as in the model's MLP. Squaring the output of a zero-initialised
    W2 instead would give W2 a zero gradient forever: a frozen predictor, the bug of JEPA v2.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, hidden, bias=False)
        self.proj = nn.Linear(hidden, dim, bias=False)
        nn.init.zeros_(self.proj.weight)

    def forward(self, z: Tensor) -> Tensor:
        return z + self.proj(F.relu(self.fc(rms_norm(z))).square())


class PredictorBlock(nn.Module):
    """Pre-norm transformer block of width W: attention (RoPE on q and k, causal or not) then a relu^2 MLP."""

    def __init__(self, width: int, heads: int, max_len: int, rope_base: float) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, width // heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.attn_out = nn.Linear(width, width, bias=False)
        self.fc = nn.Linear(width, 2 * width, bias=False)
        self.mlp_out = nn.Linear(2 * width, width, bias=False)
        self.rotary = Rotary(self.head_dim, max_len, rope_base)

    def forward(self, h: Tensor, causal: bool) -> Tensor:
        R, T, W = h.shape
        q, k, v = self.qkv(rms_norm(h)).view(R, T, 3, self.heads, self.head_dim).unbind(2)  # (R, T, H, hd) each
        q, k = (self.rotary(rms_norm(a.transpose(1, 2))) for a in (q, k))  # (R, H, T, hd)
        y = F.scaled_dot_product_attention(q, k, v.transpose(1, 2), is_causal=causal)  # (R, H, T, hd)
        h = h + self.attn_out(y.transpose(1, 2).reshape(R, T, W))
        return h + self.mlp_out(LeakyReluSquare.apply(self.fc(rms_norm(h)), 0.0))


class AttnPredictor(nn.Module):
    """z (R, T, D) -> z + out(blocks(in(rmsnorm(z)))): small transformer blocks over every context state.

    ``causal``: position t attends to positions <= t only. Non-causal (``jepa_pred_infill``) lets a masked
    position see the unmasked positions after its span, i.e. infilling. The inputs at masked positions carry
    nothing of the hidden tokens (the context pass saw mask_emb there), so infilling leaks nothing.
    """

    def __init__(self, dim: int, width: int, heads: int, layers: int, max_len: int, rope_base: float,
                 causal: bool) -> None:
        super().__init__()
        self.causal = causal
        self.inp = nn.Linear(dim, width, bias=False)
        self.blocks = nn.ModuleList(PredictorBlock(width, heads, max_len, rope_base) for _ in range(layers))
        self.out = nn.Linear(width, dim, bias=False)
        nn.init.zeros_(self.out.weight)

    def forward(self, z: Tensor) -> Tensor:
        h = self.inp(rms_norm(z))  # (R, T, W)
        for block in self.blocks:
            h = block(h, self.causal)
        return z + self.out(rms_norm(h))


def build_predictor(cfg: Config) -> nn.Module:
    """The configured predictor (``jepa_predictor``), for inputs of width model_dim."""
    j, D = cfg.jepa, cfg.model.model_dim
    if j.jepa_predictor == "mlp":
        return Predictor(D, j.jepa_pred_hidden)
    return AttnPredictor(D, j.jepa_pred_hidden, j.jepa_pred_heads, j.jepa_pred_layers, cfg.train.train_seq_len,
                         cfg.model.rope_base, causal=not j.jepa_pred_infill)
