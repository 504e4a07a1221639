"""The network of DESIGN section 3: shapes, init, bigram hash, causality, skips."""

import pytest
import torch

from jepagolf.config import ConfigError, build_config
from jepagolf.model.gpt import GPT, bigram_hash


def small_cfg(**over):
    return build_config("smoke", over, environ={})


def test_bigram_hash_matches_cantor_formula():
    idx = torch.tensor([[5, 7, 1000, 3]])
    got = bigram_hash(idx, 2048)
    pairs = [(0, 5), (5, 7), (7, 1000), (1000, 3)]
    want = [((a + b) * (a + b + 1) // 2 + b) % 2048 for a, b in pairs]
    assert got.tolist() == [want]


def test_shapes_gqa_and_zero_init_output_projections():
    cfg = small_cfg()
    gpt = GPT(cfg.model, cfg.train.train_seq_len)
    m = cfg.model
    blk = gpt.blocks[0]
    assert blk.attn.c_q.weight.shape == (m.model_dim, m.model_dim)
    assert blk.attn.c_k.weight.shape == (m.num_kv_heads * m.head_dim, m.model_dim)
    assert blk.mlp.fc.weight.shape == (m.mlp_hidden, m.model_dim)
    for b in gpt.blocks:
        assert b.attn.proj.weight.abs().sum() == 0 and b.mlp.proj.weight.abs().sum() == 0
        assert torch.allclose(b.attn.q_gain, torch.full_like(b.attn.q_gain, m.qk_gain_init))
    assert abs(gpt.tok_emb.weight.std().item() - m.tied_embed_init_std) < 0.2 * m.tied_embed_init_std
    # floor(L/2) encoder blocks push, the remaining ones pop while skips remain.
    assert gpt.num_encoder == m.num_layers // 2 and gpt.skip_weights.shape[0] == min(
        m.num_layers // 2, m.num_layers - m.num_layers // 2)
    x = torch.randint(0, m.vocab_size, (2, 16))
    z = gpt.encode(x)
    assert z.shape == (2, 16, m.model_dim)
    logits = gpt.logits(z)
    assert logits.shape == (2, 16, m.vocab_size) and logits.abs().max() <= m.logit_softcap


def test_causal_representation():
    cfg = small_cfg()
    torch.manual_seed(0)
    gpt = GPT(cfg.model, 32)
    for p in gpt.parameters():  # break the zero init so every path is live
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randint(0, cfg.model.vocab_size, (1, 32))
    x2 = x.clone()
    x2[0, 20:] = (x2[0, 20:] + 1) % cfg.model.vocab_size
    z1, z2 = gpt.encode(x), gpt.encode(x2)
    assert torch.allclose(z1[:, :20], z2[:, :20], atol=1e-6)
    assert not torch.allclose(z1[:, 20:], z2[:, 20:], atol=1e-4)


def test_unet_skip_weights_are_used():
    cfg = small_cfg(num_layers=4)
    torch.manual_seed(0)
    gpt = GPT(cfg.model, 32)
    for p in gpt.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randint(0, cfg.model.vocab_size, (1, 16))
    z1 = gpt.encode(x)
    with torch.no_grad():
        gpt.skip_weights.zero_()
    assert not torch.allclose(z1, gpt.encode(x))


@pytest.mark.parametrize(
    "over, field",
    [
        ({"model_dim": 65}, "num_heads"),
        ({"num_heads": 4, "num_kv_heads": 3}, "num_kv_heads"),
        ({"model_dim": 60, "num_heads": 4}, "head dim"),
        ({"train_batch_tokens": 0}, "train_batch_tokens"),
        ({"micro_batch_tokens": 100}, "micro_batch_tokens"),
        ({"train_seq_len": 16, "micro_batch_tokens": 256, "train_batch_tokens": 512, "jepa_mask_frac": 0,
          "jepa_num_spans": 4}, "train_seq_len"),  # 4 spans of >= 4 tokens: the fixed span rule
    ],
)
def test_inconsistent_shapes_are_rejected_with_the_field_name(over, field):
    with pytest.raises(ConfigError, match=field):
        small_cfg(**over)


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(ConfigError, match="did you mean 'num_layers'"):
        small_cfg(num_layer=3)


def test_env_and_set_overrides_precedence():
    cfg = build_config("smoke", {"num_layers": "5"}, environ={"NUM_LAYERS": "4", "JEPA_LAMBDA": "0"})
    assert cfg.model.num_layers == 5  # --set beats the environment
    assert cfg.jepa.jepa_lambda == 0.0 and not cfg.jepa.active
    cfg = build_config("smoke", {"model.num_layers": "2"}, environ={})
    assert cfg.model.num_layers == 2
