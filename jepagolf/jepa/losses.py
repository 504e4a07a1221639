"""JEPA losses: latent regression plus VICReg variance and covariance (pure tensor functions)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

VAR_EPS = 1e-4


def feature_std(z: Tensor) -> Tensor:
    """z (N, D) -> (D,) per-feature std, sqrt(var + eps) as in VICReg."""
    return torch.sqrt(z.var(dim=0) + VAR_EPS)


def vicreg_variance(z: Tensor) -> Tensor:
    """z (N, D) -> scalar: mean over features of relu(1 - std_d) (hinge on per-feature std)."""
    return F.relu(1.0 - feature_std(z)).mean()


def vicreg_covariance(z: Tensor) -> Tensor:
    """z (N, D) -> scalar: sum of squared off-diagonal covariance entries / D."""
    n, d = z.shape
    zc = z - z.mean(dim=0)
    cov = (zc.T @ zc) / max(n - 1, 1)  # (D, D)
    off = cov - torch.diag_embed(torch.diagonal(cov))
    return off.square().sum() / d


def effective_rank(z: Tensor) -> Tensor:
    """exp(entropy of the normalised singular values) of the centred z (N, D): 1 = collapsed."""
    z = z.float()
    finite = torch.isfinite(z).all()
    # A diverged step (NaN/inf) must reach the divergence guard, not crash the SVD: rank NaN instead.
    z = torch.where(finite, z, torch.zeros_like(z))
    s = torch.linalg.svdvals(z - z.mean(dim=0))
    p = s / s.sum().clamp_min(1e-12)
    erank = torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())
    return torch.where(finite, erank, torch.full_like(erank, float("nan")))


def jepa_loss(
    pred: Tensor, target: Tensor, var_weight: float, cov_weight: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """pred, target (N, D) at masked positions -> (mse + var_w*var + cov_w*cov, diagnostics).

    The VICReg terms act on the predictor side only; the target side's are computed for logging
    under no_grad and never back-propagated. Everything is computed in fp32.
    """
    # Autocast off: under CUDA's bf16 autocast the covariance's matmul would otherwise run in bf16.
    with torch.autocast(pred.device.type, enabled=False):
        return _jepa_loss_fp32(pred.float(), target.float().detach(), var_weight, cov_weight)


def _jepa_loss_fp32(pred: Tensor, target: Tensor, var_weight: float, cov_weight: float) -> tuple[Tensor, dict]:
    mse = F.mse_loss(pred, target)
    var = vicreg_variance(pred)
    cov = vicreg_covariance(pred)
    loss = mse + var_weight * var + cov_weight * cov
    with torch.no_grad():
        stats = {
            "jepa_loss": loss.detach(),
            "jepa_mse": mse.detach(),
            "jepa_var": var.detach(),
            "jepa_cov": cov.detach(),
            "target_var": vicreg_variance(target),
            "target_cov": vicreg_covariance(target),
            "pred_std": feature_std(pred.detach()).mean(),
            "target_std": feature_std(target).mean(),
        }
    return loss, stats
