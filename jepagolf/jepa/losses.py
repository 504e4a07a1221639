"""JEPA losses: latent regression plus VICReg variance and covariance (pure tensor functions)."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class LossSpec:
    """The loss variants of ``jepa_loss`` (config fields of the same names); the defaults are v3 as specified."""

    loss_fn: str = "mse"  # mse | smooth_l1 | cosine
    var_mode: str = "one"  # one | target | off
    var_gamma_scale: float = 1.0
    reg: str = "vicreg"  # vicreg | sigreg
    reg_side: str = "pred"  # pred | target | both
    sigreg_weight: float = 0.0
    sigreg_knots: int = 17
    target_grad: bool = False  # targets keep their gradient (jepa_target_stopgrad=false)


V3_LOSS = LossSpec()
SIGREG_T_MAX = 3.0  # the characteristic functions are compared on t in [-3, 3]; exp(-t^2/2) is ~0.01 there
SIGREG_MAX_ROWS = 4096  # rows SIGReg sees at most (every k-th, spread over the batch); cost: rows x dirs x knots


def regression(pred: Tensor, target: Tensor, loss_fn: str) -> Tensor:
    """pred, target (N, D) -> scalar: mse (v3), smooth_l1 (beta 1) or cosine (mean of 1 - cos per row)."""
    if loss_fn == "mse":
        return F.mse_loss(pred, target)
    if loss_fn == "smooth_l1":
        return F.smooth_l1_loss(pred, target)
    if loss_fn == "cosine":
        return (1.0 - F.cosine_similarity(pred, target, dim=-1)).mean()
    raise ValueError(f"unknown loss_fn {loss_fn!r}")


def variance_hinge(z: Tensor, gamma: float | Tensor = 1.0) -> Tensor:
    """z (N, D) -> scalar: mean over features of relu(gamma_d - std_d); gamma a number or (D,)."""
    return F.relu(gamma - feature_std(z)).mean()


def sigreg(z: Tensor, directions: Tensor, knots: int = 17) -> Tensor:
    """Sketched isotropic-Gaussian regulariser (SIGReg) of LeJEPA / LeWorldModel ("LeWorldModel: Stable
    End-to-End Joint-Embedding Predictive Architecture from Pixels", Maes, Le Lidec, Scieur, LeCun, Balestriero,
    2026), written from the published description.

    z (N, D) embeddings, directions (D, M) (normalised here to unit columns) -> scalar. Each 1-D projection
    s = z a_m is compared with N(0, 1) by an Epps-Pulley statistic: the squared distance between its empirical
    characteristic function mean_n exp(i t s_n) and exp(-t^2/2), weighted by exp(-t^2/2) and integrated over
    t in [-3, 3] by the trapezoid rule on ``knots`` points of [0, 3] (the integrand is even). The statistic is
    averaged over the M directions; it is the Epps-Pulley statistic divided by N, so that its weight does not
    depend on how many positions the batch has. 0 iff every projection is standard normal, which for all
    directions means z ~ N(0, I).
    """
    a = directions / directions.norm(dim=0, keepdim=True)  # (D, M) unit directions
    s = z @ a  # (N, M) projections
    t = torch.linspace(0.0, SIGREG_T_MAX, knots, device=z.device, dtype=z.dtype)  # (K,)
    st = s[..., None] * t  # (N, M, K)
    ecf_re, ecf_im = torch.cos(st).mean(0), torch.sin(st).mean(0)  # (M, K) empirical characteristic function
    gauss = torch.exp(-0.5 * t.square())  # (K,) characteristic function of N(0, 1), also the weight
    err = (ecf_re - gauss).square() + ecf_im.square()  # (M, K)
    return (2.0 * torch.trapezoid(err * gauss, t, dim=-1)).mean()


def jepa_loss(
    pred: Tensor, target: Tensor, var_weight: float, cov_weight: float, spec: LossSpec = V3_LOSS,
    directions: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """pred, target (N, D) at the predicted positions -> (regression + regulariser, diagnostics).

    v3 (``spec`` default): mse + var_w*var + cov_w*cov, the VICReg terms on the predictor side only; the
    target side's are computed for logging under no_grad and never back-propagated. ``spec`` selects the
    variants (see ``LossSpec``); SIGReg needs ``directions`` (D, M). Everything is computed in fp32.
    """
    # Autocast off: under CUDA's bf16 autocast the covariance's matmul would otherwise run in bf16.
    with torch.autocast(pred.device.type, enabled=False):
        target = target.float() if spec.target_grad else target.float().detach()
        if spec == V3_LOSS:
            return _jepa_loss_fp32(pred.float(), target, var_weight, cov_weight)
        return _variant_loss_fp32(pred.float(), target, var_weight, cov_weight, spec, directions)


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
            "target_std": feature_std(target.detach()).mean(),
        }
    return loss, stats


def _variant_loss_fp32(pred: Tensor, target: Tensor, var_weight: float, cov_weight: float, spec: LossSpec,
                       directions: Tensor | None) -> tuple[Tensor, dict]:
    regress = regression(pred, target, spec.loss_fn)
    sides = {"pred": [pred], "target": [target], "both": [pred, target]}[spec.reg_side]
    zero = pred.new_zeros(())
    var = cov = sig = zero
    if spec.reg == "vicreg":
        if spec.var_mode != "off":
            gamma = 1.0 if spec.var_mode == "one" else spec.var_gamma_scale * feature_std(target.detach())
            var = sum((variance_hinge(z, gamma) for z in sides), zero)
        if cov_weight:
            cov = sum((vicreg_covariance(z) for z in sides), zero)
        loss = regress + var_weight * var + cov_weight * cov
    else:
        if directions is None:
            raise ValueError("jepa_reg=sigreg needs the projection directions")
        stride = -(-pred.size(0) // SIGREG_MAX_ROWS)  # ceil
        sig = sum((sigreg(z[::stride], directions.to(z), spec.sigreg_knots) for z in sides), zero)
        loss = regress + spec.sigreg_weight * sig
    with torch.no_grad():
        p, t = pred.detach(), target.detach()
        stats = {
            "jepa_loss": loss.detach(),
            "jepa_mse": F.mse_loss(p, t),
            "jepa_var": var.detach(),
            "jepa_cov": cov.detach(),
            "target_var": vicreg_variance(t),
            "target_cov": vicreg_covariance(t),
            "pred_std": feature_std(p).mean(),
            "target_std": feature_std(t).mean(),
        }
        if spec.loss_fn != "mse":
            # Recomputed from the detached inputs (the same op on the same values: the same bits), not
            # regress.detach(): with the training forward compiled (inductor, torch 2.13), that detached alias
            # of a term of the loss made the loss itself come back without a gradient when the loss had a
            # zero-weighted term (NextLat's smooth L1 with cov_weight 0), and the backward failed.
            stats["jepa_regress"] = regression(p, t, spec.loss_fn)
        if spec.reg == "sigreg":
            stats["jepa_sigreg"] = sig.detach()
    return loss, stats
