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
from jepagolf.jepa.diagnostics import predictiveness, representation_diagnostics, term_shares
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
        mask_pos: Tensor | None = None,
        diagnostics: bool = False,
    ) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
        """idx, targets (B, T). JEPA inputs, all None on a plain-CE step:

        mask (r, T) bool for the first r <= B rows (``jepa_batch_fraction``); target_z (r, T, D) from the
        EMA target, no grad, or None with ``jepa_target=online`` (then the CE pass's z[:r], detached);
        mask_pos (N,) int64, the flat indices of mask's True entries. Pass it precomputed on the host:
        deriving it here from the mask is a device-to-host sync on GPUs.

        Returns (ce, jepa or None, detached diagnostics); ``diagnostics`` adds the collapse
        diagnostics (effective ranks, cosine) of the masked positions, which cost an SVD.
        """
        B, T = idx.shape
        if mask is None:
            z = self.gpt.encode(idx)  # (B, T, D)
            ce = self.gpt.ce_loss(z, targets)
            return ce, None, {"ce_loss": ce.detach()}
        assert self.predictor is not None
        r = mask.size(0)
        if self.cfg.jepa.jepa_batched:
            # One pass over B unmasked CE rows and r masked context rows: fewer, larger kernels. Rows are
            # independent, and an all-False mask row embeds exactly as the plain pass does.
            both = torch.cat((idx, idx[:r]))  # (B + r, T)
            both_mask = torch.cat((mask.new_zeros(B, T), mask))  # (B + r, T)
            z_both = self.gpt.encode(both, both_mask, self.mask_emb)  # (B + r, T, D)
            z, z_ctx = z_both[:B], z_both[B:]
        else:
            z = self.gpt.encode(idx)  # (B, T, D)
            z_ctx = self.gpt.encode(idx[:r], mask, self.mask_emb)  # (r, T, D)
        ce = self.gpt.ce_loss(z, targets)
        if target_z is None:
            if self.cfg.jepa.jepa_target != "online":
                raise ValueError("target_z is required unless jepa_target=online")
            target_z = z[:r].detach()  # stop-gradient: the online network's own unmasked view
        if mask_pos is None:
            mask_pos = mask.reshape(-1).nonzero().squeeze(1)  # (N,)
        D = z.size(-1)
        ctx = z_ctx.reshape(r * T, D).index_select(0, mask_pos)  # (N, D)
        pred = self.predictor(ctx)  # (N, D)
        tgt = target_z.reshape(r * T, D).index_select(0, mask_pos)  # (N, D)
        jl, jstats = jepa_loss(pred, tgt, self.cfg.jepa.jepa_var_weight, self.cfg.jepa.jepa_cov_weight)
        stats = {"ce_loss": ce.detach(), **jstats, "mask_frac": mask.float().mean()}
        if diagnostics:
            stats.update(representation_diagnostics(pred, tgt))
            stats.update(predictiveness(pred, tgt, ctx, torch.div(mask_pos, T, rounding_mode="floor")))
            stats.update(term_shares(jstats, self.cfg.jepa.jepa_var_weight, self.cfg.jepa.jepa_cov_weight))
        return ce, jl, stats
