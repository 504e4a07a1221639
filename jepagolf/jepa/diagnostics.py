"""Collapse diagnostics for the JEPA objective, computed on diagnostic steps only.

Representation side (masked positions): per-feature std, effective rank and cosine of predictions
and targets. A collapsing JEPA shows falling std and rank on the predictor side, and a cosine that
rises to 1 while the rank falls (everything maps to one direction).

Inert or useful: the explained variance (R^2) of the targets by the predictions, beside two
references, a constant predictor (the mean of the other rows' targets) and the identity predictor (the
context state at the masked position itself, the predictor skipped); and each term's share of the JEPA
loss. A predictor whose R^2 is no better than the identity's adds nothing; one at the constant's has
learnt only where the targets sit.

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


def explained_variance(pred: Tensor, target: Tensor) -> Tensor:
    """R^2 of target (N, D) by pred (N, D), features pooled: 1 - sum((t - p)^2) / sum((t - mean_t)^2),
    mean_t the per-feature mean over the N rows. 1: perfect; 0: no better than the targets' own mean;
    negative: worse. NaN when the targets do not vary at all."""
    pred, target = pred.detach().float(), target.detach().float()
    resid = (target - pred).square().sum()
    spread = (target - target.mean(dim=0)).square().sum()
    return torch.where(spread > 0, 1.0 - resid / spread, torch.full_like(spread, math.nan))


def other_rows_mean(target: Tensor, rows: Tensor) -> Tensor:
    """The constant predictor's predictions (N, D): each masked position gets the mean target of the
    other half of the micro-batch's rows (rows of the other parity), so that its R^2 is measured out of
    sample (the batch's own mean scores 0 by construction). With a single row, the halves are the
    positions of even and odd index. ``rows`` (N,) is each position's row."""
    fold = rows % 2 if bool((rows != rows[0]).any()) else torch.arange(rows.numel(), device=rows.device) % 2
    target = target.detach().float()
    out = torch.empty_like(target)
    for f in (0, 1):
        here = fold == f
        other = target[~here]
        out[here] = (other if other.numel() else target).mean(dim=0)
    return out


def term_shares(stats: dict[str, Tensor], var_weight: float, cov_weight: float) -> dict[str, Tensor]:
    """Each term's share of the JEPA loss: mse, var_weight*var and cov_weight*cov over their sum."""
    parts = {"mse": stats["jepa_mse"], "var": var_weight * stats["jepa_var"], "cov": cov_weight * stats["jepa_cov"]}
    total = sum(parts.values())
    return {f"jepa_share_{k}": v / total for k, v in parts.items()}


@torch.no_grad()
def predictiveness(pred: Tensor, target: Tensor, context: Tensor, rows: Tensor) -> dict[str, Tensor]:
    """R^2 of the targets by the predictions (``r2_pred``), by the constant predictor (``r2_const``,
    ``other_rows_mean``) and by the identity predictor (``r2_identity``: ``context``, the context pass's
    state at each masked position, which is the predictor's input). All (N, D); rows (N,)."""
    return {
        "r2_pred": explained_variance(pred, target),
        "r2_const": explained_variance(other_rows_mean(target, rows), target),
        "r2_identity": explained_variance(context, target),
    }


def block_of(name: str) -> str:
    """The group a GPT parameter's gradient share is reported under: ``block{i}`` for blocks.i.*,
    ``embed`` for the token and bigram embeddings, ``other`` for the rest (skip weights)."""
    parts = name.split(".")
    if parts[0] == "blocks":
        return f"block{parts[1]}"
    return "embed" if parts[0] in ("tok_emb", "bigram") else "other"


def share_group_order(key: str) -> tuple[int, int, str]:
    """Sort key of ``jepa_grad_share_<group>`` names: embed, block0, block1, ..., block10, other."""
    g = key.removeprefix("jepa_grad_share_")
    if g.startswith("block") and g[5:].isdigit():
        return (1, int(g[5:]), g)
    return (0 if g == "embed" else 2, 0, g)


def _flat_norm(grads: list[Tensor]) -> float:
    return float(torch.stack([g.float().norm() for g in grads]).norm())


def gradient_share(
    ce: Tensor, jepa_term: Tensor, params: list[nn.Parameter], names: list[str] | None = None
) -> dict[str, float]:
    """Split the gradient of ``ce + jepa_term`` w.r.t. ``params`` into its two parts.

    ``jepa_term`` is the weighted term, lambda * jepa, as it enters the loss. Returns the two norms,
    ``jepa_grad_share`` = |g_jepa| / (|g_ce| + |g_jepa|) in [0, 1] (0.5: equal pull), and the cosine
    between the two gradients (negative: the terms pull the shared weights apart). With ``names`` (the
    parameters' GPT names) also the same share per group of ``block_of``: ``jepa_grad_share_block0``,
    ..., ``jepa_grad_share_embed``. Both graphs are retained for the ordinary backward that follows.
    """
    if names is not None:
        names = [n for n, p in zip(names, params, strict=True) if p.requires_grad]
    params = [p for p in params if p.requires_grad]
    g_ce = torch.autograd.grad(ce, params, retain_graph=True, allow_unused=True)
    g_j = torch.autograd.grad(jepa_term, params, retain_graph=True, allow_unused=True)
    # A parameter outside one term's graph gets None: its gradient from that term is zero.
    g_ce = [torch.zeros_like(p) if g is None else g for g, p in zip(g_ce, params, strict=True)]
    g_j = [torch.zeros_like(p) if g is None else g for g, p in zip(g_j, params, strict=True)]
    n_ce, n_j = _flat_norm(g_ce), _flat_norm(g_j)
    dot = float(torch.stack([(a.float() * b.float()).sum() for a, b in zip(g_ce, g_j, strict=True)]).sum())
    out = {
        "ce_grad_norm": n_ce,
        "jepa_grad_norm": n_j,
        "jepa_grad_share": _share(n_ce, n_j),
        "grad_cos_ce_jepa": dot / (n_ce * n_j) if n_ce > 0 and n_j > 0 else math.nan,
    }
    for group in dict.fromkeys(block_of(n) for n in names or []):
        picked = [i for i, n in enumerate(names) if block_of(n) == group]
        out[f"jepa_grad_share_{group}"] = _share(_flat_norm([g_ce[i] for i in picked]),
                                                 _flat_norm([g_j[i] for i in picked]))
    return out


def _share(n_ce: float, n_j: float) -> float:
    return n_j / (n_ce + n_j) if n_ce + n_j > 0 else math.nan
