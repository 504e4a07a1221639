"""Collapse diagnostics and the warmdown modes, as pure functions (no training)."""

from __future__ import annotations

import math

import pytest
import torch

from jepagolf.config import ConfigError, build_config
from jepagolf.jepa.diagnostics import gradient_share, representation_diagnostics
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
