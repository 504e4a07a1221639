"""Muon: momentum SGD whose update is orthogonalised by a quintic Newton-Schulz iteration.

Muon (Keller Jordan, 2024, "Muon: An optimizer for hidden layers"; used by modded-nanogpt and the
parameter-golf records) replaces each 2-D update matrix G = U S V^T by roughly U V^T, so every
direction of the update moves at the same rate. It is meant for hidden matrices only; embeddings,
vectors and scalars go to Adam (see ``jepagolf.optim.groups``).

We write our own rather than use ``torch.optim.Muon`` because that one runs Newton-Schulz in bf16,
which on CPUs without native bf16 matmul is ~100x slower than fp32; here the compute dtype is bf16
only on CUDA. Nothing here reads the environment or touches ``torch.distributed`` unless the caller
asks for the sharded path with ``world_size > 1``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.autograd.profiler import record_function

# Coefficients of the quintic p(x) = a x + b x^3 + c x^5 from Keller Jordan's Muon: chosen to
# maximise the slope at 0 (fast growth of small singular values) at the price of not converging
# exactly to 1 -- after 5 steps the singular values land in roughly [0.68, 1.2], which is
# empirically as good as an exact orthogonalisation for training.
_NS_A, _NS_B, _NS_C = 3.4445, -4.7750, 2.0315


def newton_schulz5(G: Tensor, steps: int = 5, eps: float = 1e-7) -> Tensor:
    """Approximately orthogonalise ``G`` [..., m, n]: return ~U V^T for G = U S V^T.

    Normalised singular values >= ~3e-3 (relative to the Frobenius norm) come out in
    ~[0.68, 1.21]; smaller ones are amplified by ~3.4445**steps but may not reach that band.
    Computes in bf16 on CUDA, fp32 elsewhere; the result has ``G``'s dtype.
    """
    if G.ndim < 2:
        raise ValueError(f"newton_schulz5 needs a matrix or a batch of matrices, got shape {tuple(G.shape)}")
    if steps < 0:
        raise ValueError(f"newton_schulz5: steps must be >= 0, got {steps}")
    compute_dtype = torch.bfloat16 if G.is_cuda else torch.float32
    # Normalise in fp32 (before any bf16 cast) so every singular value is <= 1, inside the basin
    # where the polynomial iteration converges.
    X = G.to(torch.float32)
    X = X / (torch.linalg.matrix_norm(X, keepdim=True) + eps)
    X = X.to(compute_dtype)
    batch_shape = X.shape[:-2]
    if X.ndim > 3:
        X = X.reshape(-1, *X.shape[-2:])  # (B, m, n): one batch dim so baddbmm applies
    # Fused multiply-adds (addmm / baddbmm): one kernel per term instead of a matmul plus an add.
    fma = torch.addmm if X.ndim == 2 else torch.baddbmm
    transposed = X.size(-2) > X.size(-1)
    if transposed:
        X = X.mT  # (..., n, m) with n < m: the Gram matrix X X^T is the smaller n x n one
    for _ in range(steps):
        A = X @ X.mT  # (..., r, r), r = min(m, n)
        B = fma(A, A, A, beta=_NS_B, alpha=_NS_C)  # b*A + c*A@A, (..., r, r)
        X = fma(X, B, X, beta=_NS_A)  # a*X + B@X, (..., r, c)
    if transposed:
        X = X.mT
    X = X.reshape(*batch_shape, *X.shape[-2:])
    return X.to(G.dtype)


class Muon(torch.optim.Optimizer):
    """Muon for 2-D parameters.

    Per parameter and step::

        buf = momentum * buf + grad
        update = grad + momentum * buf   (Nesterov)   or   buf
        update = newton_schulz5(update) * max(1, rows / cols) ** 0.5
        p = p * (1 - lr * weight_decay) - lr * update

    ``lr`` and ``momentum`` are read from ``param_groups`` at every step, so a trainer can drive
    them with schedules. With ``world_size > 1`` (and ``torch.distributed`` initialised by the
    caller) parameter i is orthogonalised only on rank ``i % world_size`` and one all-reduce of a
    flat fp32 buffer gives every rank every update; gradients must already be identical on all
    ranks (as after DDP's reduction).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.04,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        weight_decay: float = 0.0,
        *,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if lr < 0.0:
            raise ValueError(f"Muon: lr must be >= 0, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"Muon: momentum must be in [0, 1), got {momentum}")
        if ns_steps < 1:
            raise ValueError(f"Muon: ns_steps must be >= 1, got {ns_steps}")
        if weight_decay < 0.0:
            raise ValueError(f"Muon: weight_decay must be >= 0, got {weight_decay}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"Muon: need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if world_size > 1:
            if not (dist.is_available() and dist.is_initialized()):
                raise ValueError(
                    f"Muon: world_size={world_size} needs torch.distributed initialised first "
                    "(call init_process_group before building the optimizer), or pass world_size=1"
                )
            if dist.get_world_size() != world_size or dist.get_rank() != rank:
                raise ValueError(
                    f"Muon: rank/world_size ({rank}/{world_size}) disagree with the process group "
                    f"({dist.get_rank()}/{dist.get_world_size()})"
                )
        self.rank = rank
        self.world_size = world_size
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps, weight_decay=weight_decay)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        # Checked here (not in step) so a routing mistake fails when the optimizer is built.
        for p in self.param_groups[-1]["params"]:
            if p.ndim != 2:
                raise ValueError(
                    f"Muon only takes 2-D parameters, got one of shape {tuple(p.shape)}; route "
                    "vectors, scalars and embeddings to Adam"
                )

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        # Pass 1: momentum for every parameter with a gradient, batched with foreach kernels.
        # updates[gi] holds, per group, (param, pre-orthogonalisation update) in group order.
        updates: list[list[tuple[Tensor, Tensor]]] = []
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                updates.append([])
                continue
            grads = []
            bufs = []
            for p in params:
                if p.grad.is_sparse:
                    raise RuntimeError("Muon does not support sparse gradients")
                state = self.state[p]
                if "momentum_buffer" not in state:
                    # fp32 buffer for low-precision params: the (1 - momentum) share of each new
                    # gradient must not fall below the buffer's resolution.
                    buf_dtype = torch.float32 if p.dtype in (torch.float16, torch.bfloat16) else p.dtype
                    state["momentum_buffer"] = torch.zeros_like(p, dtype=buf_dtype)
                buf = state["momentum_buffer"]
                bufs.append(buf)
                grads.append(p.grad if p.grad.dtype == buf.dtype else p.grad.to(buf.dtype))
            momentum = group["momentum"]
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, grads)
            pre = torch._foreach_add(grads, bufs, alpha=momentum) if group["nesterov"] else bufs
            updates.append(list(zip(params, pre, strict=True)))

        # Pass 2: orthogonalise (locally, or sharded across ranks) and apply.
        sharded = self.world_size > 1
        final = self._orthogonalise_sharded(updates) if sharded else self._orthogonalise_batched(updates)
        for group, pairs, outs in zip(self.param_groups, updates, final, strict=True):
            if not pairs:
                continue
            params = [p for p, _ in pairs]
            lr = group["lr"]
            if group["weight_decay"] > 0.0:
                torch._foreach_mul_(params, 1.0 - lr * group["weight_decay"])
            torch._foreach_add_(params, outs, alpha=-lr)
        return loss

    @staticmethod
    def _orthogonalise(update: Tensor, p: Tensor, ns_steps: int) -> Tensor:
        """update (rows, cols) or a stack (n, rows, cols) of updates for parameters shaped like p."""
        rows, cols = p.shape
        # An orthogonalised rows x cols update has per-element RMS 1/sqrt(max(rows, cols)); the
        # factor makes it 1/sqrt(cols) (fan-in) for tall matrices too, as it already is for wide ones.
        scale = max(1.0, rows / cols) ** 0.5
        return (newton_schulz5(update, steps=ns_steps) * scale).to(p.dtype)

    def _orthogonalise_batched(self, updates: list[list[tuple[Tensor, Tensor]]]) -> list[list[Tensor]]:
        # Matrices of one shape (every layer's q, every layer's MLP in, ...) go through Newton-Schulz
        # as one stacked batch: the same FLOPs in a few large kernels instead of ~15 small ones per
        # matrix. Small kernels are what suffers most when the other core is busy.
        buckets: dict[tuple, list[tuple[int, int]]] = {}  # (shape, dtype, ns_steps) -> [(group, index)]
        for gi, (group, pairs) in enumerate(zip(self.param_groups, updates, strict=True)):
            for i, (p, _) in enumerate(pairs):
                buckets.setdefault((tuple(p.shape), p.dtype, group["ns_steps"]), []).append((gi, i))
        final: list[list[Tensor]] = [[u for _, u in pairs] for pairs in updates]
        for (_, _, ns_steps), slots in buckets.items():
            p0 = updates[slots[0][0]][slots[0][1]][0]
            stacked = torch.stack([updates[gi][i][1] for gi, i in slots])  # (n, rows, cols)
            with record_function("muon.newton_schulz"):
                ortho = self._orthogonalise(stacked, p0, ns_steps)
            for (gi, i), out in zip(slots, ortho.unbind(0), strict=True):
                final[gi][i] = out
        return final

    def _orthogonalise_sharded(self, updates: list[list[tuple[Tensor, Tensor]]]) -> list[list[Tensor]]:
        # The layout covers every parameter of every group (with or without a gradient), in
        # param_groups order, so all ranks agree on it without communicating; parameter i belongs
        # to rank i % world_size.
        all_params = [p for group in self.param_groups for p in group["params"]]
        offsets: dict[int, tuple[int, int]] = {}
        owner: dict[int, int] = {}
        total = 0
        for i, p in enumerate(all_params):
            offsets[id(p)] = (total, p.numel())
            owner[id(p)] = i % self.world_size
            total += p.numel()
        flat = torch.zeros(total, dtype=torch.float32, device=all_params[0].device)
        for group, pairs in zip(self.param_groups, updates, strict=True):
            for p, u in pairs:
                if owner[id(p)] == self.rank:
                    start, n = offsets[id(p)]
                    flat[start : start + n].copy_(self._orthogonalise(u, p, group["ns_steps"]).reshape(-1))
        # Every slot is written by exactly one rank and is zero elsewhere, so the sum is exact.
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        out: list[list[Tensor]] = []
        for pairs in updates:
            group_out = []
            for p, _ in pairs:
                start, n = offsets[id(p)]
                group_out.append(flat[start : start + n].view_as(p).to(p.dtype))
            out.append(group_out)
        return out
