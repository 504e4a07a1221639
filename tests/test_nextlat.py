"""NextLat as a recipe (issue 19, item 4): a token-conditioned transition from the CE pass's state at t and
token t+1 to the state at t+1, rolled out to t+k, on detached targets of the same pass.

What is pinned: no token after t+k reaches the prediction of t+k; the rollout is the transition applied to its
own output; an untrained transition is the identity reference; its parameters are in exactly one optimizer
group; the KL switch; its FLOPs; it trains through the trainer with its R^2 diagnostics. No timings here.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import live_model

from jepagolf.config import ConfigError, build_config
from jepagolf.jepa.objective import JepaLM
from jepagolf.jepa.predictors import NextLatPredictor
from jepagolf.model.gpt import rms_norm
from jepagolf.optim.groups import build_optimizers, check_groups, route_params
from jepagolf.research.bench import VARIANTS, variant_overrides
from jepagolf.research.flops import flops_per_token
from jepagolf.train.run import train
from jepagolf.train.runtime import Runtime

T, D = 64, 64  # the smoke preset's sequence length and width


def smoke_cfg(**over):
    return build_config("smoke", {k: str(v) for k, v in over.items()}, environ={})


def tokens(cfg, rows: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, cfg.model.vocab_size, (rows, cfg.train.train_seq_len), generator=g)


def predictions(model: JepaLM, x: torch.Tensor) -> list[torch.Tensor]:
    """Horizon k's predictions as (rows, T-k, D): index i predicts the state at i + k. The whole path: the CE
    pass, then the transition on its states and the tokens."""
    with torch.no_grad():
        ctx = model.gpt.encode(x)
        pairs = model.prediction_pairs(ctx, torch.zeros_like(ctx), None, None, x)
    return [p.view(x.size(0), T - k, D) for k, (p, _, _) in enumerate(pairs, start=1)]


def test_recipe_values():
    j = smoke_cfg(jepa_recipe="nextlat").jepa
    assert (j.jepa_mode, j.jepa_horizons, j.jepa_target, j.jepa_loss_fn) == ("nextlat", 1, "online", "smooth_l1")
    assert j.jepa_target_stopgrad and j.jepa_nextlat_kl_weight == 0 and j.jepa_var_mode == "off"
    assert smoke_cfg(jepa_recipe="nextlat-kl").jepa.jepa_nextlat_kl_weight == 1.0
    assert smoke_cfg(jepa_recipe="nextlat", jepa_loss_fn="mse").jepa.jepa_loss_fn == "mse"  # the loss switch


@pytest.mark.parametrize("k", [1, 3])
def test_no_token_after_t_plus_k_reaches_the_prediction_of_t_plus_k(k):
    """Perturb every token after position p: each horizon's predictions of the states at <= p stay bitwise the
    same; the prediction of p + 1 reads token p + 1 and moves."""
    cfg = smoke_cfg(jepa_recipe="nextlat", jepa_horizons=k)
    model = live_model(cfg)  # the zero-initialised W2 perturbed: the transition is not the identity
    x = tokens(cfg)
    p = 30
    x2 = x.clone()
    x2[:, p + 1:] = (x2[:, p + 1:] + 7) % cfg.model.vocab_size
    for h, (a, b) in enumerate(zip(predictions(model, x), predictions(model, x2), strict=True), start=1):
        assert torch.equal(a[:, : p - h + 1], b[:, : p - h + 1])  # index i predicts i + h <= p
        assert not torch.allclose(a[:, p - h + 1], b[:, p - h + 1])  # i + h = p + 1: token p + 1 is an input


def test_rollout_feeds_the_transition_its_own_output():
    cfg = smoke_cfg(jepa_recipe="nextlat", jepa_horizons=3, jepa_horizon_decay=0.5)
    model = live_model(cfg)
    x = tokens(cfg)
    P = model.predictor
    assert isinstance(P, NextLatPredictor)
    with torch.no_grad():
        ctx = model.gpt.encode(x)
        tgt = torch.randn_like(ctx)
        pairs = model.prediction_pairs(ctx, tgt, None, None, x)
        e = P.token_input(model.gpt.tok_emb(x))  # (r, T, H)
        one = P(ctx[:, : T - 1], e[:, 1:])  # index i: the state at i + 1
        two = P(one[:, : T - 2], e[:, 2:])  # index i: the state at i + 2, from the prediction of i + 1
    assert [w for _, _, w in pairs] == [1.0, 0.5, 0.25]
    assert torch.equal(pairs[0][0], one.reshape(-1, D)) and torch.equal(pairs[1][0], two.reshape(-1, D))
    assert torch.equal(pairs[1][1], tgt[:, 2:].reshape(-1, D))  # the target of horizon 2 is the state at i + 2


def test_target_is_the_same_pass_detached():
    cfg = smoke_cfg(jepa_recipe="nextlat")
    model = live_model(cfg)
    x = tokens(cfg)
    _, jl, stats = model(x, x, jepa=True)
    z = model.gpt.encode(x)
    with torch.no_grad():
        (pred, _, _), = model.prediction_pairs(z, z, None, None, x)
    assert torch.equal(stats["jepa_regress"], F.smooth_l1_loss(pred, z[:, 1:].reshape(-1, D)))
    # No second pass and no EMA target: the trainer builds none.
    assert cfg.jepa.jepa_target == "online" and flops_per_token(cfg).target_pass is False


def test_untrained_transition_scores_the_identity_reference():
    """W2 starts at zero: the transition returns the state at t, which is the identity reference for t+1, so
    its R^2 is the identity's bit for bit; a trained (perturbed) one is not."""
    cfg = smoke_cfg(jepa_recipe="nextlat")
    torch.manual_seed(0)
    model = JepaLM(cfg)
    x = tokens(cfg, rows=4)
    _, _, stats = model(x, x, diagnostics=True, jepa=True)
    assert float(stats["r2_pred"]) == float(stats["r2_identity"]) and float(stats["pred_identity"]) == 1.0
    z = model.gpt.encode(x).detach()
    nxt = z[:, 1:].reshape(-1, D)
    want_identity = 1 - (nxt - z[:, :-1].reshape(-1, D)).square().sum() / (nxt - nxt.mean(0)).square().sum()
    assert float(stats["r2_identity"]) == pytest.approx(float(want_identity), rel=1e-5)  # the state at t for t+1
    assert abs(float(stats["r2_const"])) < 0.5
    with torch.no_grad():
        model.predictor.proj.weight.normal_(std=0.05)
    _, _, stats = model(x, x, diagnostics=True, jepa=True)
    assert float(stats["r2_pred"]) != float(stats["r2_identity"]) and float(stats["pred_identity"]) == 0.0
    assert 0.0 <= float(stats["pred_dead_frac"]) < 1.0


