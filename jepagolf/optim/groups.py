"""Parameter routing: the one place that decides which optimizer updates which parameter.

Every trainable parameter must land in exactly one group (the v2 reference left its predictor out
of every group and so never trained it); ``check_groups`` enforces that and the tests call it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from jepagolf.config import OptimConfig
from jepagolf.optim.muon import Muon


@dataclass
class ParamGroups:
    matrices: list[tuple[str, nn.Parameter]]  # 2-D hidden matrices -> Muon
    embeddings: list[tuple[str, nn.Parameter]]  # token + bigram tables -> Adam, tied_embed_lr
    scalars: list[tuple[str, nn.Parameter]]  # vectors, scalars, control tensors, mask_emb -> Adam, scalar_lr


def route_params(model: nn.Module) -> ParamGroups:
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    linear_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    groups = ParamGroups([], [], [])
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in embedding_ids:
            groups.embeddings.append((name, p))
        elif id(p) in linear_ids and p.ndim == 2:
            groups.matrices.append((name, p))
        else:
            groups.scalars.append((name, p))
    return groups


def is_predictor_param(name: str) -> bool:
    """The JEPA predictor's parameters (``JepaLM.predictor``): trained on JEPA's gradient only, never shipped."""
    return name.startswith("predictor.")


def build_optimizers(
    model: nn.Module, cfg: OptimConfig, fused: bool = False, rank: int = 0, world_size: int = 1,
    pred_optimizer: str = "muon", pred_lr: float = 0.0,
) -> list[torch.optim.Optimizer]:
    """Adam (embeddings, scalars) and Muon (matrices). With world_size > 1 Muon splits its
    Newton-Schulz work across the ranks of the initialised process group (one all-reduce a step).

    The predictor's matrices (``jepa_pred_optimizer``, ``jepa_pred_lr``): with Muon at matrix_lr, in the GPT's
    Muon group (v3); with Muon at another lr, in a second Muon group; or with Adam, in a third Adam group, at
    ``pred_lr`` (0: matrix_lr). Muon orthogonalises each update, so a matrix whose gradient is vanishing still
    moves a full step along its decaying momentum (issue 19: a relu^2 predictor whose units start to die)."""
    g = route_params(model)
    own_group = (pred_optimizer, pred_lr) != ("muon", 0.0)
    pred = [(n, p) for n, p in g.matrices if own_group and is_predictor_param(n)]
    g.matrices = [(n, p) for n, p in g.matrices if not (own_group and is_predictor_param(n))]
    lr_p = pred_lr or cfg.matrix_lr
    # foreach on CPU too (torch picks it only for CUDA tensors): one kernel per op for all tensors
    # instead of a Python loop over parameters.
    adam_kw = dict(betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps, fused=fused, foreach=None if fused else True)
    adam = torch.optim.Adam(
        [
            {"params": [p for _, p in g.embeddings], "lr": cfg.tied_embed_lr, "base_lr": cfg.tied_embed_lr},
            {"params": [p for _, p in g.scalars], "lr": cfg.scalar_lr, "base_lr": cfg.scalar_lr},
            *([{"params": [p for _, p in pred], "lr": lr_p, "base_lr": lr_p}] if pred and pred_optimizer == "adam"
              else []),
        ],
        **adam_kw,
    )
    muon = Muon(
        [p for _, p in g.matrices], lr=cfg.matrix_lr, momentum=cfg.muon_momentum_warmup_start,
        nesterov=True, ns_steps=cfg.muon_backend_steps, rank=rank, world_size=world_size,
    )
    for group in muon.param_groups:
        group["base_lr"] = cfg.matrix_lr
    if pred and pred_optimizer == "muon":
        muon.add_param_group({"params": [p for _, p in pred], "lr": lr_p, "base_lr": lr_p})
    optimizers: list[torch.optim.Optimizer] = [adam, muon]
    check_groups(model, optimizers)
    return optimizers


def check_groups(model: nn.Module, optimizers: list[torch.optim.Optimizer]) -> None:
    """Raise unless every trainable parameter is in exactly one group of one optimizer."""
    seen: dict[int, int] = {}
    for opt in optimizers:
        for group in opt.param_groups:
            for p in group["params"]:
                seen[id(p)] = seen.get(id(p), 0) + 1
    names = {id(p): n for n, p in model.named_parameters()}
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    repeated = [names.get(i, "?") for i, c in seen.items() if c > 1]
    foreign = [i for i in seen if i not in names]
    if missing or repeated or foreign:
        raise RuntimeError(
            f"optimizer groups are wrong: missing={missing} repeated={repeated} "
            f"not_in_model={len(foreign)}"
        )
