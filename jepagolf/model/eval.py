"""Exact val_bpb over the validation split, non-overlapping or by sliding window, split across ranks.

Scored extent: the first ``n * seq_len`` targets of the split, n = (tokens - 1) // seq_len (what the
challenge's script scores: it truncates the split to whole sequences). Every target of that extent is
scored exactly once, whatever the stride:

- non-overlapping (stride = seq_len): windows 0, T, 2T, ... each score all their T targets;
- sliding (stride s < T): windows start at 0, s, 2s, ...; the first scores all of its T targets, every
  later one only the targets the previous window did not reach (its last s, as the records do), and
  when (extent - T) is not a multiple of s one more window ends exactly at the last target and scores
  only the remainder.

A target y at window position p is predicted from the window's tokens up to p, and its bytes use the
true previous token x = the input at p (DESIGN section 5), so bytes do not depend on the stride.
"""

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


@dataclass(frozen=True)
class WindowPlan:
    """Windows over the token array: window i reads tokens[starts[i] : starts[i] + seq_len + 1] (inputs
    and shifted targets) and scores its targets at positions score_from[i] .. seq_len - 1."""

    seq_len: int
    starts: np.ndarray  # (n,) int64
    score_from: np.ndarray  # (n,) int64, 0 <= score_from < seq_len

    @property
    def scored_tokens(self) -> int:
        return int((self.seq_len - self.score_from).sum())

    def shard(self, rank: int, world_size: int) -> WindowPlan:
        """This rank's contiguous share of the windows (the same split as whole sequences use)."""
        n = len(self.starts)
        lo, hi = n * rank // world_size, n * (rank + 1) // world_size
        return WindowPlan(self.seq_len, self.starts[lo:hi], self.score_from[lo:hi])


def num_eval_sequences(n_tokens: int, seq_len: int, max_tokens: int = 0) -> int:
    """Full sequences of length T in the split (each needs T+1 tokens, overlapping by one)."""
    n = (n_tokens - 1) // seq_len
    if max_tokens:
        n = min(n, max(1, max_tokens // seq_len))
    return n


def check_stride(stride: int, seq_len: int) -> None:
    """0 < stride <= seq_len, or a ValueError that names both."""
    if not 0 < stride <= seq_len:
        raise ValueError(f"eval stride {stride} must be in 1..eval seq len {seq_len} (0 or {seq_len}: "
                         "non-overlapping windows)")


def plan_windows(n_tokens: int, seq_len: int, stride: int = 0, max_tokens: int = 0) -> WindowPlan:
    """Windows that score every target of the extent (module docstring) exactly once; stride 0 = seq_len.

    A pure function of the sizes, so the coverage can be checked without a model.
    """
    stride = stride or seq_len
    check_stride(stride, seq_len)
    extent = num_eval_sequences(n_tokens, seq_len, max_tokens) * seq_len  # targets 1..extent
    if extent <= 0:
        return WindowPlan(seq_len, np.zeros(0, np.int64), np.zeros(0, np.int64))
    starts = np.arange(0, extent - seq_len + 1, stride, dtype=np.int64)
    if starts[-1] + seq_len < extent:  # the tail: one more window, ending at the last target
        starts = np.append(starts, extent - seq_len)
    ends = starts + seq_len  # window i covers targets starts[i]+1 .. ends[i]
    score_from = np.zeros_like(starts)
    score_from[1:] = ends[:-1] - starts[1:]  # skip what the previous window already scored
    return WindowPlan(seq_len, starts, score_from)


@torch.no_grad()
def evaluate(
    gpt: GPT,
    val_tokens: np.ndarray,
    byte_tables: tuple[Tensor, Tensor, Tensor],
    seq_len: int,
    batch_tokens: int,
    device: torch.device,
    *,
    stride: int = 0,
    max_tokens: int = 0,
    rank: int = 0,
    world_size: int = 1,
    autocast_dtype: torch.dtype | None = None,
    reduce: bool = True,
) -> EvalResult:
    """CE and bits per byte over the split's scored extent (or its first max_tokens), windows of
    ``seq_len`` advanced by ``stride`` (0: non-overlapping), ``batch_tokens // seq_len`` windows a forward.

    byte_tables: (base_bytes int, leading_space bool, is_boundary bool), each (V,) on ``device``.
    Per target y after x: bytes = base[y] + (leading_space[y] and not boundary[x]) (DESIGN section 5).
    This rank evaluates its share of the windows; the sums are all-reduced over the process group when
    ``world_size > 1`` and ``reduce`` (``reduce=False`` gives this rank's own sums, for tests).
    """
    base, space, boundary = byte_tables
    plan = plan_windows(len(val_tokens), seq_len, stride, max_tokens).shard(rank, world_size)
    per_batch = max(1, batch_tokens // seq_len)
    gpt.ensure_seq_len(seq_len)  # outside any compiled region: RoPE tables grow here, not mid-graph
    was_training = gpt.training
    gpt.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # nats, tokens, bytes
    ctx = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype else nullcontext()
    window = np.arange(seq_len + 1, dtype=np.int64)
    for b in range(0, len(plan.starts), per_batch):
        starts, score_from = plan.starts[b : b + per_batch], plan.score_from[b : b + per_batch]
        if np.all(starts[1:] - starts[:-1] == seq_len):
            # Back-to-back windows (always so without a stride): one contiguous slice, no gather.
            rows = np.asarray(val_tokens[starts[0] : starts[-1] + seq_len + 1], dtype=np.int64)
            chunk = torch.from_numpy(rows).to(device, non_blocking=True)
            x = chunk[:-1].view(len(starts), seq_len)  # (b, T)
            y = chunk[1:].view(len(starts), seq_len)  # (b, T)
        else:
            rows = np.asarray(val_tokens[starts[:, None] + window], dtype=np.int64)  # (b, T+1)
            chunk = torch.from_numpy(rows).to(device, non_blocking=True)
            x, y = chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()  # (b, T) each
        with ctx:
            z = gpt.encode(x)  # (b, T, D)
        if not score_from.any():
            # Every target scored: the whole batch at once (the non-overlapping eval, bit for bit).
            nats = gpt.ce_loss(z.float(), y, reduction="sum")  # fp32 logits, outside autocast
            nbytes = base[y] + (space[y] & ~boundary[x]).to(base.dtype)
            count = y.numel()
        else:
            # Only the scored positions go through the head: index rows of the flattened batch, built
            # on the host (no device->host sync) in window order.
            keep = (np.arange(seq_len)[None, :] >= score_from[:, None]).reshape(-1)
            idx = torch.from_numpy(np.flatnonzero(keep)).to(device, non_blocking=True)
            zs = z.reshape(-1, z.size(-1)).index_select(0, idx).float()  # (n, D)
            ys, xs = y.reshape(-1).index_select(0, idx), x.reshape(-1).index_select(0, idx)  # (n,)
            nats = gpt.ce_loss(zs[None], ys[None], reduction="sum")
            nbytes = base[ys] + (space[ys] & ~boundary[xs]).to(base.dtype)
            count = len(idx)
        sums += torch.stack((nats.double(), torch.tensor(count, device=device).double(), nbytes.sum().double()))
    if world_size > 1 and reduce:
        dist.all_reduce(sums)
    gpt.train(was_training)
    nats, tokens, nbytes = sums.tolist()
    return EvalResult(
        loss=nats / max(tokens, 1),
        bpb=nats / math.log(2) / max(nbytes, 1),
        tokens=int(tokens),
        bytes=int(nbytes),
    )