def test_every_new_parameter_is_in_exactly_one_optimizer_group():
    cfg = smoke_cfg(jepa_recipe="nextlat")
    model = JepaLM(cfg)
    opts = build_optimizers(model, cfg.optim)
    check_groups(model, opts)
    new = {n for n, _ in model.named_parameters() if not n.startswith("gpt.")}
    assert new == {"predictor.fc.weight", "predictor.fc_token.weight", "predictor.proj.weight"}
    assert new <= {n for n, _ in route_params(model).matrices}  # Muon
    ids = [id(p) for o in opts for g in o.param_groups for p in g["params"]]
    assert all(ids.count(id(p)) == 1 for _, p in model.named_parameters())
    # check_groups catches a transition matrix left out of every group (the v2 bug) or routed twice.
    left_out = model.predictor.fc_token.weight
    muon = opts[1]
    muon.param_groups[0]["params"] = [p for p in muon.param_groups[0]["params"] if p is not left_out]
    with pytest.raises(RuntimeError, match="fc_token"):
        check_groups(model, opts)
    muon.param_groups[0]["params"] += [left_out, left_out]
    with pytest.raises(RuntimeError, match="repeated"):
        check_groups(model, opts)


def test_kl_switch():
    cfg = smoke_cfg(jepa_recipe="nextlat-kl", jepa_horizons=2)
    model = live_model(cfg)
    x = tokens(cfg)
    _, jl, stats = model(x, x, jepa=True)
    kl = stats["jepa_kl"]
    assert float(kl) > 0 and torch.equal(stats["jepa_loss"], jl.detach())
    assert float(jl.detach()) == pytest.approx(float(stats["jepa_regress"]) + float(kl), rel=1e-5)
    # The head's weights get no gradient from the KL term: only the state side moves.
    model.zero_grad()
    z = model.gpt.encode(x)
    pairs = model.prediction_pairs(z, z.detach(), None, None, x)
    model.nextlat_kl(pairs, z.detach()).backward()
    emb_grad = model.gpt.tok_emb.weight.grad
    assert model.predictor.proj.weight.grad.abs().sum() > 0
    # the embedding is read as the transition's token input, never as the head: its gradient is the lookup's
    # rows only (tokens of x), none for tokens that x does not contain
    unused = torch.ones(cfg.model.vocab_size, dtype=torch.bool)
    unused[x.unique()] = False
    assert emb_grad is not None and emb_grad[unused].abs().sum() == 0
    # A predicted state equal to the true one scores 0.
    true = [(z[:, k:].reshape(-1, D).detach(), None, 1.0) for k in (1, 2)]
    assert float(model.nextlat_kl(true, z.detach())) == pytest.approx(0.0, abs=1e-6)
    # Off by default: no KL key, no cost.
    _, _, plain = live_model(smoke_cfg(jepa_recipe="nextlat"))(x, x, jepa=True)
    assert "jepa_kl" not in plain


