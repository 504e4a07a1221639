"""One micro-batch's inputs: tokens and JEPA span masks, from the step's chunk of the stream.

Everything here depends only on (mask seed, step, global micro-batch index), never on how the global
batch is split over processes: process r of W, accumulating A micro-batches, owns global indices
[r*A, (r+1)*A). So world 1 with accumulation 2 sees exactly the micro-batches and masks that
world 2 with accumulation 1 sees, which is what lets a DDP run reproduce a single-process one.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from jepagolf.config import Config
from jepagolf.jepa.masking import jepa_rows, sample_mask, span_generator


def micro_batch_indices(rank: int, grad_accum: int) -> range:
    """Global indices (position in the global batch) of the micro-batches that ``rank`` runs."""
    return range(rank * grad_accum, (rank + 1) * grad_accum)


def to_device(x: Tensor, device: torch.device) -> Tensor:
    """Host tensor -> device. On CUDA the copy goes through pinned memory and does not block the host;
    PyTorch's pinned-memory allocator keeps the staging block alive until the copy has run.
    ``contiguous`` first: pinning refuses a broadcast view (the span mask shared by all rows is one)."""
    if device.type != "cuda":
        return x.to(device)
    return x.contiguous().pin_memory().to(device, non_blocking=True)


def micro_stride(cfg: Config) -> int:
    """Tokens of a step's chunk between the starts of two micro-batches: ``micro_batch_tokens`` when
    neighbours share their boundary token (``batch_slicing=shared``), one more when every micro-batch
    reads its own m+1 tokens, as the reference trainer's loader does (``batch_slicing=reference``)."""
    t = cfg.train
    return t.micro_batch_tokens + (t.batch_slicing == "reference")


def step_tokens(cfg: Config) -> int:
    """Tokens one optimizer step reads from the stream: G+1 (shared), or (m+1) per micro-batch."""
    t = cfg.train
    return (t.train_batch_tokens // t.micro_batch_tokens - 1) * micro_stride(cfg) + t.micro_batch_tokens + 1


def micro_batch(chunk: np.ndarray, index: int, micro_tokens: int, seq_len: int,
                device: torch.device, stride: int | None = None) -> tuple[Tensor, Tensor]:
    """Micro-batch ``index`` of a step's chunk (``step_tokens`` long) -> x, y (b, T) int64 on the device.

    It predicts chunk[i*s+1 : i*s+m+1] from chunk[i*s : i*s+m], m = ``micro_tokens``, s = ``stride``
    (default m; see ``micro_stride``)."""
    start = index * (micro_tokens if stride is None else stride)
    seg = torch.from_numpy(chunk[start : start + micro_tokens + 1].astype(np.int64))
    seg = to_device(seg, device)
    return seg[:-1].view(-1, seq_len), seg[1:].view(-1, seq_len)  # (b, T) each


def micro_batch_mask(cfg: Config, step: int, index: int, batch: int,
                     device: torch.device) -> tuple[Tensor, Tensor]:
    """Span mask of the JEPA rows of micro-batch ``index`` at 0-based ``step``, and its flat positions.

    Returns (mask (rows, T) bool, positions (N,) int64) on the device, rows = jepa_rows(batch, fraction):
    the same spans as the first rows of a full-batch draw. The positions are computed on the host, so
    the model gathers them with ``index_select``; boolean indexing on the device would stop the host
    until the device reports the count, every step.
    """
    t, j = cfg.train, cfg.jepa
    rows = jepa_rows(batch, j.jepa_batch_fraction)
    mask = sample_mask(rows, t.train_seq_len, *j.span_plan(t.train_seq_len), j.jepa_span_per_sequence,
                       span_generator(t.resolved_mask_seed, step, index))
    positions = mask.reshape(-1).nonzero().squeeze(1)  # row-major, like mask[...] boolean indexing
    return to_device(mask, device), to_device(positions, device)
