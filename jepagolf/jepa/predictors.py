"""JEPA predictors: the per-position residual MLP of v3, a small attention predictor, and NextLat's
token-conditioned transition.

All map context states (..., D) to predictions of the same shape and start as the identity (their output
projection is zero-initialised), so the first JEPA step predicts the context state itself. Their weights
train on JEPA's gradient only and never ship in the artifact.

The MLP predictors' activation is relu^2 (v3) or, with ``jepa_pred_leaky_slope`` s > 0, leaky_relu(h, s)^2:
a unit whose pre-activation is negative on every row still passes gradient (s^2 of the positive side's
slope), so the predictor cannot die into the identity (issue 19: v3's predictor outputs its input from step
~1,000-3,000 of long runs; see ``dead_fraction``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepagolf.config import Config
from jepagolf.model.gpt import LeakyReluSquare, Rotary, rms_norm


def squared_activation(h: Tensor, slope: float) -> Tensor:
    """relu(h)^2 (slope 0, v3's exact operations) or leaky_relu(h, slope)^2."""
    return F.relu(h).square() if slope == 0 else LeakyReluSquare.apply(h, slope)


class Predictor(nn.Module):
    """Per-position residual MLP: z + W2(act(W1 rmsnorm(z))), act = relu^2 (v3) or leaky relu^2, W2
    zero-initialised.

    The square sits on the activation, as in the model's MLP. Squaring the output of a zero-initialised
    W2 instead would give W2 a zero gradient forever: a frozen predictor, the bug of JEPA v2.
    """

    def __init__(self, dim: int, hidden: int, slope: float = 0.0) -> None:
        super().__init__()
        self.slope = slope
        self.fc = nn.Linear(dim, hidden, bias=False)
        self.proj = nn.Linear(hidden, dim, bias=False)
        nn.init.zeros_(self.proj.weight)

    def hidden(self, z: Tensor) -> Tensor:
        """z (..., D) -> (..., hidden): the activations W2 reads."""
        return squared_activation(self.fc(rms_norm(z)), self.slope)

    def forward(self, z: Tensor) -> Tensor:
        return z + self.proj(self.hidden(z))


class NextLatPredictor(nn.Module):
    """NextLat's latent transition (Teoh et al., "Next-Latent Prediction Transformers Learn Compact World
    Models", Microsoft Research, arXiv 2511.05963, written from its description): the state at t and the
    embedding of token t+1 -> the state at t+1, as a residual MLP on both,

        h + W2(act(W_h rmsnorm(h) + W_e rmsnorm(e))),   W2 zero-initialised,

    which is an MLP on the concatenation [rmsnorm(h); rmsnorm(e)] with its first matrix kept as two blocks,
    so that a rollout can project the tokens once. Untrained, it returns h: the identity reference.
    """

    def __init__(self, dim: int, hidden: int, slope: float = 0.0) -> None:
        super().__init__()
        self.slope = slope
        self.fc = nn.Linear(dim, hidden, bias=False)  # W_h: the state's half of the first layer
        self.fc_token = nn.Linear(dim, hidden, bias=False)  # W_e: the token embedding's half
        self.proj = nn.Linear(hidden, dim, bias=False)
        nn.init.zeros_(self.proj.weight)

    def token_input(self, emb: Tensor) -> Tensor:
        """emb (..., D) token embeddings -> (..., hidden), the tokens' share of the first layer."""
        return self.fc_token(rms_norm(emb))

    def hidden(self, h: Tensor, token_in: Tensor) -> Tensor:
        """h (..., D), token_in (..., hidden) from ``token_input`` -> the activations W2 reads."""
        return squared_activation(self.fc(rms_norm(h)) + token_in, self.slope)

    def forward(self, h: Tensor, token_in: Tensor) -> Tensor:
        return h + self.proj(self.hidden(h, token_in))


@torch.no_grad()
def dead_fraction(hidden: Tensor) -> Tensor:
    """hidden (..., W) activations -> the fraction of the W units that are exactly zero on every row: a
    relu^2 unit at zero on the whole batch passes no gradient to W1 or W2 (it is dead on this batch), and with
    every unit dead the residual predictor outputs its input."""
    return (hidden.detach().reshape(-1, hidden.size(-1)) == 0).all(0).float().mean()


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
    if j.jepa_mode == "nextlat":
        return NextLatPredictor(D, j.jepa_pred_hidden, j.jepa_pred_leaky_slope)
    if j.jepa_predictor == "mlp":
        return Predictor(D, j.jepa_pred_hidden, j.jepa_pred_leaky_slope)
    return AttnPredictor(D, j.jepa_pred_hidden, j.jepa_pred_heads, j.jepa_pred_layers, cfg.train.train_seq_len,
                         cfg.model.rope_base, causal=not j.jepa_pred_infill)
