"""Hessian-aware rounding (GPTQ) of the exported matrices onto the same per-row int grids.

Round-to-nearest minimises each weight's own error; what matters is the error of the layer's
output on real inputs. GPTQ (Frantar et al., 2022, "GPTQ: Accurate Post-Training Quantization for
Generative Pre-trained Transformers") quantises a matrix one input column at a time and spreads each
column's rounding error over the columns not yet quantised, weighted by the inverse of the input
second-moment matrix ``H = X^T X`` (collected on a few training sequences). The codes and scales
keep the container's format -- only which grid point each weight gets changes -- so loading,
sizes and the checksum are untouched.

The per-row scale (clip) is chosen first, as for round-to-nearest, by reconstruction error among
the candidate percentiles.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from jepagolf.config import Config
from jepagolf.data.shards import TokenStream, list_shards
from jepagolf.export.grid import DEFAULT_CLIP_QUANTILES, quantize_rows

# Calibration sequences per forward pass when the Hessians are collected.
CALIBRATION_BATCH = 8
# Batches timed after the first one for the calibration estimate (their median is the steady rate), and
# the most seconds a full calibration pass may take for the estimate to time it as well (a bound).
CALIBRATION_SAMPLES = 5
FULL_PASS_MAX_SECONDS = 10.0


def gptq_quantize(
    w: Tensor,
    hessian: Tensor,
    max_level: int,
    *,
    clip_quantiles: Iterable[float] = DEFAULT_CLIP_QUANTILES,
    damp: float = 0.01,
    block: int = 128,
) -> tuple[Tensor, Tensor]:
    """GPTQ-round ``w`` [rows, cols] given ``hessian`` [cols, cols] (inputs' X^T X).

    Returns (q int8 [rows, cols], scale fp16 [rows]) on the same grid as :func:`quantize_rows`.
    Columns are processed in order of decreasing Hessian diagonal ("act order"); ``damp`` adds
    that fraction of the mean diagonal for numerical stability.
    """
    rows, cols = w.shape
    if hessian.shape != (cols, cols):
        raise ValueError(f"gptq: hessian {tuple(hessian.shape)} does not match {cols} input columns")
    _, scale16 = quantize_rows(w, max_level, clip_quantiles)
    scale = scale16.to(torch.float64)[:, None]  # [rows, 1]
    W = w.detach().to("cpu", torch.float64).clone()
    H = hessian.detach().to("cpu", torch.float64).clone()
    dead = torch.diag(H) == 0  # inputs that never fire: their weights do not matter
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    perm = torch.argsort(torch.diag(H), descending=True)
    W, H = W[:, perm], H[perm][:, perm]
    H += damp * torch.diag(H).mean() * torch.eye(cols, dtype=H.dtype)
    # Upper Cholesky factor of H^-1: row i holds how column i's error propagates to later columns.
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    Q = torch.zeros_like(W)
    for b0 in range(0, cols, block):
        b1 = min(b0 + block, cols)
        Wb = W[:, b0:b1].clone()
        Err = torch.zeros_like(Wb)
        for i in range(b1 - b0):
            col = Wb[:, i]
            d = Hinv[b0 + i, b0 + i]
            q = torch.clamp(torch.round(col[:, None] / scale), -max_level, max_level)[:, 0]
            Q[:, b0 + i] = q
            err = (col - q * scale[:, 0]) / d
            Wb[:, i:] -= err[:, None] * Hinv[b0 + i, b0 + i : b1][None, :]
            Err[:, i] = err
        W[:, b1:] -= Err @ Hinv[b0:b1, b1:]
    inv = torch.argsort(perm)
    return Q[:, inv].to(torch.int8), scale16


@torch.no_grad()
def collect_hessians(gpt: nn.Module, tokens: Tensor, batch: int = CALIBRATION_BATCH) -> dict[str, Tensor]:
    """Inputs' second moments ``X^T X`` (fp64, CPU) for every ``nn.Linear`` weight of ``gpt`` and for
    the tied head ("tok_emb.weight", whose input is the final representation z).

    tokens: (N, T) int64 calibration sequences from the *training* split. Accumulated in fp32 on the
    model's device (a sum of N*T outer products), returned in fp64 for the Cholesky factorisations.
    """
    hessians: dict[str, Tensor] = {}
    hooks = []

    def add(name: str, x: Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).float()  # (B*T, in)
        h = x.T @ x  # (in, in)
        hessians[name] = hessians[name] + h if name in hessians else h

    for name, module in gpt.named_modules():
        if isinstance(module, nn.Linear):
            hooks.append(module.register_forward_pre_hook(
                lambda m, args, n=f"{name}.weight": add(n, args[0])))
    was_training = gpt.training
    gpt.eval()
    try:
        device = next(gpt.parameters()).device
        for s in range(0, tokens.shape[0], batch):
            z = gpt.encode(tokens[s : s + batch].to(device))  # (b, T, D)
            add("tok_emb.weight", z.float())
    finally:
        for h in hooks:
            h.remove()
        gpt.train(was_training)
    return {k: v.to("cpu", torch.float64) for k, v in hessians.items()}


def calibration_tokens(data_dir: str | os.PathLike[str], n_tokens: int, seq_len: int) -> Tensor:
    """The first ``n_tokens`` (rounded down to whole sequences, at least one) of the train split as
    (N, seq_len) int64: deterministic, and never validation data."""
    n_seq = max(1, n_tokens // seq_len)
    tokens = TokenStream(list_shards(data_dir, "train")).take(n_seq * seq_len)
    return torch.from_numpy(tokens).view(n_seq, seq_len)


def export_hessians(gpt: nn.Module, cfg: Config, data_dir: str | os.PathLike[str]) -> dict[str, Tensor] | None:
    """The GPTQ statistics the artifact export uses for ``cfg`` (None when ``cfg.export.gptq`` is off)."""
    if not cfg.export.gptq:
        return None
    tokens = calibration_tokens(data_dir, cfg.export.gptq_calib_tokens, cfg.train.train_seq_len)
    return collect_hessians(gpt, tokens)


def estimate_calibration_seconds(gpt: nn.Module, cfg: Config, data_dir: str | os.PathLike[str], *,
                                 clock: Callable[[], float] = time.perf_counter) -> float:
    """Measured seconds that :func:`export_hessians` will take for ``cfg`` on ``gpt``'s device (0 when
    ``cfg.export.gptq`` is off), so that a wall-clock-capped run can stop training early enough.

    It does the real work: reads all the calibration tokens, times the first forward batch (which pays the
    one-off costs) and up to CALIBRATION_SAMPLES more (the steady rate: their median, so that one batch
    slowed by a busy host does not multiply into the estimate), and extrapolates to the number of
    batches. When that says the whole pass is cheap (FULL_PASS_MAX_SECONDS), the whole pass is timed too,
    and the estimate is never more than it (plus the same reading and one-off costs). ``gpt`` only needs
    the trained model's shape; its weights do not change the cost. ``clock``: seconds, monotonic.
    """
    if not cfg.export.gptq:
        return 0.0
    t0 = clock()
    tokens = calibration_tokens(data_dir, cfg.export.gptq_calib_tokens, cfg.train.train_seq_len)
    batches = math.ceil(tokens.shape[0] / CALIBRATION_BATCH)
    read_s = clock() - t0

    def timed(rows: Tensor) -> float:
        start = clock()
        collect_hessians(gpt, rows)  # returns host tensors: the device has finished
        return clock() - start

    first_s = timed(tokens[:CALIBRATION_BATCH])
    samples = [timed(tokens[b * CALIBRATION_BATCH : (b + 1) * CALIBRATION_BATCH])
               for b in range(1, min(batches, 1 + CALIBRATION_SAMPLES))]
    full_s = None
    if samples and statistics.median(samples) * batches <= FULL_PASS_MAX_SECONDS:
        full_s = timed(tokens)
    return calibration_estimate(read_s, first_s, samples, batches, full_s)


def calibration_estimate(read_s: float, first_s: float, samples: Sequence[float], batches: int,
                         full_s: float | None = None) -> float:
    """Seconds of a calibration of ``batches`` batches from the timings of :func:`estimate_calibration_seconds`:
    reading, the first batch, then the median of the ``samples`` (later batches) for each of the others;
    bounded above by the timed full pass ``full_s`` (when there is one) plus reading and the first batch's
    one-off excess over the median."""
    if batches <= 1 or not samples:
        return read_s + first_s
    steady = statistics.median(samples)
    estimate = read_s + first_s + steady * (batches - 1)
    if full_s is not None:
        estimate = min(estimate, read_s + max(first_s - steady, 0.0) + full_s)
    return estimate
