"""EMA copies kept in fp32 on the training device: the JEPA target encoder and the artifact EMA.

fp32 matters: with m >= 0.999 an update of (1-m)*delta is below bf16 resolution and would be lost,
freezing the EMA (defect 2 of the design notes). Updates are one foreach lerp on the device; no
host copies (defect 6).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn


def ema_momentum(progress: float, start: float, end: float) -> float:
    """Target-encoder momentum, linear from start to end over training progress in [0, 1]."""
    return start + (end - start) * min(max(progress, 0.0), 1.0)


def artifact_ema_decay(step: int, decay: float) -> float:
    """Warmed-up decay min(d, (1+t)/(10+t)): early steps forget the random init quickly."""
    return min(decay, (1.0 + step) / (10.0 + step))


@torch.no_grad()
def lerp_towards(ema: list[Tensor], online: list[Tensor], momentum: float) -> None:
    """ema <- momentum * ema + (1 - momentum) * online, in place; the EMA state must be fp32."""
    if any(e.dtype != torch.float32 for e in ema):
        raise TypeError("EMA state must be fp32: lower-precision state loses (1-m)*delta updates")
    src = [p.detach().float() if p.dtype != torch.float32 else p.detach() for p in online]
    torch._foreach_lerp_(ema, src, 1.0 - momentum)


def make_target_encoder(online: nn.Module) -> nn.Module:
    """Frozen fp32 copy of the online network (same device), used on the unmasked sequence."""
    target = copy.deepcopy(online).float()
    target.requires_grad_(False)
    target.eval()
    return target


@torch.no_grad()
def update_target(target: nn.Module, online: nn.Module, momentum: float) -> None:
    lerp_towards(list(target.parameters()), list(online.parameters()), momentum)


class WeightEMA:
    """fp32 shadow of a module's parameters, exported instead of the last iterate."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.names = [n for n, _ in module.named_parameters()]
        self.shadow = [p.detach().float().clone() for p in module.parameters()]
        self.updates = 0

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        lerp_towards(self.shadow, list(module.parameters()), artifact_ema_decay(self.updates, self.decay))
        self.updates += 1

    def state_dict(self) -> dict[str, Tensor]:
        return dict(zip(self.names, self.shadow, strict=True))

    def load_state_dict(self, state: dict[str, Tensor], updates: int) -> None:
        for name, buf in zip(self.names, self.shadow, strict=True):
            buf.copy_(state[name])
        self.updates = updates
