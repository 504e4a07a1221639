"""v3's dying predictor (issue 19, item 2): the health diagnostic, the mechanism, and the switches that fix it.

In long runs v3's r2_pred equals r2_identity bit for bit: every relu^2 unit of the residual predictor is zero on
the whole batch, so W1 and W2 get no gradient and the predictor returns its input. Muon keeps moving such a
matrix a full orthogonalised step along its decaying momentum; the hinge is not needed for it (a short run with
the hinge off dies too: README, "JEPA variants"). ``v3`` stays as specified; ``v3-fix`` carries the switches.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from jepagolf.config import HASH_SILENT_DEFAULTS, PRESETS, JepaConfig, build_config, config_dict_hash
from jepagolf.jepa.objective import JepaLM
from jepagolf.jepa.predictors import Predictor, dead_fraction
from jepagolf.jepa.target import make_target_encoder
from jepagolf.model.gpt import rms_norm
from jepagolf.optim.groups import build_optimizers, check_groups
from jepagolf.optim.muon import Muon
from jepagolf.recipes import RECIPES

D, H = 64, 32  # the smoke preset's width and predictor width


def anisotropic(n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows sharing one strong direction u, as the final states do (their per-feature std is 0.07-0.2 against an
    RMS of 1): (n, D) states and the unit direction (D,)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(D, generator=g)
    u = u / u.norm()
    return 3.0 * u + 0.1 * torch.randn(n, D, generator=g), u


def kill(p: Predictor, u: torch.Tensor) -> None:
    """Every unit's input weights point against the shared direction: negative pre-activation on every row."""
    with torch.no_grad():
        p.fc.weight.copy_(-u.expand(H, D) + 0.01 * torch.randn(H, D))
        p.proj.weight.normal_(std=0.1)


def test_dead_fraction_counts_units_zero_on_every_row():
    hidden = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]])  # (rows, units)
    assert float(dead_fraction(hidden)) == 0.5  # units 0 and 3; 1 and 2 fire on one row each
    assert float(dead_fraction(hidden.view(1, 3, 4))) == 0.5  # leading dims are rows


@pytest.mark.parametrize("slope", [0.0, 0.5])
def test_dead_units_read_1_and_only_the_leaky_activation_keeps_gradient(slope):
    torch.manual_seed(0)
    z, u = anisotropic()
    p = Predictor(D, H, slope)
    kill(p, u)
    assert (p.fc(rms_norm(z)) < 0).all()
    hidden = p.hidden(z)
    out = p(z)
    ((out - z.roll(1, 0)).square().mean() + 0.15 * torch.relu(1 - out.std(0)).mean()).backward()
    g_fc, g_proj = p.fc.weight.grad.abs().sum(), p.proj.weight.grad.abs().sum()
    if slope == 0:  # relu^2, v3: dead on the batch, no gradient anywhere, the output is the input
        assert float(dead_fraction(hidden)) == 1.0 and torch.equal(out, z)
        assert g_fc == 0 and g_proj == 0
    else:  # leaky relu^2: the same weights still learn
        assert float(dead_fraction(hidden)) == 0.0 and not torch.equal(out, z)
        assert g_fc > 0 and g_proj > 0


def test_forward_reports_a_dead_predictor_as_the_identity():
    """Through JepaLM's diagnostics: a predictor with every unit dead reads pred_dead_frac 1 and pred_identity 1,
    and its R^2 is the identity's bit for bit (what the long runs showed); a live one reads neither."""
    cfg = build_config("smoke", {}, environ={})
    torch.manual_seed(0)
    model = JepaLM(cfg)
    x = torch.randint(0, cfg.model.vocab_size, (2, 64))
    mask = torch.zeros(2, 64, dtype=torch.bool)
    mask[:, 10:30] = True
    with torch.no_grad():
        model.mask_emb.normal_()  # masked positions then carry a state (all zero at init)
        ctx = model.gpt.encode(x, mask, model.mask_emb)[mask]  # (N, D) the predictor's inputs
        u = rms_norm(ctx).mean(0)
        model.predictor.fc.weight.copy_(-u.expand(H, D) * 10)
        model.predictor.proj.weight.normal_(std=0.1)
    target = make_target_encoder(model.gpt).encode(x)
    _, _, stats = model(x, x, mask, target, diagnostics=True)
    assert float(stats["pred_dead_frac"]) == 1.0 and float(stats["pred_identity"]) == 1.0
    assert float(stats["r2_pred"]) == float(stats["r2_identity"])
    with torch.no_grad():
        model.predictor.fc.weight.normal_(std=0.3)
    _, _, stats = model(x, x, mask, target, diagnostics=True)
    assert float(stats["pred_dead_frac"]) < 1.0 and float(stats["pred_identity"]) == 0.0


