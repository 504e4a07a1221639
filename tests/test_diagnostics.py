"""Collapse diagnostics and the warmdown modes, as pure functions (no training)."""

from __future__ import annotations

import math

import pytest
import torch

from jepagolf.config import ConfigError, build_config
from jepagolf.jepa.diagnostics import (
    explained_variance,
    gradient_share,
    other_rows_mean,
    predictiveness,
    representation_diagnostics,
    share_group_order,
    term_shares,
)
from jepagolf.jepa.objective import JepaLM
from jepagolf.jepa.target import make_target_encoder
from jepagolf.train import schedules


def test_gradient_share_splits_known_gradients():
    # ce = a.w + c.v and jepa = b.w: d ce/dw = a, d jepa/dw = b, v is outside the JEPA graph.
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0, -1.0]))
    v = torch.nn.Parameter(torch.tensor([0.5]))
    a, b, c = torch.tensor([3.0, 0.0, 4.0]), torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.0])
    ce = (a * w).sum() + (c * v).sum()
    jepa = (b * w).sum()
    out = gradient_share(ce, 0.5 * jepa, [w, v])
    assert out["ce_grad_norm"] == pytest.approx(5.0)
    assert out["jepa_grad_norm"] == pytest.approx(0.5)
    assert out["jepa_grad_share"] == pytest.approx(0.5 / 5.5)
    assert out["grad_cos_ce_jepa"] == pytest.approx(0.0)
    assert w.grad is None and v.grad is None  # the training gradients are untouched
    (ce + 0.5 * jepa).backward()  # the graph was retained for the ordinary backward
    assert torch.allclose(w.grad, a + 0.5 * b)


def test_gradient_share_cosine_sign():
    w = torch.nn.Parameter(torch.tensor([1.0, 1.0]))
    out = gradient_share((w * torch.tensor([1.0, 2.0])).sum(), (w * torch.tensor([-2.0, -4.0])).sum(), [w])
    assert out["grad_cos_ce_jepa"] == pytest.approx(-1.0)
    assert out["jepa_grad_share"] == pytest.approx(2 / 3)


def test_representation_diagnostics_detect_collapse():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(2048, 16, generator=g)
    healthy = representation_diagnostics(target + 0.1 * torch.randn(2048, 16, generator=g), target)
    assert healthy["pred_target_cos"] > 0.99
    assert healthy["pred_erank"] > 14 and healthy["target_erank"] > 14  # isotropic: close to D = 16
    assert 0.9 < float(healthy["pred_std_min"]) < 1.1
    # Every prediction on one line: rank 1, and some features carry no variance at all.
    line = torch.randn(2048, 1, generator=g) * torch.tensor([1.0] + [0.0] * 15)
    collapsed = representation_diagnostics(line, target)
    assert collapsed["pred_erank"] == pytest.approx(1.0, abs=1e-3)
    assert float(collapsed["pred_std_min"]) == pytest.approx(1e-2, rel=1e-3)  # sqrt(0 + eps)
    assert abs(float(collapsed["pred_target_cos"])) < 0.1


def _cfg(**over):
    base = {"iterations": 100, "warmdown_iters": 20, "max_wallclock_seconds": 100.0}
    return build_config("smoke", {**base, **over}, environ={})


def test_warmdown_modes():
    auto, steps = _cfg(iterations=1000), _cfg(iterations=1000, warmdown_mode="steps")
    # Step 90 after 90 s: 1 s/step, so 20 steps of warmdown are 20 s; 10 s remain -> half.
    assert schedules.lr_scale(auto, 90, 90.0) == pytest.approx(0.5)
    assert schedules.lr_scale(_cfg(iterations=1000, warmdown_mode="wallclock"), 90, 90.0) == pytest.approx(0.5)
    assert schedules.lr_scale(steps, 90, 90.0) == 1.0  # the clock does not matter
    assert schedules.lr_scale(steps, 990, 9999.0) == pytest.approx(0.5)
    assert schedules.lr_scale(steps, 1000, 1.0) == 0.0
    assert schedules.lr_scale(_cfg(), 90, 1.0) == pytest.approx(0.5)  # auto: the step limit still applies
    # reference: under a cap the clock alone decides (a run that `iterations` ends first never warms down) ...
    reference = _cfg(warmdown_mode="reference")
    assert schedules.lr_scale(reference, 90, 1.0) == 1.0
    assert schedules.lr_scale(reference, 90, 90.0) == pytest.approx(0.5)
    # ... without one, the steps do; a training budget (the cap less the calibration reserve) moves the clock's end
    assert schedules.lr_scale(_cfg(warmdown_mode="reference", max_wallclock_seconds=0), 90, 1.0) == pytest.approx(0.5)
    assert schedules.lr_scale(auto, 80, 80.0, budget_s=90.0) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="max_wallclock_seconds"):
        _cfg(warmdown_mode="wallclock", max_wallclock_seconds=0)
    with pytest.raises(ConfigError, match="warmdown_mode"):
        _cfg(warmdown_mode="linear")
    with pytest.raises(ConfigError, match="diag_every"):
        _cfg(diag_every=-2)
    assert not math.isnan(schedules.lr_scale(steps, 0, 0.0))


# ----- inert or useful: R^2, loss-term shares, per-block gradient shares --------------------------

