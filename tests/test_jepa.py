"""JEPA: span sampler, no-leak masking, losses, EMA state, optimizer routing (DESIGN sections 3, 4)."""

import math

import pytest
import torch
from helpers import live_model
from hypothesis import given, settings
from hypothesis import strategies as st

from jepagolf.config import ConfigError, build_config, config_from_dict, span_bounds
from jepagolf.jepa.losses import jepa_loss, vicreg_covariance, vicreg_variance
from jepagolf.jepa.masking import sample_mask, sample_spans, span_generator, spans_to_mask
from jepagolf.jepa.objective import JepaLM
from jepagolf.jepa.target import WeightEMA, lerp_towards, make_target_encoder, update_target
from jepagolf.model.gpt import GPT, bigram_hash, rms_norm
from jepagolf.optim.groups import build_optimizers, check_groups, route_params
from jepagolf.research.flops import expected_mask_fraction
from jepagolf.train.batches import micro_batch_mask


def smoke_cfg(**over):
    return build_config("smoke", over, environ={})


# ----- span sampler ---------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(
    seq_len=st.integers(40, 2048),
    num_spans=st.integers(1, 6),
    span_min=st.integers(1, 8),
    p=st.floats(0.02, 0.99),
    seed=st.integers(0, 2**31),
)
def test_spans_are_exactly_n_disjoint_within_bounds(seq_len, num_spans, span_min, p, seed):
    lo, hi = span_bounds(seq_len, num_spans, span_min)
    if num_spans * hi + num_spans - 1 > seq_len:
        return
    g = torch.Generator().manual_seed(seed)
    spans = sample_spans(seq_len, num_spans, p, span_min, g)
    assert spans.shape == (num_spans, 2)
    lengths = spans[:, 1] - spans[:, 0]
    assert ((lengths >= lo) & (lengths <= hi)).all()
    assert spans[0, 0] >= 0 and spans[-1, 1] <= seq_len
    # sorted, disjoint and separated by at least one unmasked token: exactly n distinct spans
    assert (spans[1:, 0] > spans[:-1, 1]).all()
    assert int(spans_to_mask(spans, seq_len).sum()) == int(lengths.sum())