def jepa_grads(cfg, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], float]:
    """The JEPA loss's gradient (CE's left out) on every parameter of live_model(cfg), and the KL's value."""
    model = live_model(cfg)
    _, jl, stats = model(x, x, jepa=True)
    jl.backward()
    grads = {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in model.named_parameters()}
    return grads, float(stats.get("jepa_kl", 0.0))


def test_kl_gradient_path_switch():
    """jepa_nextlat_kl_grad=transition: the KL term trains the transition's weights and nothing else, so every
    GPT parameter gets exactly the latent loss's gradient; with states (the default) the KL also reaches the
    GPT, through the residual transition's identity path."""
    x = tokens(smoke_cfg())
    base, _ = jepa_grads(smoke_cfg(jepa_recipe="nextlat"), x)
    frozen, kl_frozen = jepa_grads(smoke_cfg(jepa_recipe="nextlat-kl", jepa_nextlat_kl_grad="transition"), x)
    states, kl_states = jepa_grads(smoke_cfg(jepa_recipe="nextlat-kl"), x)
    assert kl_frozen == pytest.approx(kl_states, rel=1e-6) and kl_states > 0  # the same KL, routed differently
    gpt = [n for n in base if n.startswith("gpt.")]
    trans = [n for n in base if n.startswith("predictor.")]
    assert gpt and trans
    for n in gpt:
        assert torch.allclose(frozen[n], base[n], rtol=0, atol=1e-7), n
    assert any(not torch.allclose(states[n], base[n], rtol=0, atol=1e-7) for n in gpt)
    for grads in (frozen, states):  # the transition learns from the KL either way
        assert any(not torch.allclose(grads[n], base[n], rtol=0, atol=1e-7) for n in trans)
    with pytest.raises(ConfigError, match="jepa_nextlat_kl_weight"):
        smoke_cfg(jepa_recipe="nextlat", jepa_nextlat_kl_grad="transition")
    with pytest.raises(ConfigError, match="jepa_nextlat_kl_grad"):
        smoke_cfg(jepa_recipe="nextlat-kl", jepa_nextlat_kl_grad="head")