def test_explained_variance_of_known_predictors():
    g = torch.Generator().manual_seed(1)
    signal = torch.randn(4096, 8, generator=g) * 3.0 + 5.0  # an offset shared by all rows, as in z
    target = signal + torch.randn(4096, 8, generator=g)  # noise variance 1 of 10 in total
    assert float(explained_variance(target, target)) == 1.0
    assert float(explained_variance(signal, target)) == pytest.approx(0.9, abs=0.01)
    assert float(explained_variance(target.mean(0).expand_as(target), target)) == pytest.approx(0.0, abs=1e-6)
    # Right direction and scale of the shared offset, nothing of the variation: R^2 near 0 despite cosine ~1.
    assert float(explained_variance(torch.full_like(target, 5.0), target)) == pytest.approx(0.0, abs=0.01)
    assert float(explained_variance(-signal, target)) < -1  # worse than the mean
    assert math.isnan(float(explained_variance(target[:10], torch.ones(10, 8))))  # targets that do not vary


def test_constant_reference_is_out_of_sample_and_near_zero():
    g = torch.Generator().manual_seed(2)
    target = torch.randn(2000, 8, generator=g) + 3.0
    rows = torch.arange(2000) // 100  # 20 rows of 100 masked positions
    const = other_rows_mean(target, rows)
    odd = rows % 2 == 1
    assert torch.allclose(const[~odd], target[odd].mean(0).expand(int((~odd).sum()), 8))
    r2 = float(explained_variance(const, target))
    assert -0.02 < r2 < 0  # out of sample: a little below the in-sample mean's 0
    one_row = other_rows_mean(target, torch.zeros(2000, dtype=torch.long))  # halves by position parity
    assert torch.allclose(one_row[0], target[1::2].mean(0))


def test_predictiveness_references():
    g = torch.Generator().manual_seed(3)
    context = torch.randn(512, 8, generator=g)
    target = context @ torch.randn(8, 8, generator=g)  # a linear function of the context
    out = predictiveness(target, target, context, torch.arange(512) // 64)
    assert float(out["r2_pred"]) == 1.0
    assert float(out["r2_identity"]) < 0.5 and abs(float(out["r2_const"])) < 0.05


def test_term_shares_sum_to_one():
    stats = {"jepa_mse": torch.tensor(0.03), "jepa_var": torch.tensor(0.9), "jepa_cov": torch.tensor(0.5)}
    shares = term_shares(stats, 0.15, 0.02)
    total = 0.03 + 0.135 + 0.01
    assert float(shares["jepa_share_mse"]) == pytest.approx(0.03 / total)
    assert float(shares["jepa_share_var"]) == pytest.approx(0.135 / total)
    assert float(sum(shares.values())) == pytest.approx(1.0)


def test_gradient_share_per_block():
    # Block 0 gets only CE gradient, block 1 only JEPA, the embedding both equally.
    e, w0, w1 = (torch.nn.Parameter(torch.ones(2)) for _ in range(3))
    ce = (e * torch.tensor([3.0, 4.0])).sum() + (w0 * 2.0).sum()
    jepa = (e * torch.tensor([4.0, 3.0])).sum() + (w1 * 1.0).sum()
    names = ["tok_emb.weight", "blocks.0.attn.c_q.weight", "blocks.1.mlp.fc.weight"]
    out = gradient_share(ce, jepa, [e, w0, w1], names)
    assert out["jepa_grad_share_embed"] == pytest.approx(0.5)
    assert out["jepa_grad_share_block0"] == 0.0 and out["jepa_grad_share_block1"] == 1.0
    order = ["jepa_grad_share_embed", "jepa_grad_share_block2", "jepa_grad_share_block10", "jepa_grad_share_other"]
    assert sorted(reversed(order), key=share_group_order) == order


def test_untrained_predictor_is_the_identity_predictor():
    # W2 is zero-initialised: the predictor returns its input, so its R^2 is exactly the identity's.
    cfg = build_config("smoke", {}, environ={})
    torch.manual_seed(0)
    model = JepaLM(cfg)
    x = torch.randint(0, cfg.model.vocab_size, (2, 64))
    mask = torch.zeros(2, 64, dtype=torch.bool)
    mask[:, 10:30] = True
    _, jl, stats = model(x, x, mask, make_target_encoder(model.gpt).encode(x), diagnostics=True)
    assert float(stats["r2_pred"]) == float(stats["r2_identity"])
    shares = [float(stats[f"jepa_share_{k}"]) for k in ("mse", "var", "cov")]
    assert sum(shares) == pytest.approx(1.0) and min(shares) >= 0


@pytest.mark.parametrize("over", [
    {"jepa_mode": "nextk", "jepa_horizons": 2},
    {"jepa_mode": "nextk", "jepa_horizons": 3, "jepa_nextk_rollout": True},
    {"jepa_mode": "chunk", "jepa_chunk_size": 8, "jepa_target": "online"},
])
def test_every_mode_reports_r2_against_its_references(over):
    """The modes without masks report R^2 too, with the identity reference being what their predictor reads
    (the state at t for t+1; chunk c-1's pooled latent for chunk c): an untrained predictor (zero W2, the
    identity) scores exactly the identity's R^2, and the constant reference is near 0."""
    cfg = build_config("smoke", {"jepa": True, **over}, environ={})
    torch.manual_seed(0)
    model = JepaLM(cfg)
    x = torch.randint(0, cfg.model.vocab_size, (4, 64))
    target = None if cfg.jepa.jepa_target == "online" else make_target_encoder(model.gpt).encode(x)
    _, _, stats = model(x, x, None, target, diagnostics=True, jepa=True)
    assert float(stats["r2_pred"]) == float(stats["r2_identity"])
    assert abs(float(stats["r2_const"])) < 0.5 and float(stats["r2_identity"]) <= 1