def test_span_sampler_is_reproducible_from_its_generator():
    a = sample_spans(1024, 4, 1 / 16, 4, torch.Generator().manual_seed(7))
    b = sample_spans(1024, 4, 1 / 16, 4, torch.Generator().manual_seed(7))
    c = sample_spans(1024, 4, 1 / 16, 4, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    m1 = sample_mask(3, 256, 4, 1 / 16, 4, True, span_generator(1337, 5, 2))
    m2 = sample_mask(3, 256, 4, 1 / 16, 4, True, span_generator(1337, 5, 2))
    m3 = sample_mask(3, 256, 4, 1 / 16, 4, True, span_generator(1337, 5, 3))
    assert torch.equal(m1, m2) and not torch.equal(m1, m3)


def clamped_geometric_mean(p: float, lo: int, hi: int) -> float:
    """E[clamp(G, lo, hi)] for G ~ Geometric(p) on {1, 2, ...}, exactly."""
    pmf = lambda k: (1 - p) ** (k - 1) * p
    below = sum(pmf(k) for k in range(1, lo))
    mid = sum(k * pmf(k) for k in range(lo, hi))
    above = (1 - p) ** (hi - 1)  # P(G >= hi)
    return lo * below + mid + hi * above


def test_span_length_mean_matches_the_clamped_geometric():
    seq_len, n, p, lo = 1024, 4, 1 / 16, 4
    _, hi = span_bounds(seq_len, n, lo)
    g = torch.Generator().manual_seed(0)
    lengths = torch.cat([(s[:, 1] - s[:, 0]) for s in (sample_spans(seq_len, n, p, lo, g) for _ in range(2500))])
    lengths = lengths.double()
    want = clamped_geometric_mean(p, lo, hi)
    se = lengths.std().item() / math.sqrt(len(lengths))
    assert abs(lengths.mean().item() - want) < 4 * se, (lengths.mean().item(), want, se)
    assert abs(want - 16.0) < 1.0  # the clamps barely move the Geometric(1/16) mean at T=1024


def test_shared_and_per_sequence_masks():
    shared = sample_mask(4, 128, 4, 1 / 16, 4, False, torch.Generator().manual_seed(1))
    assert shared.shape == (4, 128) and all(torch.equal(shared[0], r) for r in shared)
    per = sample_mask(4, 128, 4, 1 / 16, 4, True, torch.Generator().manual_seed(1))
    assert not all(torch.equal(per[0], r) for r in per)


def runs_of(row: torch.Tensor) -> int:
    """Number of maximal runs of True in a (T,) bool mask."""
    return int((row & ~torch.nn.functional.pad(row[:-1], (1, 0), value=False)).sum())


@pytest.mark.parametrize("seq_len", [64, 256, 1024])
@pytest.mark.parametrize("per_sequence", [False, True])
def test_masked_fraction_is_about_six_percent_at_every_length(seq_len, per_sequence):
    cfg = smoke_cfg(train_seq_len=seq_len, micro_batch_tokens=4 * seq_len, train_batch_tokens=4 * seq_len,
                    jepa_span_per_sequence=per_sequence)
    plan = cfg.jepa.span_plan(seq_len)
    masks = torch.cat([micro_batch_mask(cfg, step, 0, 4, torch.device("cpu"))[0] for step in range(300)])
    frac = masks.float().mean().item()
    assert 0.05 <= frac <= 0.08, (seq_len, plan, frac)
    assert frac == pytest.approx(expected_mask_fraction(cfg), abs=0.006)
    assert all(runs_of(row) == plan.num_spans for row in masks)  # exactly n distinct, non-adjacent spans
    same_rows = all(torch.equal(m[0], r) for m in masks.view(300, 4, seq_len) for r in m)
    assert same_rows != per_sequence


def test_v3_spans_at_1024_are_as_specified_and_the_fixed_rule_is_a_switch():
    v3 = build_config("v3", {}, environ={})
    assert v3.jepa.span_plan(1024) == (4, 1 / 16, 4)  # 4 spans, Geometric(1/16), clamp 4: ~6%
    assert expected_mask_fraction(v3) == pytest.approx(0.064, abs=0.001)
    # The fixed rule (jepa_mask_frac=0), what the committed cpu-demo ablation used: 22% at T = 256.
    old = build_config("cpu-demo", {"jepa_mask_frac": "0", "jepa_num_spans": "4"}, environ={})
    assert old.jepa.span_plan(256) == (4, 1 / 16, 4) and 0.2 < expected_mask_fraction(old) < 0.24
    # A config.json written before jepa_mask_frac existed describes the fixed rule.
    d = old.to_dict()
    del d["jepa"]["jepa_mask_frac"]
    assert config_from_dict(d).jepa.span_plan(256) == (4, 1 / 16, 4)
    with pytest.raises(ConfigError, match="jepa_num_spans"):
        build_config("smoke", {"jepa_mask_frac": "0"}, environ={})


# ----- no leak --------------------------------------------------------------------------------------

def context_pass(model: JepaLM, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """z_ctx (r, T, D) exactly as ``JepaLM.forward`` builds it (plain or ``jepa_batched``), captured from
    the GPT's encode calls; the predictor is per-position, so this is what every prediction sees."""
    seen: list[torch.Tensor] = []
    encode = model.gpt.encode

    def spy(idx, m=None, mask_emb=None):
        z = encode(idx, m, mask_emb)
        if m is not None:
            seen.append(z[-mask.size(0):])  # the masked rows come last in the batched pass
        return z

    model.gpt.encode = spy
    try:
        tz = None if model.cfg.jepa.jepa_target == "online" else torch.zeros(*mask.shape, model.cfg.model.model_dim)
        with torch.no_grad():
            model(x, x, mask, tz)
    finally:
        del model.gpt.encode
    (z_ctx,) = seen
    return z_ctx


def leaks(model: JepaLM, x: torch.Tensor, mask: torch.Tensor, g: torch.Generator) -> list[tuple[int, int]]:
    """Masked tokens (row, position) whose change alters the context state at any masked position,
    bitwise: each masked token is changed on its own (the last one of each span included), then all at once."""
    V = model.cfg.model.vocab_size
    z = context_pass(model, x, mask)
    found = []
    hidden = mask.nonzero().tolist()
    for row, pos in [*hidden, (-1, -1)]:
        x2 = x.clone()
        if row < 0:  # every masked token at once
            x2[mask] = (x2[mask] + torch.randint(1, V, (int(mask.sum()),), generator=g)) % V
        else:
            x2[row, pos] = (x2[row, pos] + int(torch.randint(1, V, (1,), generator=g))) % V
        if not torch.equal(z[mask], context_pass(model, x2, mask)[mask]):
            found.append((row, pos))
    return found


LEAK_CASES = [
    {},
    {"bigram_buckets": 0},
    {"jepa_batched": "true"},
    {"jepa_span_per_sequence": "true", "jepa_batched": "true"},
]


@pytest.mark.parametrize("over", LEAK_CASES)
def test_no_masked_token_reaches_any_masked_context_state(over):
    # DESIGN defect 7. Dense legacy-rule masks (4 spans of >= 4 tokens at T=64) give ~25 hidden tokens a row.
    cfg = smoke_cfg(**over)
    model = live_model(cfg)
    T, V = cfg.train.train_seq_len, cfg.model.vocab_size
    g = torch.Generator().manual_seed(3)
    rows = 2 if cfg.jepa.jepa_span_per_sequence else 1
    x = torch.randint(0, V, (rows, T), generator=g)
    mask = sample_mask(rows, T, 4, 1 / 16, 4, cfg.jepa.jepa_span_per_sequence, g)
    assert leaks(model, x, mask, g) == []


def test_leak_check_catches_the_bigram_of_the_position_after_a_span(monkeypatch):
    # Control: the pre-fix embedding zeroed the BigramHash term at masked positions only. The position
    # after a span then hashes (last masked token, next token), and later spans attend to it.
    def embed_zeroing_masked_positions_only(self, idx, mask=None, mask_emb=None):
        x = self.tok_emb(idx)
        if mask is not None:
            x = torch.where(mask[..., None], mask_emb.to(x.dtype), x)
        big = self.bigram(bigram_hash(idx, self.cfg.bigram_buckets))
        if mask is not None:
            big = big.masked_fill(mask[..., None], 0.0)
        return rms_norm(x + big)

    cfg = smoke_cfg()
    model = live_model(cfg)
    T, V = cfg.train.train_seq_len, cfg.model.vocab_size
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, V, (1, T), generator=g)
    spans = sample_spans(T, 4, 1 / 16, 4, g)
    mask = spans_to_mask(spans, T)[None]
    monkeypatch.setattr(GPT, "embed", embed_zeroing_masked_positions_only)
    found = leaks(model, x, mask, g)
    last_tokens = {int(e) - 1 for _, e in spans[:-1].tolist()}  # the last span has no later span to leak into
    assert last_tokens <= {pos for _, pos in found}
    assert {pos for _, pos in found if pos >= 0} <= {int(e) - 1 for _, e in spans.tolist()}


def test_leak_test_detects_an_unmasked_token():
    # Control: without the mask the same perturbation does change the span's representation.
    cfg = smoke_cfg()
    model = live_model(cfg)
    T, V = cfg.train.train_seq_len, cfg.model.vocab_size
    x = torch.randint(0, V, (1, T), generator=torch.Generator().manual_seed(0))
    x2 = x.clone()
    x2[0, 10] = (x2[0, 10] + 1) % V
    with torch.no_grad():
        assert not torch.allclose(model.gpt.encode(x)[:, 10], model.gpt.encode(x2)[:, 10], atol=1e-6)


# ----- losses ---------------------------------------------------------------------------------------

def test_vicreg_terms():
    torch.manual_seed(0)
    wide = torch.randn(4096, 16) * 3.0  # std 3 > 1: hinge is zero
    assert vicreg_variance(wide).item() == 0.0
    collapsed = torch.zeros(64, 16) + torch.randn(1, 16)
    assert vicreg_variance(collapsed).item() == pytest.approx(1 - math.sqrt(1e-4), abs=1e-6)
    assert vicreg_covariance(torch.randn(20000, 8)).item() < 1e-3
    base = torch.randn(20000, 1)
    corr = torch.cat([base, base], dim=1)  # off-diagonal covariance 1 twice, D=2 -> 1.0
    assert vicreg_covariance(corr).item() == pytest.approx(1.0, rel=0.05)


def test_target_side_terms_are_not_backpropagated():
    pred = torch.randn(32, 8, requires_grad=True)
    tgt = torch.randn(32, 8, requires_grad=True)
    loss, stats = jepa_loss(pred, tgt, 0.15, 0.02)
    loss.backward()
    assert pred.grad is not None and tgt.grad is None
    assert {"jepa_mse", "jepa_var", "jepa_cov", "target_var", "target_cov", "pred_std", "target_std"} <= set(stats)


def test_one_forward_returns_ce_jepa_and_diagnostics():
    cfg = smoke_cfg()
    model = JepaLM(cfg)
    T = cfg.train.train_seq_len
    x = torch.randint(0, cfg.model.vocab_size, (2, T))
    mask = sample_mask(2, T, 4, 1 / 16, 4, False, torch.Generator().manual_seed(0))
    tz = make_target_encoder(model.gpt).encode(x)
    ce, jl, stats = model(x, x, mask, tz)
    assert ce.requires_grad and jl.requires_grad
    assert stats["mask_frac"].item() == pytest.approx(mask.float().mean().item())
    (ce + 0.1 * jl).backward()
    for name, p in model.named_parameters():
        if name.startswith("predictor.fc"):
            continue  # zero-init proj: fc's gradient is exactly zero on the first step by construction
        assert p.grad is not None, name


def test_predictor_and_mask_emb_actually_train():
    cfg = smoke_cfg()
    torch.manual_seed(0)
    model = JepaLM(cfg)
    opts = build_optimizers(model, cfg.optim)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    T = cfg.train.train_seq_len
    target = make_target_encoder(model.gpt)
    for step in range(3):
        x = torch.randint(0, cfg.model.vocab_size, (4, T))
        mask = sample_mask(4, T, 4, 1 / 16, 4, False, span_generator(0, step, 0))
        ce, jl, _ = model(x, x, mask, target.encode(x))
        (ce + jl).backward()
        for o in opts:
            o.step()
            o.zero_grad()
    for name in ("predictor.fc.weight", "predictor.proj.weight", "mask_emb"):
        assert not torch.equal(before[name], dict(model.named_parameters())[name]), name


# ----- optimizer routing ----------------------------------------------------------------------------

@pytest.mark.parametrize("over", [{}, {"jepa": "false"}, {"bigram_buckets": 0}, {"num_layers": 1},
                                  # the variants' JEPA-only modules: attention predictor, per-horizon
                                  # predictors, the chunk start vector (tests/test_jepa_variants.py has them all)
                                  {"jepa_predictor": "attn"}, {"jepa_recipe": "v2-nextk"},
                                  {"jepa_recipe": "chunk-latent"}])
def test_every_trainable_parameter_is_in_exactly_one_group(over):
    cfg = smoke_cfg(**over)
    model = JepaLM(cfg)
    opts = build_optimizers(model, cfg.optim)
    check_groups(model, opts)  # raises otherwise
    counted = sum(len(g["params"]) for o in opts for g in o.param_groups)
    assert counted == len([p for p in model.parameters() if p.requires_grad])
    g = route_params(model)
    names = {"matrices": [n for n, _ in g.matrices], "embeddings": [n for n, _ in g.embeddings],
             "scalars": [n for n, _ in g.scalars]}
    if cfg.jepa.active:
        jepa_matrices = [n for n, p in model.named_parameters() if n.startswith("predictor.") and p.ndim == 2]
        assert jepa_matrices and set(jepa_matrices) <= set(names["matrices"])
        if cfg.jepa.jepa_predictor == "mlp" and cfg.jepa.jepa_mode == "span":
            assert "predictor.fc.weight" in names["matrices"] and "predictor.proj.weight" in names["matrices"]
        assert ("mask_emb" in names["scalars"]) == (cfg.jepa.jepa_mode == "span")
        assert ("chunk_start" in names["scalars"]) == (cfg.jepa.jepa_mode == "chunk")
    assert "gpt.tok_emb.weight" in names["embeddings"]
    assert all(p.ndim == 2 for _, p in g.matrices)


def test_check_groups_catches_a_missing_parameter():
    cfg = smoke_cfg()
    model = JepaLM(cfg)
    adam = torch.optim.Adam([p for n, p in model.named_parameters() if not n.startswith("predictor")])
    with pytest.raises(RuntimeError, match="predictor"):
        check_groups(model, [adam])


# ----- EMA state ------------------------------------------------------------------------------------

@pytest.mark.parametrize("m", [0.999, 0.9999])
def test_ema_is_fp32_and_follows_the_closed_form(m):
    # ema_k = w1 + (w0 - w1) m^k for a constant online value w1. With w0=1, w1=2 each update is
    # (1-m) <= 1e-3, below bf16's resolution at 1.0 (2^-7): a bf16 EMA would not move at all.
    cfg = smoke_cfg()
    model = JepaLM(cfg)
    with torch.no_grad():
        for p in model.gpt.parameters():
            p.fill_(1.0)
    target = make_target_encoder(model.gpt)
    with torch.no_grad():
        for p in model.gpt.parameters():
            p.fill_(2.0)
    k = 300
    for _ in range(k):
        update_target(target, model.gpt, m)
    want = 2.0 - m**k
    for p in target.parameters():
        assert p.dtype == torch.float32 and not p.requires_grad
        assert torch.allclose(p, torch.full_like(p, want), rtol=0, atol=2e-6)
    # The same lerp on bf16 state is stuck: this is the defect the fp32 state avoids.
    stuck = [torch.ones(4, dtype=torch.bfloat16)]
    for _ in range(k):
        torch._foreach_lerp_(stuck, [torch.full((4,), 2.0, dtype=torch.bfloat16)], 1 - m)
    assert stuck[0].float().eq(1.0).all()
    with pytest.raises(TypeError, match="fp32"):
        lerp_towards(stuck, [torch.full((4,), 2.0)], m)


@pytest.mark.parametrize("decay", [0.999, 0.9999])
def test_artifact_ema_closed_form_and_warmup(decay):
    lin = torch.nn.Linear(4, 4, bias=False)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    ema = WeightEMA(lin, decay)
    with torch.no_grad():
        lin.weight.fill_(2.0)
    k = 400
    for _ in range(k):
        ema.update(lin)
    init_weight = math.prod(min(decay, (1 + t) / (10 + t)) for t in range(k))
    shadow = ema.state_dict()["weight"]
    assert shadow.dtype == torch.float32
    assert torch.allclose(shadow, torch.full_like(shadow, 2.0 - init_weight), atol=2e-6)
    # Without the warm-up the init would still weigh decay^k (0.67..0.96) here; with it, < 1%.
    assert init_weight < 0.01 < decay**k


def test_target_encoder_is_a_detached_copy():
    cfg = smoke_cfg()
    model = JepaLM(cfg)
    target = make_target_encoder(model.gpt)
    assert all(not p.requires_grad for p in target.parameters())
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(target.parameters(), model.gpt.parameters(), strict=True))


def test_jepa_loss_is_fp32_under_bf16_autocast():
    # On CUDA the trainer runs under bf16 autocast; the loss must not drop its covariance to bf16.
    g = torch.Generator().manual_seed(3)
    pred, tgt = torch.randn(300, 48, generator=g), torch.randn(300, 48, generator=g)
    plain, plain_stats = jepa_loss(pred, tgt, 0.15, 0.02)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast, cast_stats = jepa_loss(pred, tgt, 0.15, 0.02)
    assert cast.dtype == torch.float32
    assert torch.equal(plain, cast)
    assert all(torch.equal(plain_stats[k], cast_stats[k]) for k in plain_stats)