def test_muon_moves_a_matrix_whose_gradient_is_gone_a_full_step():
    """The mechanism behind the death: once units stop receiving gradient, Muon's orthogonalised update of the
    decaying momentum is as large as ever (it normalises away the decay) and keeps pushing the weights the way
    they were going; Adam's update of the same momentum decays."""
    torch.manual_seed(0)
    w_muon = torch.nn.Parameter(torch.randn(H, D) * 0.1)
    w_adam = torch.nn.Parameter(w_muon.detach().clone())
    muon = Muon([w_muon], lr=0.04, momentum=0.95)
    adam = torch.optim.Adam([w_adam], lr=0.004, betas=(0.9, 0.95))
    grad = torch.randn(H, D)
    steps = {"muon": [], "adam": []}
    for i in range(40):
        for name, w, opt in (("muon", w_muon, muon), ("adam", w_adam, adam)):
            w.grad = grad.clone() if i < 5 else torch.zeros_like(grad)  # the units die after step 5
            before = w.detach().clone()
            opt.step()
            steps[name].append(float((w.detach() - before).norm()))
    assert steps["muon"][-1] > 0.9 * steps["muon"][4]  # 35 steps without gradient: still a full step
    assert steps["adam"][-1] < 0.2 * steps["adam"][4]


def test_predictor_optimizer_switch_routes_its_matrices_once():
    names = {"predictor.fc.weight", "predictor.proj.weight"}
    for over, where in [({}, "muon0"), ({"jepa_pred_lr": "0.01"}, "muon1"),
                        ({"jepa_pred_optimizer": "adam", "jepa_pred_lr": "0.004"}, "adam2")]:
        cfg = build_config("smoke", over, environ={})
        model = JepaLM(cfg)
        opts = build_optimizers(model, cfg.optim, pred_optimizer=cfg.jepa.jepa_pred_optimizer,
                                pred_lr=cfg.jepa.jepa_pred_lr)
        check_groups(model, opts)
        ids = {id(p): n for n, p in model.named_parameters()}
        groups = {f"{kind}{i}": {ids[id(p)] for p in g["params"]}
                  for kind, opt in zip(("adam", "muon"), opts, strict=True) for i, g in enumerate(opt.param_groups)}
        assert names <= groups[where]
        assert all(not names & members for key, members in groups.items() if key != where)
        lr = {key: g["base_lr"] for kind, opt in zip(("adam", "muon"), opts, strict=True)
              for key, g in ((f"{kind}{i}", g) for i, g in enumerate(opt.param_groups))}
        assert lr[where] == (cfg.jepa.jepa_pred_lr or cfg.optim.matrix_lr)
        if where == "muon0":  # v3: one Muon group for every matrix, as before
            assert len(opts[1].param_groups) == 1 and len(opts[0].param_groups) == 2


def test_v3_stays_as_specified_and_v3_fix_differs_only_in_the_switches():
    v3 = JepaConfig()
    assert (v3.jepa_pred_leaky_slope, v3.jepa_pred_optimizer, v3.jepa_pred_lr) == (0.0, "muon", 0.0)
    fix = RECIPES["v3-fix"].values
    assert fix.pop("jepa") is True
    assert set(fix) <= {"jepa_pred_leaky_slope", "jepa_pred_optimizer", "jepa_pred_lr", "jepa_var_mode"}
    j = build_config("smoke", {"jepa_recipe": "v3-fix"}, environ={}).jepa
    base = dataclasses.asdict(build_config("smoke", {}, environ={}).jepa)
    differs = {k for k, v in dataclasses.asdict(j).items() if base[k] != v}
    assert differs == set(fix) | {"jepa_recipe"}


def test_new_keys_at_their_defaults_leave_every_config_hash_as_it_was():
    """The keys of issue 19 are left out of Config.hash() while at their defaults: every preset (and so the
    committed ladder's runs and their resume) keeps the hash it had before they existed; using one changes it."""
    new = HASH_SILENT_DEFAULTS["jepa"]
    assert new == {k: getattr(JepaConfig(), k) for k in new}
    for preset in PRESETS:
        cfg = build_config(preset, {}, environ={})
        d = json.loads(cfg.to_json())
        before = {**d, "jepa": {k: v for k, v in d["jepa"].items() if k not in new}}  # as written before the keys
        assert config_dict_hash(before) == cfg.hash()
        assert build_config(preset, {"jepa_pred_leaky_slope": "0.5"}, environ={}).hash() != cfg.hash()
