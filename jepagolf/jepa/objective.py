"""The trained module: the GPT plus the JEPA-only parts (predictor, mask embedding).

One ``forward`` returns the CE loss, the JEPA loss and the diagnostics, so a DDP wrapper sees a
single graph and reduces every gradient once (defect 4). The EMA target's representation is passed
in: it is computed under no_grad and needs no gradient reduction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepagolf.config import Config
from jepagolf.jepa.losses import jepa_loss
from jepagolf.model.gpt import GPT, rms_norm


class Predictor(nn.Module):
    """Per-position residual MLP: z + W2(relu(W1 rmsnorm(z))^2), W2 zero-initialised.

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


class JepaLM(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.gpt = GPT(cfg.model, cfg.train.train_seq_len)
        self.predictor: Predictor | None = None
        self.mask_emb: nn.Parameter | None = None
        if cfg.jepa.active:
            D = cfg.model.model_dim
            self.predictor = Predictor(D, cfg.jepa.jepa_pred_hidden)
            self.mask_emb = nn.Parameter(torch.zeros(D))

    def forward(
        self,
        idx: Tensor,
        targets: Tensor,
        mask: Tensor | None = None,
        target_z: Tensor | None = None,
        mask_index: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
        """idx, targets (B, T); mask (B, T) bool; target_z (B, T, D) from the EMA target, no grad.

        mask_index (N,) int64, optional: the flat positions of ``mask`` in row-major order
        (``mask.flatten().nonzero()``). The trainer passes it, built on the host, so that gathering
        the masked positions needs no device-to-host sync, which boolean indexing would.

        Returns (ce, jepa or None, detached diagnostics).
        """
        z = self.gpt.encode(idx)  # (B, T, D)
        ce = self.gpt.ce_loss(z, targets)
        stats: dict[str, Tensor] = {"ce_loss": ce.detach()}
        if mask is None:
            return ce, None, stats
        assert self.predictor is not None and target_z is not None
        z_ctx = self.gpt.encode(idx, mask, self.mask_emb)  # (B, T, D)
        if mask_index is None:
            z_masked, tgt_masked = z_ctx[mask], target_z[mask]  # (N, D), N = masked positions
        else:
            z_masked = z_ctx.flatten(0, 1).index_select(0, mask_index)  # (N, D), same rows and order
            tgt_masked = target_z.flatten(0, 1).index_select(0, mask_index)  # (N, D)
        pred = self.predictor(z_masked)  # (N, D)
        jl, jstats = jepa_loss(pred, tgt_masked, self.cfg.jepa.jepa_var_weight, self.cfg.jepa.jepa_cov_weight)
        stats.update(jstats)
        stats["mask_frac"] = mask.float().mean()
        return ce, jl, stats

    def exported_state_dict(self) -> dict[str, Tensor]:
        """Weights needed for evaluation only: the GPT's. Predictor and mask_emb never ship (defect 5)."""
        return {k: v for k, v in self.gpt.state_dict().items()}
