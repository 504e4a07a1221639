"""Tests for the Newton-Schulz orthogonaliser and the Muon optimizer (incl. the 2-rank gloo split)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers import finish_gloo_rank, spawn_gloo

from jepagolf.optim.muon import Muon, newton_schulz5

# The quintic's fixed band: iterating p(x) = 3.4445x - 4.7750x^3 + 2.0315x^5 five times maps every
# normalised singular value in [3e-3, 1] into [0.6818, 1.2024] (checked numerically on a fine grid),
# so these bounds are the method's, with a little slack for fp32 rounding.
SV_LO, SV_HI = 0.67, 1.21


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


# ----------------------------------------------------------------------------- Newton-Schulz


@pytest.mark.parametrize("shape", [(768, 256), (256, 768), (96, 64), (64, 96), (300, 17)])
def test_ns_singular_values_in_band_for_random_tall_and_wide(shape: tuple[int, int]) -> None:
    # Rectangular Gaussian matrices are well conditioned (Marchenko-Pastur), so every singular
    # value must land in the band.
    sv = torch.linalg.svdvals(newton_schulz5(_randn(*shape, seed=1)))
    assert sv.min() >= SV_LO and sv.max() <= SV_HI, (sv.min(), sv.max())


def test_ns_singular_values_in_band_for_square_with_controlled_spectrum() -> None:
    # A random square Gaussian matrix has singular values arbitrarily close to 0, which 5 steps
    # cannot lift; so build U diag(s) V^T with a spread (condition number 50) spectrum instead.
    n = 128
    u, _ = torch.linalg.qr(_randn(n, n, seed=2))
    v, _ = torch.linalg.qr(_randn(n, n, seed=3))
    s = torch.logspace(0, -torch.log10(torch.tensor(50.0)).item(), n)
    sv = torch.linalg.svdvals(newton_schulz5(u @ torch.diag(s) @ v.T))
    assert sv.min() >= SV_LO and sv.max() <= SV_HI, (sv.min(), sv.max())


def test_ns_random_square_bulk_in_band_and_none_above() -> None:
    sv = torch.linalg.svdvals(newton_schulz5(_randn(256, 256, seed=4)))
    assert sv.max() <= SV_HI
    assert (sv >= SV_LO).float().mean() >= 0.9  # only the few near-zero directions lag


def test_ns_batched_matches_per_matrix() -> None:
    G = _randn(2, 3, 40, 24, seed=5)
    X = newton_schulz5(G)
    assert X.shape == G.shape
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(X[i, j], newton_schulz5(G[i, j]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_ns_preserves_dtype_and_shape(dtype: torch.dtype) -> None:
    G = _randn(48, 32, seed=6).to(dtype)
    X = newton_schulz5(G)
    assert X.dtype == dtype and X.shape == G.shape
    assert torch.isfinite(X.float()).all()


def test_ns_zero_matrix_stays_finite() -> None:
    # eps in the normalisation keeps an all-zero gradient (e.g. a frozen row block) from producing NaN.
    assert torch.equal(newton_schulz5(torch.zeros(8, 4)), torch.zeros(8, 4))


def test_ns_rejects_vectors() -> None:
    with pytest.raises(ValueError, match="matrix"):
        newton_schulz5(torch.ones(5))


# ----------------------------------------------------------------------------- Muon


def _reference_step(
    params: list[torch.Tensor], grads: list[torch.Tensor], bufs: list[torch.Tensor], group: dict
) -> None:
    """Plain per-parameter Muon, written from the formula, to check the foreach implementation."""
    for p, g, buf in zip(params, grads, bufs, strict=True):
        buf.mul_(group["momentum"]).add_(g)
        u = g + group["momentum"] * buf if group["nesterov"] else buf
        u = newton_schulz5(u, steps=group["ns_steps"]) * max(1.0, p.shape[0] / p.shape[1]) ** 0.5
        p.mul_(1 - group["lr"] * group["weight_decay"]).add_(u, alpha=-group["lr"])


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_muon_matches_reference_and_reads_schedule_from_param_groups(nesterov: bool, weight_decay: float) -> None:
    shapes = [(24, 8), (8, 24), (16, 16)]
    params = [torch.nn.Parameter(_randn(*s, seed=10 + i)) for i, s in enumerate(shapes)]
    ref = [p.detach().clone() for p in params]
    ref_bufs = [torch.zeros_like(p) for p in ref]
    opt = Muon(params, lr=0.02, momentum=0.9, nesterov=nesterov, weight_decay=weight_decay)
    # A trainer-style schedule: lr and momentum change in param_groups between steps.
    schedule = [(0.02, 0.85), (0.05, 0.9), (0.01, 0.95), (0.0, 0.95)]
    for step, (lr, momentum) in enumerate(schedule):
        grads = [_randn(*s, seed=100 * step + i) for i, s in enumerate(shapes)]
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        for group in opt.param_groups:
            group["lr"], group["momentum"] = lr, momentum
        opt.step()
        group = dict(opt.param_groups[0])
        _reference_step(ref, grads, ref_bufs, group)
        for p, r in zip(params, ref, strict=True):
            torch.testing.assert_close(p.detach(), r, rtol=1e-5, atol=1e-6)


def test_muon_lr_zero_leaves_params_and_lr_change_takes_effect() -> None:
    p = torch.nn.Parameter(_randn(16, 8, seed=20))
    before = p.detach().clone()
    opt = Muon([p], lr=0.0)
    p.grad = _randn(16, 8, seed=21)
    opt.step()
    assert torch.equal(p.detach(), before)
    opt.param_groups[0]["lr"] = 0.1
    opt.step()
    assert not torch.equal(p.detach(), before)


def test_muon_momentum_change_takes_effect() -> None:
    def run(second_momentum: float) -> torch.Tensor:
        p = torch.nn.Parameter(_randn(12, 12, seed=30))
        opt = Muon([p], lr=0.05, momentum=0.5)
        for step in range(2):
            p.grad = _randn(12, 12, seed=31 + step)
            opt.step()
            opt.param_groups[0]["momentum"] = second_momentum
        return p.detach()

    assert not torch.allclose(run(0.5), run(0.99))


def test_muon_nesterov_and_plain_differ() -> None:
    def run(nesterov: bool) -> torch.Tensor:
        p = torch.nn.Parameter(_randn(12, 20, seed=40))
        opt = Muon([p], lr=0.05, momentum=0.9, nesterov=nesterov)
        for step in range(3):
            p.grad = _randn(12, 20, seed=41 + step)
            opt.step()
        return p.detach()

    assert not torch.allclose(run(True), run(False))


def test_muon_reduces_least_squares_loss() -> None:
    # min_W ||X W - Y||^2 with a realisable target whose singular values are O(1): Muon moves every
    # singular direction by ~lr per step, so 20 steps of lr 0.05 cover the distance.
    X = _randn(256, 32, seed=50)
    W_true = 0.1 * _randn(32, 16, seed=51)
    Y = X @ W_true
    W = torch.nn.Parameter(torch.zeros(32, 16))
    opt = Muon([W], lr=0.05, momentum=0.9)
    losses = []
    for _ in range(20):
        loss = (X @ W - Y).square().mean()
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(b < a for a, b in zip(losses[:5], losses[1:6], strict=True)), losses
    assert losses[-1] < 0.1 * losses[0], losses


def test_muon_skips_params_without_grad() -> None:
    a = torch.nn.Parameter(_randn(8, 4, seed=60))
    b = torch.nn.Parameter(_randn(8, 4, seed=61))
    b_before = b.detach().clone()
    opt = Muon([a, b], lr=0.1)
    a.grad = _randn(8, 4, seed=62)
    opt.step()
    assert torch.equal(b.detach(), b_before)
    assert "momentum_buffer" not in opt.state[b]


def test_muon_low_precision_param_keeps_fp32_momentum() -> None:
    p = torch.nn.Parameter(_randn(8, 8, seed=63).bfloat16())
    opt = Muon([p], lr=0.01)
    p.grad = _randn(8, 8, seed=64).bfloat16()
    opt.step()
    assert opt.state[p]["momentum_buffer"].dtype == torch.float32
    assert p.dtype == torch.bfloat16


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4), ()])
def test_muon_rejects_non_matrix_params(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="2-D"):
        Muon([torch.nn.Parameter(torch.zeros(shape))])
    opt = Muon([torch.nn.Parameter(torch.zeros(3, 3))])
    with pytest.raises(ValueError, match="2-D"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(shape))]})


def test_muon_world_size_without_process_group_is_an_error() -> None:
    assert not dist.is_initialized()
    with pytest.raises(ValueError, match="init_process_group"):
        Muon([torch.nn.Parameter(torch.zeros(3, 3))], rank=0, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        Muon([torch.nn.Parameter(torch.zeros(3, 3))], rank=2, world_size=2)


# ----------------------------------------------------------------------------- distributed split

# Five matrices over two ranks (3 + 2, uneven on purpose) in two groups with different lr.
_DIST_SHAPES = [(24, 8), (8, 24), (16, 16), (12, 20), (20, 12)]
_DIST_STEPS = 3


def _run_muon(rank: int, world_size: int) -> list[torch.Tensor]:
    params = [torch.nn.Parameter(_randn(*s, seed=70 + i)) for i, s in enumerate(_DIST_SHAPES)]
    groups = [{"params": params[:2], "lr": 0.03}, {"params": params[2:]}]
    opt = Muon(groups, lr=0.02, momentum=0.9, weight_decay=0.01, rank=rank, world_size=world_size)
    for step in range(_DIST_STEPS):
        # Identical gradients on every rank, as after DDP's all-reduce.
        for i, p in enumerate(params):
            p.grad = _randn(*p.shape, seed=1000 * step + i)
        if step == 1:
            params[3].grad = None  # a parameter without gradient must not desynchronise the ranks
        opt.step()
    return [p.detach().clone() for p in params]


def _dist_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)  # two processes on a 2-core machine
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    torch.save(_run_muon(rank, world_size), os.path.join(out_dir, f"rank{rank}.pt"))
    finish_gloo_rank(rank, out_dir)


def _abort_worker(rank: int, out_dir: str, reached_the_end: bool) -> None:
    if reached_the_end:
        Path(out_dir, f"rank{rank}.done").touch()
    if rank == 1:
        deadline = time.monotonic() + 60  # with reached_the_end, abort only once every rank is done, as gloo does
        while reached_the_end and not Path(out_dir, "rank0.done").is_file() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.abort()


@pytest.mark.parametrize("reached_the_end", [True, False])
def test_spawn_gloo_forgives_only_an_abort_after_every_rank_finished(tmp_path: Path, reached_the_end: bool) -> None:
    if reached_the_end:
        spawn_gloo(_abort_worker, (str(tmp_path), True), 2, tmp_path)
    else:
        with pytest.raises(mp.ProcessExitedException, match="SIGABRT"):
            spawn_gloo(_abort_worker, (str(tmp_path), False), 2, tmp_path)


def test_muon_two_rank_gloo_split_matches_single_process(tmp_path: Path) -> None:
    expected = _run_muon(rank=0, world_size=1)
    spawn_gloo(_dist_worker, (2, str(tmp_path / "pg_init"), str(tmp_path)), 2, tmp_path)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for g, e in zip(got, expected, strict=True):
            torch.testing.assert_close(g, e, rtol=0, atol=1e-6)
