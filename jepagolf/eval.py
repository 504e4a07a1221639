"""Exact val_bpb over the validation split, split across ranks and reduced."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from jepagolf.model.gpt import GPT


@dataclass
class EvalResult:
    loss: float  # mean CE in nats per token
    bpb: float  # bits per byte
    tokens: int
    bytes: int


def num_eval_sequences(n_tokens: int, seq_len: int, max_tokens: int = 0) -> int:
    """Full sequences of length T in the split (each needs T+1 tokens, overlapping by one)."""
    n = (n_tokens - 1) // seq_len
    if max_tokens:
        n = min(n, max(1, max_tokens // seq_len))
    return n


@torch.no_grad()
def evaluate(
    gpt: GPT,
    val_tokens: np.ndarray,
    byte_tables: tuple[Tensor, Tensor, Tensor],
    seq_len: int,
    batch_tokens: int,
    device: torch.device,
    *,
    max_tokens: int = 0,
    rank: int = 0,
    world_size: int = 1,
    autocast_dtype: torch.dtype | None = None,
) -> EvalResult:
    """CE and bits per byte over every full sequence of the split (or the first max_tokens).

    byte_tables: (base_bytes int, leading_space bool, is_boundary bool), each (V,) on ``device``.
    Per target y after x: bytes = base[y] + (leading_space[y] and not boundary[x]) (DESIGN section 5).
    """
    base, space, boundary = byte_tables
    n_seq = num_eval_sequences(len(val_tokens), seq_len, max_tokens)
    lo, hi = n_seq * rank // world_size, n_seq * (rank + 1) // world_size
    per_batch = max(1, batch_tokens // seq_len)
    was_training = gpt.training
    gpt.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # nats, tokens, bytes
    ctx = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
    for s in range(lo, hi, per_batch):
        e = min(s + per_batch, hi)
        chunk = torch.from_numpy(np.asarray(val_tokens[s * seq_len : e * seq_len + 1], dtype=np.int64))
        chunk = chunk.to(device, non_blocking=True)
        x = chunk[:-1].view(e - s, seq_len)  # (b, T)
        y = chunk[1:].view(e - s, seq_len)  # (b, T)
        with ctx:
            z = gpt.encode(x)
        nats = gpt.ce_loss(z.float(), y, reduction="sum")  # fp32 logits, outside autocast
        nbytes = base[y] + (space[y] & ~boundary[x]).to(base.dtype)
        sums += torch.stack((nats.double(), torch.tensor(y.numel(), device=device).double(), nbytes.sum().double()))
    if world_size > 1:
        dist.all_reduce(sums)
    gpt.train(was_training)
    nats, tokens, nbytes = sums.tolist()
    return EvalResult(
        loss=nats / max(tokens, 1),
        bpb=nats / math.log(2) / max(nbytes, 1),
        tokens=int(tokens),
        bytes=int(nbytes),
    )
