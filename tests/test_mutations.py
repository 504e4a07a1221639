"""Tests aimed at small defects that once passed the whole suite (issue 14, part 9).

Each test names the mutation it catches; each was checked by putting the mutation back by hand.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from helpers import live_model

from jepagolf.config import build_config
from jepagolf.jepa.losses import jepa_loss, vicreg_covariance, vicreg_variance
from jepagolf.jepa.masking import sample_mask, span_generator
from jepagolf.jepa.target import WeightEMA, make_target_encoder
from jepagolf.model.gpt import GPT, rms_norm
from jepagolf.optim.groups import build_optimizers
from jepagolf.train.loop import Trainer
from jepagolf.train.runtime import Runtime


def smoke_cfg(**over):
    return build_config("smoke", {k: str(v) for k, v in over.items()}, environ={})


# ----- VICReg on the predictor side ---------------------------------------------------------------

def test_vicreg_terms_act_on_the_predictions_not_the_targets():
    # Mutation: var and cov computed on the target. Predictions here are narrow (std 0.1) and correlated,
    # the targets wide and independent, so the two sides' terms differ by far, and only the prediction's
    # carry a gradient.
    g = torch.Generator().manual_seed(0)
    base = torch.randn(256, 1, generator=g)
    pred = (0.1 * (base + 0.3 * torch.randn(256, 8, generator=g))).requires_grad_()
    target = 2.0 * torch.randn(256, 8, generator=g)
    loss, stats = jepa_loss(pred, target, 0.15, 0.02)
    want = F.mse_loss(pred, target) + 0.15 * vicreg_variance(pred) + 0.02 * vicreg_covariance(pred)
    assert torch.allclose(loss, want, rtol=1e-6)
    assert torch.equal(stats["jepa_var"], vicreg_variance(pred).detach())
    assert torch.equal(stats["target_var"], vicreg_variance(target))
    assert float(stats["jepa_var"]) > 0.8 > float(stats["target_var"])
    (got,) = torch.autograd.grad(loss, pred)
    (ref,) = torch.autograd.grad(want, pred)
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-9)


# ----- the mask in the context pass and in the loss -----------------------------------------------

def spans_mask(T: int) -> torch.Tensor:
    """(2, T) per-row masks; spans can end the sequence, so a shift would also wrap or overflow."""
    mask = torch.zeros(2, T, dtype=torch.bool)
    mask[0, 5:12] = mask[0, 30:34] = mask[1, 0:4] = mask[1, T - 6:] = True
    return mask


def test_the_context_pass_hides_exactly_the_masked_positions():
    # Mutation: the mask shifted by one in the context pass. The embedding is mask_emb at exactly the
    # masked positions; the position after a span keeps its own token without the bigram term.
    cfg = smoke_cfg()
    model = live_model(cfg)
    T = cfg.train.train_seq_len
    x = torch.randint(0, cfg.model.vocab_size, (2, T), generator=torch.Generator().manual_seed(1))
    mask = spans_mask(T)
    after = F.pad(mask[:, :-1], (1, 0)) & ~mask
    with torch.no_grad():
        x0 = model.gpt.embed(x, mask, model.mask_emb)
        plain = model.gpt.embed(x)
        assert torch.equal(x0[mask], rms_norm(model.mask_emb).expand(int(mask.sum()), -1))
        assert torch.equal(x0[after], rms_norm(model.gpt.tok_emb(x))[after])
        rest = ~mask & ~after
        assert torch.equal(x0[rest], plain[rest])


@pytest.mark.parametrize("batched", [False, True])
def test_the_loss_is_taken_at_exactly_the_masked_positions(batched):
    # Mutations: the mask shifted by one in the forward's context pass only, or in both its pass and its
    # loss positions. The JEPA loss is rebuilt here from its parts at the given mask's positions.
    cfg = smoke_cfg(jepa_batched=batched)
    model = live_model(cfg)
    T, D = cfg.train.train_seq_len, cfg.model.model_dim
    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, cfg.model.vocab_size, (2, T), generator=g)
    mask = spans_mask(T)
    target_z = torch.randn(2, T, D, generator=g)
    with torch.no_grad():
        _, jl, stats = model(x, x, mask, target_z)
        z_ctx = model.gpt.encode(x, mask, model.mask_emb)
        want, _ = jepa_loss(model.predictor(z_ctx[mask]), target_z[mask], 0.15, 0.02)
    assert torch.allclose(jl, want, rtol=1e-5, atol=1e-7)
    assert float(stats["mask_frac"]) == float(mask.float().mean())


# ----- the span generator -------------------------------------------------------------------------

def test_span_generator_is_its_own_and_leaves_the_global_rng_alone():
    # Mutation: span_generator reseeds torch.default_generator and returns it.
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = span_generator(1, 2, 3)
    b = span_generator(1, 2, 4)
    assert a is not torch.default_generator and a is not b
    assert torch.equal(torch.get_rng_state(), state)
    draws = torch.randint(0, 1000, (8,), generator=a)
    assert torch.equal(draws, torch.randint(0, 1000, (8,), generator=span_generator(1, 2, 3)))
    mask = sample_mask(2, 64, 1, 0.25, 1, True, b)
    assert torch.equal(mask, sample_mask(2, 64, 1, 0.25, 1, True, span_generator(1, 2, 4)))
    assert torch.equal(torch.get_rng_state(), state)


# ----- the artifact EMA ---------------------------------------------------------------------------

def test_artifact_ema_is_updated_after_the_optimizer_step():
    # Mutations: the artifact EMA update moved before the optimizer step, or skipped. With decay 0 the
    # EMA must hold exactly the weights the optimizer step produced.
    cfg = smoke_cfg(artifact_ema_decay=0.0)
    model = live_model(cfg)  # perturbed zero-init projections: every weight gets a gradient
    state = SimpleNamespace(cfg=cfg, step=0, elapsed_s=0.0, train_budget_s=None, model=model,
                            optimizers=build_optimizers(model, cfg.optim),
                            target=make_target_encoder(model.gpt), artifact_ema=WeightEMA(model.gpt, 0.0))
    before = [p.detach().clone() for p in model.gpt.parameters()]
    T = cfg.train.train_seq_len
    x = torch.randint(0, cfg.model.vocab_size, (4, T), generator=torch.Generator().manual_seed(3))
    ce, _, _ = model(x, x)
    ce.backward()
    Trainer.apply_update(state)
    moved = 0
    for p, b, e in zip(model.gpt.parameters(), before, state.artifact_ema.shadow, strict=True):
        assert torch.allclose(e, p, rtol=0, atol=1e-7)
        moved += not torch.equal(p, b)
    assert moved == len(before) and state.artifact_ema.updates == 1


def test_artifact_ema_is_not_dominated_by_the_init(demo_data, tmp_path):
    # Defect 3: with decay 0.9999 from step 0 a short run would export (almost) the random init. The
    # unquantised EMA weights must sit much nearer the live weights than the init (a frozen EMA is the init).
    cfg = smoke_cfg(artifact_ema_decay=0.9999, iterations=30, val_max_tokens=4096)
    tr = Trainer(cfg, Runtime(device=torch.device("cpu")), tmp_path, demo_data)
    tr.logger.close()
    torch.manual_seed(cfg.train.seed)
    init = GPT(cfg.model, cfg.train.train_seq_len).state_dict()
    assert all(torch.equal(init[k], v) for k, v in tr.model.gpt.state_dict().items())  # the same init
    for _ in range(30):
        tr.train_step()
        tr.apply_update()
        tr.step += 1
    live, ema = tr.model.gpt.state_dict(), tr.artifact_ema.state_dict()
    for k in (k for k in init if k.endswith("fc.weight")):
        to_live, init_to_live = (ema[k] - live[k]).norm(), (init[k] - live[k]).norm()
        assert to_live < 0.5 * init_to_live, (k, float(to_live), float(init_to_live))
