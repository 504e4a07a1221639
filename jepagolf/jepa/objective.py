"""The trained module: the GPT plus the JEPA-only parts (predictor(s), mask embedding, chunk start vector).

One ``forward`` returns the CE loss, the JEPA loss and the diagnostics, so a DDP wrapper sees a
single graph and reduces every gradient once (defect 4). The EMA target's representation is passed
in: it is computed under no_grad and needs no gradient reduction.

What is predicted from what (``jepa_mode``):

- span (v3): the masked context pass's states at the masked positions -> the targets at those positions;
- nextk: the CE pass's own (unmasked, causal) states at t -> the targets at t+1..t+k (one predictor per
  horizon, or one applied recursively); no extra network pass;
- chunk: the CE pass's states mean-pooled over chunks; chunk c-1's pooled state (a learned start vector for
  chunk 0) -> chunk c's pooled target; no extra network pass;
- nextlat (NextLat, Teoh et al., arXiv 2511.05963): the CE pass's state at t and the GPT's embedding of token
  t+1 -> the state at t+1 (a token-conditioned transition, so the target is determined by its inputs), rolled
  out to t+k on tokens t+1..t+k; no extra network pass; optionally a KL between the output head's distributions
  at the predicted and the true state (``jepa_nextlat_kl_weight``).

Targets (``jepa_target_source``) are the final states or a block's RMS-normalised output (the context state
is then taken from the same block), or data2vec's mean of the top blocks' layer-normed outputs; then
normalised (``jepa_target_norm``).
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jepagolf.config import Config
from jepagolf.jepa.diagnostics import predictiveness, representation_diagnostics, term_shares
from jepagolf.jepa.losses import VAR_EPS, LossSpec, jepa_loss
from jepagolf.jepa.masking import jepa_rows
from jepagolf.jepa.predictors import NextLatPredictor, Predictor, build_predictor, dead_fraction
from jepagolf.model.gpt import GPT, lookup, rms_norm

__all__ = ["JepaLM", "Predictor", "noise_seed", "target_taps"]


def target_taps(cfg: Config) -> tuple[int, ...]:
    """Blocks whose outputs the target (and, for block/encoder sources, the context) is built from."""
    j, L = cfg.jepa, cfg.model.num_layers
    if j.jepa_target_source == "block":
        return (j.jepa_target_block % L,)
    if j.jepa_target_source == "encoder":
        return (L // 2 - 1,)  # the last block that pushes a U-Net skip: the encoder/decoder boundary
    if j.jepa_target_source == "top-avg":
        return tuple(range(L - j.jepa_target_top_k, L))
    return ()


def noise_seed(seed: int, step: int, micro_index: int) -> int:
    """Seed of a micro-batch's SIGReg directions, from (seed, step, global micro-batch index) like the masks."""
    digest = hashlib.blake2b(f"jepa-sigreg:{seed}:{step}:{micro_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def loss_spec(cfg: Config) -> LossSpec:
    j = cfg.jepa
    return LossSpec(loss_fn=j.jepa_loss_fn, var_mode=j.jepa_var_mode, var_gamma_scale=j.jepa_var_gamma_scale,
                    reg=j.jepa_reg, reg_side=j.jepa_reg_side,
                    sigreg_weight=j.jepa_sigreg_weight if j.jepa_reg == "sigreg" else 0.0,
                    sigreg_knots=j.jepa_sigreg_knots, target_grad=not j.jepa_target_stopgrad)


class JepaLM(nn.Module):
    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.gpt = GPT(cfg.model, cfg.train.train_seq_len)
        self.predictor: nn.Module | None = None
        self.mask_emb: nn.Parameter | None = None
        self.chunk_start: nn.Parameter | None = None
        self.taps = target_taps(cfg)
        self.spec = loss_spec(cfg)
        j = cfg.jepa
        if j.active:
            D = cfg.model.model_dim
            heads = j.jepa_horizons if j.jepa_mode == "nextk" and not j.jepa_nextk_rollout else 1
            # One predictor (named `predictor`, as in v3) or one per horizon (`predictor.0`, `predictor.1`, ...).
            self.predictor = build_predictor(cfg) if heads == 1 else nn.ModuleList(build_predictor(cfg)
                                                                                   for _ in range(heads))
            if j.jepa_mode == "span":
                self.mask_emb = nn.Parameter(torch.zeros(D))
            if j.jepa_mode == "chunk":
                self.chunk_start = nn.Parameter(torch.zeros(D))  # stands in for "chunk -1" (causal shift)
            if j.jepa_target_norm == "running":
                # Per-feature running statistics of the targets; JEPA-only state, never exported.
                self.register_buffer("target_mean", torch.zeros(D))
                self.register_buffer("target_var", torch.ones(D))
                self.register_buffer("target_count", torch.zeros((), dtype=torch.long))

    # ----- representations ----------------------------------------------------------------------------
    def _encode(self, encoder: GPT, idx: Tensor, mask: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        if not self.taps:
            return encoder.encode(idx, mask, self.mask_emb if mask is not None else None), []
        return encoder.encode_blocks(idx, self.taps, mask, self.mask_emb if mask is not None else None)

    def _target_view(self, z: Tensor, blocks: list[Tensor]) -> Tensor:
        source = self.cfg.jepa.jepa_target_source
        if source == "final":
            return z
        if source == "top-avg":  # data2vec: each block's output layer-normed (no affine), then averaged
            return torch.stack([F.layer_norm(b, (b.size(-1),)) for b in blocks]).mean(0)
        return rms_norm(blocks[0])

    def _context_view(self, z: Tensor, blocks: list[Tensor]) -> Tensor:
        return rms_norm(blocks[0]) if self.cfg.jepa.jepa_target_source in ("block", "encoder") else z

    @torch.no_grad()
    def target_repr(self, encoder: GPT, idx: Tensor) -> Tensor:
        """idx (r, T) -> (r, T, D): the target pass of ``encoder`` (the EMA copy) before normalisation."""
        return self._target_view(*self._encode(encoder, idx))

    def _normalise(self, t: Tensor) -> Tensor:
        mode, D = self.cfg.jepa.jepa_target_norm, t.size(-1)
        if mode == "none":
            return t
        if mode == "layernorm":  # I-JEPA: layer norm without affine parameters
            return F.layer_norm(t, (D,))
        if self.training:
            with torch.no_grad():
                flat = t.detach().float().reshape(-1, D)
                # The first update takes the batch's statistics as they are (momentum 0), with no host sync.
                m = torch.where(self.target_count > 0, self.cfg.jepa.jepa_target_norm_momentum, 0.0)
                self.target_mean.lerp_(flat.mean(0), 1 - m)
                self.target_var.lerp_(flat.var(0, unbiased=False), 1 - m)
                self.target_count.add_(1)
        return (t - self.target_mean.to(t.dtype)) * torch.rsqrt(self.target_var.to(t.dtype) + VAR_EPS)

    # ----- forward ------------------------------------------------------------------------------------
    def forward(
        self,
        idx: Tensor,
        targets: Tensor,
        mask: Tensor | None = None,
        target_z: Tensor | None = None,
        mask_pos: Tensor | None = None,
        diagnostics: bool = False,
        jepa: bool | None = None,
        sigreg_seed: int = 0,
    ) -> tuple[Tensor, Tensor | None, dict[str, Tensor]]:
        """idx, targets (B, T). JEPA inputs, all None on a plain-CE step:

        mask (r, T) bool for the first r <= B rows (``jepa_batch_fraction``, span mode only); target_z (r, T, D)
        from the EMA target (``target_repr``), no grad, or None with ``jepa_target=online`` (then the CE pass's
        own states); mask_pos (N,) int64, the flat indices of mask's True entries. Pass it precomputed on the
        host: deriving it here from the mask is a device-to-host sync on GPUs. ``jepa``: whether this is a JEPA
        step (default: a mask was given; nextk and chunk modes have no mask and pass True). ``sigreg_seed``
        seeds SIGReg's random directions (``noise_seed``).

        Returns (ce, jepa or None, detached diagnostics); ``diagnostics`` adds the collapse
        diagnostics (effective ranks, cosine) of the predicted positions, which cost an SVD.
        """
        j = self.cfg.jepa
        B, T = idx.shape
        if not (mask is not None if jepa is None else jepa):
            z = self.gpt.encode(idx)  # (B, T, D)
            ce = self.gpt.ce_loss(z, targets)
            return ce, None, {"ce_loss": ce.detach()}
        assert self.predictor is not None
        if j.jepa_mode == "span":
            assert mask is not None
            r = mask.size(0)
            if j.jepa_batched:
                # One pass over B unmasked CE rows and r masked context rows: fewer, larger kernels. Rows are
                # independent, and an all-False mask row embeds exactly as the plain pass does.
                both = torch.cat((idx, idx[:r]))  # (B + r, T)
                both_mask = torch.cat((mask.new_zeros(B, T), mask))  # (B + r, T)
                z_both, b_both = self._encode(self.gpt, both, both_mask)  # (B + r, T, D)
                z, blocks = z_both[:B], [b[:B] for b in b_both]
                ctx = self._context_view(z_both[B:], [b[B:] for b in b_both])
            else:
                z, blocks = self._encode(self.gpt, idx)  # (B, T, D)
                ctx = self._context_view(*self._encode(self.gpt, idx[:r], mask))  # (r, T, D)
        else:
            r = target_z.size(0) if target_z is not None else jepa_rows(B, j.jepa_batch_fraction)
            z, blocks = self._encode(self.gpt, idx)  # (B, T, D): the CE pass is also the context pass
            ctx = self._context_view(z[:r], [b[:r] for b in blocks])  # (r, T, D)
        ce = self.gpt.ce_loss(z, targets)
        if target_z is None:
            if j.jepa_target != "online":
                raise ValueError("target_z is required unless jepa_target=online")
            target_z = self._target_view(z[:r], [b[:r] for b in blocks])  # the online network's unmasked view
            if j.jepa_target_stopgrad:
                target_z = target_z.detach()
        tgt_full = self._normalise(target_z)  # (r, T, D)
        directions = None
        if j.jepa_reg == "sigreg":
            g = torch.Generator().manual_seed(sigreg_seed)
            directions = torch.randn(z.size(-1), j.jepa_sigreg_projections, generator=g).to(z.device)
        tokens = idx[:r] if j.jepa_mode == "nextlat" else None
        pairs = self.prediction_pairs(ctx, tgt_full, mask, mask_pos, tokens)
        jl, jstats = self._loss(pairs, directions)
        if j.jepa_nextlat_kl_weight:
            kl_pairs = pairs
            if j.jepa_nextlat_kl_grad == "transition":  # the KL trains the transition's weights only
                kl_pairs = self.prediction_pairs(ctx.detach(), tgt_full, mask, mask_pos, tokens, frozen_tokens=True)
            kl = self.nextlat_kl(kl_pairs, z[:r].detach())
            jl = jl + j.jepa_nextlat_kl_weight * kl
            jstats.update(jepa_kl=kl.detach(), jepa_loss=jl.detach())
        frac = mask.float().mean() if mask is not None else z.new_zeros((), dtype=torch.float32)
        stats = {"ce_loss": ce.detach(), **jstats, "mask_frac": frac}
        if diagnostics:
            pred0, tgt0, _ = pairs[0]
            stats.update(representation_diagnostics(pred0, tgt0))
            stats.update(term_shares(jstats, j.jepa_var_weight, j.jepa_cov_weight))
            # R^2 against the constant and identity references (issue 15), every mode
            ref, rows = self.reference_inputs(ctx, mask, mask_pos)
            stats.update(predictiveness(pred0, tgt0, ref, rows))
            stats.update(self.predictor_health(pred0, ref, tokens))
        return ce, jl, stats

    @torch.no_grad()
    def predictor_health(self, pred: Tensor, ref: Tensor, tokens: Tensor | None) -> dict[str, Tensor]:
        """Is the predictor alive? (issue 19: v3's dies into the identity in long runs.) ``pred_identity``:
        1.0 when the first predicted set equals the predictor's input bit for bit (``ref``, the identity
        reference of ``reference_inputs``), else 0.0; ``pred_dead_frac`` (MLP predictors): the fraction of
        its hidden units that are zero on every one of those positions (``dead_fraction``). ``tokens`` (r, T):
        nextlat's inputs."""
        out = {"pred_identity": torch.tensor(float(torch.equal(pred, ref)))}
        head = self.predictor[0] if isinstance(self.predictor, nn.ModuleList) else self.predictor
        if isinstance(head, Predictor):
            out["pred_dead_frac"] = dead_fraction(head.hidden(ref))
        elif isinstance(head, NextLatPredictor):
            assert tokens is not None
            tok_in = head.token_input(lookup(self.gpt.tok_emb, tokens[:, 1:]))  # (r, T-1, H): tokens t+1
            out["pred_dead_frac"] = dead_fraction(head.hidden(ref, tok_in.reshape(ref.size(0), -1)))
        return out

    def nextlat_kl(self, pairs: list[tuple[Tensor, Tensor, float]], z: Tensor) -> Tensor:
        """NextLat's optional distribution term: per horizon k, KL(p(. | true final state at t+k) || p(. |
        predicted state)), both through the output head (soft-capped, tied), the true side and the head's weights
        detached so that the term shapes the predicted states, and through them the transition and the
        states it reads, but not the head that CE trains. Weighted over horizons like the latent loss; mean over
        positions. z (r, T, D): the CE pass's final states."""
        r, T, D = z.shape
        w = self.gpt.tok_emb.weight.detach()
        cap = self.cfg.model.logit_softcap

        def log_probs(h: Tensor) -> Tensor:
            logits = F.linear(h, w.to(h.dtype)).float()  # (N, V)
            return F.log_softmax(cap * torch.tanh(logits / cap) if cap else logits, dim=-1)

        total = sum(wk for _, _, wk in pairs)
        kl = z.new_zeros((), dtype=torch.float32)
        for k, (pred, _, wk) in enumerate(pairs, start=1):
            with torch.no_grad():
                true = log_probs(z[:, k:].reshape(-1, D))  # (N, V), the state at t+k
            kl = kl + (wk / total) * F.kl_div(log_probs(pred), true, log_target=True, reduction="batchmean")
        return kl

    def reference_inputs(self, ctx: Tensor, mask: Tensor | None, mask_pos: Tensor | None) -> tuple[Tensor, Tensor]:
        """For the first predicted set of ``prediction_pairs``: what the predictor reads at each predicted
        position (N, D), which the identity reference returns as its prediction, and the row of each (N,).
        span: the context state at the masked position; nextk: the state at t for the target at t+1;
        chunk: chunk c-1's pooled latent (the start vector for c = 0) for chunk c's."""
        j = self.cfg.jepa
        r, T, D = ctx.shape
        rows = torch.arange(r, device=ctx.device)
        if j.jepa_mode == "span":
            assert mask is not None
            pos = mask_pos if mask_pos is not None else mask.reshape(-1).nonzero().squeeze(1)
            return ctx.reshape(-1, D).index_select(0, pos), torch.div(pos, T, rounding_mode="floor")
        if j.jepa_mode == "chunk":
            shifted = self._chunk_inputs(ctx)
            return shifted.reshape(-1, D), rows.repeat_interleave(shifted.size(1))
        return ctx[:, : T - 1].reshape(-1, D), rows.repeat_interleave(T - 1)

    def _chunk_inputs(self, ctx: Tensor) -> Tensor:
        """(r, n, D): chunk c's predictor input, chunk c-1's mean-pooled context latent (a learned start
        vector for c = 0)."""
        r, T, D = ctx.shape
        C = self.cfg.jepa.jepa_chunk_size
        pooled = ctx.view(r, T // C, C, D).mean(2)  # (r, n, D) chunk latents of the context
        assert self.chunk_start is not None
        start = self.chunk_start.to(pooled.dtype).expand(r, 1, D)
        return torch.cat((start, pooled[:, :-1]), dim=1)

    def prediction_pairs(
        self, ctx: Tensor, tgt: Tensor, mask: Tensor | None, mask_pos: Tensor | None,
        tokens: Tensor | None = None, frozen_tokens: bool = False,
    ) -> list[tuple[Tensor, Tensor, float]]:
        """(prediction (N, D), target (N, D), weight) per predicted set: one in span and chunk mode, one per
        horizon in nextk and nextlat mode (weights decay^(j-1)). ``tokens`` (r, T): nextlat's token inputs;
        ``frozen_tokens``: their embeddings detached (no gradient to the embedding table)."""
        j = self.cfg.jepa
        r, T, D = ctx.shape
        if j.jepa_mode == "nextlat":
            assert tokens is not None and isinstance(self.predictor, NextLatPredictor)
            emb = lookup(self.gpt.tok_emb, tokens)
            tok_in = self.predictor.token_input(emb.detach() if frozen_tokens else emb)  # (r, T, H), once per step
            pairs, h = [], ctx
            for k in range(1, j.jepa_horizons + 1):
                # h[:, i] holds the state at i + k - 1 (true for k = 1, predicted after); token i + k moves it
                # to i + k. Position i + k's prediction reads tokens <= i + k and states <= i only.
                h = self.predictor(h[:, : T - k], tok_in[:, k:])  # (r, T-k, D)
                pairs.append((h.reshape(-1, D), tgt[:, k:].reshape(-1, D), j.jepa_horizon_decay ** (k - 1)))
            return pairs
        if j.jepa_mode == "span":
            assert mask is not None
            if mask_pos is None:
                mask_pos = mask.reshape(-1).nonzero().squeeze(1)  # (N,)
            if isinstance(self.predictor, Predictor):  # per position: predict the masked positions only
                pred = self.predictor(ctx.reshape(r * T, D).index_select(0, mask_pos))  # (N, D)
            else:  # attention over every context state, then the masked positions
                pred = self.predictor(ctx).reshape(r * T, D).index_select(0, mask_pos)
            return [(pred, tgt.reshape(r * T, D).index_select(0, mask_pos), 1.0)]
        if j.jepa_mode == "chunk":
            C = j.jepa_chunk_size
            pred = self.predictor(self._chunk_inputs(ctx))  # (r, n, D): chunk c sees chunk c-1's latent
            tgt_chunks = tgt.view(r, T // C, C, D).mean(2)  # (r, n, D) pooled target latents
            return [(pred.reshape(-1, D), tgt_chunks.reshape(-1, D), 1.0)]
        pairs = []
        h = ctx
        for k in range(1, j.jepa_horizons + 1):
            if j.jepa_nextk_rollout:
                h = self.predictor(h)  # horizon k = k applications of the shared predictor
                pred = h
            else:
                assert isinstance(self.predictor, nn.Module)
                head = self.predictor[k - 1] if isinstance(self.predictor, nn.ModuleList) else self.predictor
                pred = head(ctx)
            # The state at t predicts the target at t + k: positions 0..T-k-1 against k..T-1.
            pairs.append((pred[:, : T - k].reshape(-1, D), tgt[:, k:].reshape(-1, D), j.jepa_horizon_decay ** (k - 1)))
        return pairs

    def _loss(self, pairs: list[tuple[Tensor, Tensor, float]],
              directions: Tensor | None) -> tuple[Tensor, dict[str, Tensor]]:
        j = self.cfg.jepa
        if len(pairs) == 1:
            pred, tgt, _ = pairs[0]
            return jepa_loss(pred, tgt, j.jepa_var_weight, j.jepa_cov_weight, self.spec, directions)
        total = sum(w for _, _, w in pairs)
        loss: Tensor | None = None
        stats: dict[str, Tensor] = {}
        for pred, tgt, w in pairs:
            lk, sk = jepa_loss(pred, tgt, j.jepa_var_weight, j.jepa_cov_weight, self.spec, directions)
            loss = lk * (w / total) if loss is None else loss + lk * (w / total)
            for key, v in sk.items():
                stats[key] = stats[key] + v * (w / total) if key in stats else v * (w / total)
        assert loss is not None
        stats["jepa_loss"] = loss.detach()
        return loss, stats
