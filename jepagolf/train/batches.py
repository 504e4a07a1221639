"""One optimizer step's inputs for one process: token micro-batches and JEPA span masks.

Everything here depends only on (seed, step, global micro-batch index), never on how the global
batch is split over processes: process r of W, accumulating A micro-batches, owns global indices
[r*A, (r+1)*A). So world 1 with accumulation 2 sees exactly the micro-batches and masks that
world 2 with accumulation 1 sees, which is what lets a DDP run reproduce a single-process one.

The step's tokens, masks and masked-position indices are built on the host and each copied to the
device once, from pinned memory without blocking on CUDA. The masked positions are also passed as
flat indices whose count the host knows, so the model gathers them with ``index_select`` instead
of boolean indexing (which would stop the host until the device reports the count).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from jepagolf.config import Config
from jepagolf.jepa.masking import sample_mask, span_generator


def micro_batch_indices(rank: int, grad_accum: int) -> range:
    """Global indices (position in the global batch) of the micro-batches that ``rank`` runs."""
    return range(rank * grad_accum, (rank + 1) * grad_accum)


def step_mask(cfg: Config, step: int, index: int) -> Tensor:
    """(b, T) bool span mask of global micro-batch ``index`` at optimizer step ``step``, on the host."""
    t, j = cfg.train, cfg.jepa
    gen = span_generator(t.seed, step, index)
    batch = t.micro_batch_tokens // t.train_seq_len
    return sample_mask(batch, t.train_seq_len, j.jepa_num_spans, j.jepa_span_p, j.jepa_span_min,
                       j.jepa_span_per_sequence, gen)


def to_device(x: Tensor, device: torch.device) -> Tensor:
    """Host tensor -> device. On CUDA the copy goes through pinned memory and does not block the host;
    PyTorch's pinned-memory allocator keeps the staging block alive until the copy has run."""
    if device.type != "cuda":
        return x.to(device)
    return x.pin_memory().to(device, non_blocking=True)


@dataclass
class StepBatch:
    """This process's share of one optimizer step, on the device.

    x, y: (A, b, T) int64 inputs and next-token targets, A = micro-batches on this process.
    masks: (A, b, T) bool span masks, or None without JEPA.
    mask_index: flat indices into the (b*T) positions of each micro-batch, concatenated over the A
    micro-batches; micro-batch a's are mask_index[offsets[a]:offsets[a+1]] (host ints, no sync).
    """

    x: Tensor
    y: Tensor
    masks: Tensor | None
    mask_index: Tensor | None
    offsets: list[int]

    def micro(self, a: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        if self.masks is None or self.mask_index is None:
            return self.x[a], self.y[a], None, None
        return self.x[a], self.y[a], self.masks[a], self.mask_index[self.offsets[a] : self.offsets[a + 1]]


def prepare_step(
    cfg: Config, chunk: np.ndarray, step: int, rank: int, grad_accum: int, device: torch.device, jepa: bool
) -> StepBatch:
    """Slice this rank's micro-batches out of the step's (G+1)-token ``chunk`` and build their masks.

    Micro-batch i of the global batch predicts chunk[i*m+1 : (i+1)*m+1] from chunk[i*m : (i+1)*m],
    m = micro_batch_tokens; this rank's micro-batches are contiguous, so one slice holds them all.
    """
    t = cfg.train
    m, T = t.micro_batch_tokens, t.train_seq_len
    indices = micro_batch_indices(rank, grad_accum)
    lo = indices.start * m
    seg = torch.from_numpy(np.ascontiguousarray(chunk[lo : lo + grad_accum * m + 1], dtype=np.int64))
    seg = to_device(seg, device)
    x = seg[:-1].view(grad_accum, m // T, T)  # (A, b, T)
    y = seg[1:].view(grad_accum, m // T, T)  # (A, b, T)
    if not jepa:
        return StepBatch(x, y, None, None, [])
    masks = torch.stack([step_mask(cfg, step, i) for i in indices])  # (A, b, T) bool, host
    flat = [mk.reshape(-1).nonzero().squeeze(1) for mk in masks]  # each (N_a,), row-major like mask[...]
    offsets = [0]
    for f in flat:
        offsets.append(offsets[-1] + f.numel())
    return StepBatch(x, y, to_device(masks, device), to_device(torch.cat(flat), device), offsets)
