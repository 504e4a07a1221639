"""Collapse diagnostics for the JEPA objective, computed on diagnostic steps only.

Representation side (masked positions): per-feature std, effective rank and cosine of predictions
and targets. A collapsing JEPA shows falling std and rank on the predictor side, and a cosine that
rises to 1 while the rank falls (everything maps to one direction).

Gradient side: how much of the shared weights' (the GPT's) gradient comes from the JEPA term. Both
terms' gradients are taken separately with ``torch.autograd.grad`` on the retained graph, before the
ordinary backward. ``autograd.grad`` returns gradients instead of accumulating them into ``.grad``,
so it neither disturbs the training gradients nor fires DDP's reduction hooks: under DDP the figures
are this process's own, which is enough for a diagnostic.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepagolf.jepa.losses import effective_rank, feature_std


@torch.no_grad()
def representation_diagnostics(pred: Tensor, target: Tensor) -> dict[str, Tensor]:
    """pred, target (N, D) at masked positions -> scalar tensors (detached, fp32)."""
    pred, target = pred.detach().float(), target.detach().float()
    return {
        "pred_std_min": feature_std(pred).min(),
        "target_std_min": feature_std(target).min(),
        "pred_erank": effective_rank(pred),
        "target_erank": effective_rank(target),
        "pred_target_cos": F.cosine_similarity(pred, target, dim=-1).mean(),
    }


def _flat_norm(grads: list[Tensor]) -> float:
    return float(torch.stack([g.float().norm() for g in grads]).norm())


def gradient_share(ce: Tensor, jepa_term: Tensor, params: list[nn.Parameter]) -> dict[str, float]:
    """Split the gradient of ``ce + jepa_term`` w.r.t. ``params`` into its two parts.

    ``jepa_term`` is the weighted term, lambda * jepa, as it enters the loss. Returns the two norms,
    ``jepa_grad_share`` = |g_jepa| / (|g_ce| + |g_jepa|) in [0, 1] (0.5: equal pull), and the cosine
    between the two gradients (negative: the terms pull the shared weights apart). Both graphs are
    retained for the ordinary backward that follows.
    """
    params = [p for p in params if p.requires_grad]
    g_ce = torch.autograd.grad(ce, params, retain_graph=True, allow_unused=True)
    g_j = torch.autograd.grad(jepa_term, params, retain_graph=True, allow_unused=True)
    # A parameter outside one term's graph gets None: its gradient from that term is zero.
    g_ce = [torch.zeros_like(p) if g is None else g for g, p in zip(g_ce, params, strict=True)]
    g_j = [torch.zeros_like(p) if g is None else g for g, p in zip(g_j, params, strict=True)]
    n_ce, n_j = _flat_norm(g_ce), _flat_norm(g_j)
    dot = float(torch.stack([(a.float() * b.float()).sum() for a, b in zip(g_ce, g_j, strict=True)]).sum())
    denom = n_ce + n_j
    return {
        "ce_grad_norm": n_ce,
        "jepa_grad_norm": n_j,
        "jepa_grad_share": n_j / denom if denom > 0 else math.nan,
        "grad_cos_ce_jepa": dot / (n_ce * n_j) if n_ce > 0 and n_j > 0 else math.nan,
    }