@pytest.mark.parametrize("over", [
    {"jepa_mode": "nextlat", "jepa_predictor": "attn"},
    {"jepa_recipe": "nextlat-kl", "jepa_target_source": "block"},
    {"jepa_recipe": "nextlat-kl", "jepa_target_norm": "layernorm"},
    {"jepa_recipe": "nextlat", "jepa_nextlat_kl_weight": -1},
    {"jepa_mode": "nextk", "jepa_nextlat_kl_weight": 1},
    {"jepa_recipe": "nextlat", "jepa_horizons": 64},
])
def test_bad_settings_are_refused(over):
    with pytest.raises(ConfigError):
        smoke_cfg(**over)


def test_block_state_switch():
    """jepa_target_source=block: the transition reads and predicts that block's RMS-normalised output."""
    cfg = smoke_cfg(jepa_recipe="nextlat", jepa_target_source="block", jepa_target_block=0)
    model = live_model(cfg)
    x = tokens(cfg)
    assert model.taps == (0,)
    _, jl, stats = model(x, x, jepa=True)
    with torch.no_grad():
        _, blocks = model.gpt.encode_blocks(x, (0,))
        s = rms_norm(blocks[0])  # (r, T, D)
        P = model.predictor
        pred = P(s[:, :-1], P.token_input(model.gpt.tok_emb(x))[:, 1:])
    assert torch.allclose(stats["jepa_regress"], F.smooth_l1_loss(pred, s[:, 1:]), rtol=1e-5, atol=0)


def test_flops_and_bench_variant():
    ce = flops_per_token(build_config("cpu-demo", {"jepa": "false"}, environ={}))
    nl = flops_per_token(build_config("cpu-demo", {"jepa_recipe": "nextlat"}, environ={}))
    H = 256  # cpu-demo's jepa_pred_hidden
    assert nl.predictor_fwd == 3 * 2 * 192 * H and nl.pred_per_token == 1.0
    assert nl.jepa_extra == pytest.approx(3 * nl.predictor_fwd)  # no target pass, no context pass
    assert 1.0 < nl.jepa_step / ce.ce_step < 1.10
    k3 = flops_per_token(build_config("cpu-demo", {"jepa_recipe": "nextlat", "jepa_horizons": "3"}, environ={}))
    assert k3.jepa_extra == pytest.approx(3 * nl.jepa_extra)
    kl = flops_per_token(build_config("cpu-demo", {"jepa_recipe": "nextlat-kl"}, environ={}))
    assert kl.jepa_extra > nl.jepa_extra + 3 * 2 * 192 * 1024  # the head on the predicted states, fwd + bwd
    assert variant_overrides("nextlat") == VARIANTS["nextlat"] == {"jepa": "true", "jepa_recipe": "nextlat"}


def test_trains_end_to_end_with_r2_diagnostics_and_no_ema_momentum(tmp_path, demo_data):
    """A real smoke run: R^2 against both references in metrics.jsonl, the predictor's health, and no
    ema_momentum (there is no EMA target to report on: issue 19, diagnostics that do not apply are left out)."""
    cfg = smoke_cfg(jepa_recipe="nextlat", iterations=4, val_loss_every=0, train_log_every=2)
    summary = train(cfg, Runtime(device=torch.device("cpu")), tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in rows] == [1, 2, 4] and summary["steps"] == 4
    for r in rows:
        for key in ("r2_pred", "r2_const", "r2_identity", "pred_dead_frac", "pred_identity", "jepa_regress"):
            assert math.isfinite(r[key]), key
        assert "ema_momentum" not in r
    assert rows[0]["r2_pred"] == rows[0]["r2_identity"]  # step 1: the untrained transition is the identity
