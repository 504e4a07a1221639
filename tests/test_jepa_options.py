"""JEPA efficiency options: batch fraction, every-k steps, online targets, one batched forward.

Each test pins the semantics an option promises (which rows, which targets, which gradients) and its
FLOP accounting; none of them times anything (timings live in `jepagolf bench`).
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from helpers import finish_gloo_rank, live_model, spawn_gloo
from hypothesis import given
from hypothesis import strategies as st

from jepagolf.config import ConfigError, build_config
from jepagolf.jepa.masking import jepa_rows, sample_mask, span_generator
from jepagolf.jepa.objective import JepaLM
from jepagolf.research.flops import flops_per_token, train_flops_per_token
from jepagolf.train import schedules
from jepagolf.train.loop import Trainer
from jepagolf.train.runtime import Runtime
from jepagolf.train.validation import load_val_data

CPU = Runtime(device=torch.device("cpu"))


def smoke_cfg(**over):
    return build_config("smoke", {k: str(v) for k, v in over.items()}, environ={})


def batch(cfg, rows: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    T, V = cfg.train.train_seq_len, cfg.model.vocab_size
    return torch.randint(0, V, (rows, T), generator=g), torch.randint(0, V, (rows, T), generator=g)


def grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def run_forward(model, x, y, mask, target_z, lam=0.12):
    model.zero_grad(set_to_none=True)
    ce, jl, stats = model(x, y, mask, target_z)
    (ce + lam * jl).backward()
    return ce.detach(), jl.detach(), grads(model)


# ----- config ---------------------------------------------------------------------------------------

def test_defaults_are_v3_as_specified_and_bad_values_are_rejected():
    j = build_config("v3", {}, environ={}).jepa
    assert (j.jepa_batch_fraction, j.jepa_every, j.jepa_target, j.jepa_batched) == (1.0, 1, "ema", False)
    for key, bad in (("jepa_batch_fraction", "0"), ("jepa_batch_fraction", "1.5"), ("jepa_every", "0"),
                     ("jepa_target", "teacher")):
        with pytest.raises(ConfigError, match=key):
            build_config("smoke", {key: bad}, environ={})


# ----- batch fraction -------------------------------------------------------------------------------

@given(batch_rows=st.integers(1, 512), num=st.integers(1, 100), den=st.integers(1, 100))
def test_jepa_rows_is_the_ceiling_of_the_fraction(batch_rows, num, den):
    if num > den:
        num, den = den, num
    f = num / den
    want = -(-num * batch_rows // den)  # exact ceil(num * B / den) in integers
    assert jepa_rows(batch_rows, f) == max(1, want)


def test_batch_fraction_masks_exactly_the_first_rows():
    # Per-sequence spans make every row's mask different, so a wrong row choice would show.
    cfg = smoke_cfg(jepa_batch_fraction=0.3, jepa_span_per_sequence="true")
    model = live_model(cfg)
    B = 8
    r = math.ceil(0.3 * B)
    x, y = batch(cfg, B)
    full = sample_mask(B, 64, 4, 1 / 16, 4, True, span_generator(1, 2, 3))
    part = sample_mask(r, 64, 4, 1 / 16, 4, True, span_generator(1, 2, 3))
    assert torch.equal(part, full[:r])  # the fraction's masks are those of a full-batch draw
    with torch.no_grad():
        tz = model.gpt.encode(x[:r])
        _, jl, _ = model(x, y, part, tz)
        x2 = x.clone()
        x2[r:] = (x2[r:] + 1) % cfg.model.vocab_size  # rows outside the fraction cannot move the JEPA loss
        _, jl2, _ = model(x2, y, part, tz)
        x3 = x.clone()
        x3[r - 1] = (x3[r - 1] + 1) % cfg.model.vocab_size  # a row inside it does
        _, jl3, _ = model(x3, y, part, tz)
    assert torch.equal(jl, jl2) and not torch.allclose(jl, jl3)


class Recorder(torch.nn.Module):
    """Stands in for the wrapped forward module and remembers the JEPA inputs of each call."""

    def __init__(self, model: JepaLM) -> None:
        super().__init__()
        self.model, self.calls = model, []

    def forward(self, x, y, mask, target_z, mask_pos):
        self.calls.append((x, mask, target_z, mask_pos))
        return self.model(x, y, mask, target_z, mask_pos)


@pytest.fixture(scope="module")
def val_data(demo_data):
    return load_val_data(smoke_cfg(), demo_data, torch.device("cpu"))


def make_trainer(tmp_path, demo_data, val_data, **over) -> Trainer:
    tr = Trainer(smoke_cfg(**over), CPU, tmp_path, demo_data, val=val_data)
    tr.logger.close()
    return tr


def test_trainer_feeds_the_first_rows_and_host_computed_positions(tmp_path, demo_data, val_data):
    tr = make_trainer(tmp_path, demo_data, val_data, jepa_batch_fraction=0.25, jepa_span_per_sequence="true")
    rec = tr.forward_module = Recorder(tr.model)
    chunk = tr.stream.take(tr.cfg.train.train_batch_tokens + 1)
    tr.forward_backward(chunk)
    assert len(rec.calls) == tr.grad_accum == 2
    for a, (x, mask, target_z, pos) in enumerate(rec.calls):
        B = x.size(0)
        r = math.ceil(0.25 * B)
        assert mask.shape == (r, 64) and target_z.shape == (r, 64, 64)
        full = sample_mask(B, 64, *tr.cfg.jepa.span_plan(64), True, span_generator(tr.cfg.train.seed, 0, a))
        assert torch.equal(mask, full[:r])
        assert torch.equal(pos, mask.reshape(-1).nonzero().squeeze(1))
        with torch.no_grad():
            assert torch.equal(target_z, tr.target.encode(x[:r]))  # EMA target on exactly those rows


# ----- online target --------------------------------------------------------------------------------

@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_online_target_is_the_detached_ce_pass(fraction):
    cfg = smoke_cfg(jepa_target="online", jepa_batch_fraction=fraction)
    model = live_model(cfg)
    x, y = batch(cfg)
    r = jepa_rows(4, fraction)
    mask = sample_mask(r, 64, 4, 1 / 16, 4, True, torch.Generator().manual_seed(5))
    ce, jl, g_online = run_forward(model, x, y, mask, None)
    with torch.no_grad():
        explicit = model.gpt.encode(x)[:r]  # what the CE pass computes, as a constant
    ce2, jl2, g_explicit = run_forward(model, x, y, mask, explicit)
    assert torch.equal(ce, ce2) and torch.equal(jl, jl2)
    # Identical gradients: nothing flows back through the target side.
    assert g_online.keys() == g_explicit.keys()
    for n in g_online:
        torch.testing.assert_close(g_online[n], g_explicit[n], rtol=0, atol=0, msg=n)


def test_online_target_builds_no_target_encoder(tmp_path, demo_data, val_data):
    tr = make_trainer(tmp_path, demo_data, val_data, jepa_target="online")
    assert tr.target is None
    stats = tr.forward_backward(tr.stream.take(tr.cfg.train.train_batch_tokens + 1))
    assert "jepa_loss" in stats and math.isfinite(float(stats["jepa_loss"]))
    with pytest.raises(ValueError, match="target_z"):
        ema = live_model(smoke_cfg())
        x, y = batch(ema.cfg)
        ema(x, y, sample_mask(4, 64, 4, 1 / 16, 4, False, torch.Generator().manual_seed(0)), None)


# ----- one batched forward --------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["ema", "online"])
@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_batched_forward_matches_two_forwards(target, fraction):
    cfg = smoke_cfg(jepa_target=target, jepa_batch_fraction=fraction)
    model = live_model(cfg)
    x, y = batch(cfg)
    r = jepa_rows(4, fraction)
    mask = sample_mask(r, 64, 4, 1 / 16, 4, True, torch.Generator().manual_seed(2))
    tz = None
    if target == "ema":
        with torch.no_grad():
            tz = copy.deepcopy(model.gpt).encode(x[:r]) * 0.9  # any fixed target
    ce, jl, g_two = run_forward(model, x, y, mask, tz)
    model.cfg = smoke_cfg(jepa_target=target, jepa_batch_fraction=fraction, jepa_batched="true")
    ce_b, jl_b, g_one = run_forward(model, x, y, mask, tz)
    torch.testing.assert_close(ce_b, ce, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(jl_b, jl, rtol=1e-5, atol=1e-6)
    assert g_two.keys() == g_one.keys() and "mask_emb" in g_one and "predictor.fc.weight" in g_one
    for n in g_two:
        torch.testing.assert_close(g_one[n], g_two[n], rtol=1e-4, atol=1e-6, msg=n)


# ----- every k steps --------------------------------------------------------------------------------

@given(k=st.integers(1, 6), warm=st.integers(0, 20), start=st.integers(0, 200))
def test_jepa_every_keeps_the_expected_weight(k, warm, start):
    cfg = smoke_cfg(jepa_every=k, jepa_lambda_warmup_steps=warm)
    for s in range(start, start + 3 * k):
        w = schedules.jepa_step_weight(cfg, s)
        assert w == (k * schedules.jepa_lambda(cfg, s) if s % k == 0 else 0.0)
    if start >= warm:  # past the ramp: the weight averaged over any k consecutive steps is lambda
        window = [schedules.jepa_step_weight(cfg, s) for s in range(start, start + k)]
        assert sum(window) / k == pytest.approx(cfg.jepa.jepa_lambda)


def test_jepa_every_scales_the_gradient_and_skips_the_other_steps(tmp_path, demo_data, val_data):
    # Same init in all three (the GPT is built first from the same seed), same batch, no update between.
    k = 3
    ce_only = make_trainer(tmp_path / "ce", demo_data, val_data, jepa="false")
    every1 = make_trainer(tmp_path / "e1", demo_data, val_data)
    everyk = make_trainer(tmp_path / "ek", demo_data, val_data, jepa_every=k)
    chunk = ce_only.stream.take(ce_only.cfg.train.train_batch_tokens + 1)
    for tr in (ce_only, every1, everyk):
        tr.forward_backward(chunk)
    g_ce, g_1, g_k = (grads(tr.model.gpt) for tr in (ce_only, every1, everyk))
    for n in g_ce:  # step 0 is a JEPA step: ce + k*lambda*jepa
        torch.testing.assert_close(g_k[n] - g_ce[n], k * (g_1[n] - g_ce[n]), rtol=1e-4, atol=1e-7, msg=n)
    assert everyk.model.predictor.fc.weight.grad is not None
    # Step 1 skips JEPA: the plain CE gradient, and no gradient at all for the JEPA-only parameters,
    # so that neither Adam nor Muon moves them on momentum alone.
    for tr in (ce_only, everyk):
        tr.model.zero_grad(set_to_none=True)
        tr.step = 1
        tr.forward_backward(chunk)
    g_ce, g_k = grads(ce_only.model.gpt), grads(everyk.model.gpt)
    for n in g_ce:
        torch.testing.assert_close(g_k[n], g_ce[n], rtol=0, atol=0, msg=n)
    assert everyk.model.predictor.fc.weight.grad is None and everyk.model.mask_emb.grad is None
    # The EMA target still moves on a step without JEPA.
    before = [p.clone() for p in everyk.target.parameters()]
    everyk.apply_update()
    assert any(not torch.equal(b, p) for b, p in zip(before, everyk.target.parameters(), strict=True))


def _ddp_worker(rank: int, world_size: int, init_file: str, out_dir: str, data_dir: str, tok: str) -> None:
    from jepagolf.data.corpus import DatasetPaths

    torch.set_num_threads(1)  # two processes on a 2-core machine
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        cfg = smoke_cfg(jepa_every=2)
        rt = Runtime(device=torch.device("cpu"), rank=rank, world_size=world_size)
        tr = Trainer(cfg, rt, Path(out_dir) / f"r{rank}", DatasetPaths(Path(data_dir), Path(tok)))
        seen = []
        for _ in range(3):  # JEPA, plain, JEPA: DDP must not wait for the predictor's gradient
            tr.train_step()
            seen.append(tr.model.predictor.fc.weight.grad is not None)
            tr.apply_update()
            tr.step += 1
        torch.save({"seen": seen, "params": [p.detach().clone() for p in tr.model.parameters()]},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    except BaseException:
        dist.destroy_process_group()
        raise
    finish_gloo_rank(rank, out_dir)


def test_jepa_every_under_ddp(tmp_path, demo_data):
    spawn_gloo(_ddp_worker, (2, str(tmp_path / "pg"), str(tmp_path), str(demo_data.data_dir),
                             str(demo_data.tokenizer)), 2, tmp_path)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert r0["seen"] == r1["seen"] == [True, False, True]
    for a, b in zip(r0["params"], r1["params"], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# ----- FLOP accounting ------------------------------------------------------------------------------

def test_flops_of_each_option():
    v3 = flops_per_token(build_config("cpu-demo", {}, environ={}))
    ce = train_flops_per_token(build_config("cpu-demo", {"jepa": "false"}, environ={}))
    assert ce == v3.ce_step
    extra = 3 * v3.body_fwd + v3.body_fwd + 3 * v3.predictor_fwd * v3.mask_frac  # context + target + predictor
    assert v3.jepa_step == pytest.approx(ce + extra)

    def f(**over):
        return train_flops_per_token(build_config("cpu-demo", {k: str(v) for k, v in over.items()}, environ={}))

    rows = 4096 // 256
    assert f(jepa_batch_fraction=0.25) == pytest.approx(ce + extra * math.ceil(0.25 * rows) / rows)
    assert f(jepa_batch_fraction=0.3) == pytest.approx(ce + extra * math.ceil(0.3 * rows) / rows)
    assert f(jepa_every=4) == pytest.approx(ce + extra / 4)
    assert f(jepa_target="online") == pytest.approx(ce + extra - v3.body_fwd)  # no target pass
    assert f(jepa_batched="true") == pytest.approx(v3.jepa_step)  # same work in fewer kernels
    assert f(jepa_target="online", jepa_batch_fraction=0.25, jepa_every=2) == pytest.approx(
        ce + (extra - v3.body_fwd) * 0.25 / 2)
