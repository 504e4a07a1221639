"""Evaluation: window planning (pure), sliding vs non-overlapping, rank split, any sequence length."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from jepagolf.config import build_config
from jepagolf.model.eval import evaluate, num_eval_sequences, plan_windows
from jepagolf.model.gpt import GPT
from jepagolf.research.flops import eval_flops, flops_per_token

CPU = torch.device("cpu")
V = 64  # a small vocabulary keeps the model and the head cheap


@st.composite
def plan_args(draw):
    seq_len = draw(st.integers(1, 48))
    n_tokens = draw(st.integers(seq_len + 1, 12 * seq_len + 40))
    stride = draw(st.integers(1, seq_len))
    max_tokens = draw(st.sampled_from([0, 0, draw(st.integers(1, 4 * seq_len))]))
    return n_tokens, seq_len, stride, max_tokens


@settings(max_examples=300, deadline=None)
@given(plan_args())
def test_every_target_of_the_extent_is_scored_exactly_once(args):
    n_tokens, seq_len, stride, max_tokens = args
    plan = plan_windows(n_tokens, seq_len, stride, max_tokens)
    extent = num_eval_sequences(n_tokens, seq_len, max_tokens) * seq_len
    counts = np.zeros(n_tokens, np.int64)
    for s, f in zip(plan.starts, plan.score_from, strict=True):
        assert 0 <= s and s + seq_len + 1 <= n_tokens  # the window's inputs and targets exist
        assert 0 <= f < seq_len
        counts[s + 1 + f : s + 1 + seq_len] += 1  # target indices this window scores
    assert counts[0] == 0 and (counts[1 : extent + 1] == 1).all() and not counts[extent + 1 :].any()
    assert plan.scored_tokens == extent
    assert plan.score_from[0] == 0 and plan.starts[-1] + seq_len == extent  # the last window ends at the end
    assert (np.diff(plan.starts) > 0).all() and (np.diff(plan.starts) <= stride).all()
    # Every window but a tail one scores exactly its last `stride` targets.
    assert (plan.score_from[1:-1] == seq_len - stride).all()
    # The stride changes the windows, never the scored extent.
    assert plan_windows(n_tokens, seq_len, seq_len, max_tokens).scored_tokens == extent


def test_stride_equal_to_seq_len_is_the_non_overlapping_split():
    plan = plan_windows(1000, 64, 64)
    assert plan.starts.tolist() == [64 * i for i in range(15)] and not plan.score_from.any()
    assert plan_windows(1000, 64, 0).starts.tolist() == plan.starts.tolist()


def test_tail_window_scores_only_the_remainder():
    plan = plan_windows(129, 64, 48)  # extent 128: windows at 0 and 48, then one ending at 128
    assert plan.starts.tolist() == [0, 48, 64] and plan.score_from.tolist() == [0, 16, 48]


@pytest.mark.parametrize("stride", [0, -1, 65])
def test_bad_stride_is_refused(stride):
    if stride == 0:
        assert plan_windows(200, 64, stride).scored_tokens == 192  # 0 means non-overlapping
        return
    with pytest.raises(ValueError, match="eval stride"):
        plan_windows(200, 64, stride)


# ----- with a model -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: threads only add contention on a shared machine
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup():
    cfg = build_config("smoke", {"vocab_size": V, "bigram_buckets": 32, "train_seq_len": 16, "jepa": "false"},
                       environ={})
    torch.manual_seed(0)
    gpt = GPT(cfg.model, 16)
    with torch.no_grad():
        for p in gpt.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # zero-initialised projections would hide the context
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, V, 16 * 9 + 7).astype(np.uint16)  # a tail of 6 targets past the extent
    base = torch.from_numpy(rng.integers(0, 4, V))
    space = torch.from_numpy(rng.random(V) < 0.4)
    boundary = torch.zeros(V, dtype=torch.bool)
    boundary[:3] = True
    return gpt, tokens, (base, space, boundary)


def old_evaluate(gpt, val_tokens, byte_tables, seq_len, batch_tokens):
    """The non-overlapping evaluation as it was before sliding windows (the reference for bitwise equality)."""
    base, space, boundary = byte_tables
    n_seq = num_eval_sequences(len(val_tokens), seq_len)
    per_batch = max(1, batch_tokens // seq_len)
    sums = torch.zeros(3, dtype=torch.float64)
    with torch.no_grad():
        for s in range(0, n_seq, per_batch):
            e = min(s + per_batch, n_seq)
            chunk = torch.from_numpy(np.asarray(val_tokens[s * seq_len : e * seq_len + 1], dtype=np.int64))
            x, y = chunk[:-1].view(e - s, seq_len), chunk[1:].view(e - s, seq_len)
            nats = gpt.ce_loss(gpt.encode(x).float(), y, reduction="sum")
            nbytes = base[y] + (space[y] & ~boundary[x]).to(base.dtype)
            sums += torch.stack((nats.double(), torch.tensor(y.numel()).double(), nbytes.sum().double()))
    nats, tokens, nbytes = sums.tolist()
    return nats / tokens, nats / math.log(2) / nbytes, int(tokens), int(nbytes)


@pytest.mark.parametrize("batch_tokens", [16, 48, 4096])
def test_stride_equal_to_seq_len_gives_the_non_overlapping_numbers_bitwise(setup, batch_tokens):
    gpt, tokens, tables = setup
    want = old_evaluate(gpt, tokens, tables, 16, batch_tokens)
    for stride in (0, 16):
        r = evaluate(gpt, tokens, tables, 16, batch_tokens, CPU, stride=stride)
        assert (r.loss, r.bpb, r.tokens, r.bytes) == want


def test_smaller_strides_score_the_same_tokens_and_bytes_with_more_context(setup):
    gpt, tokens, tables = setup
    plain = evaluate(gpt, tokens, tables, 16, 64, CPU)
    for stride in (1, 3, 5, 8, 15):
        r = evaluate(gpt, tokens, tables, 16, 64, CPU, stride=stride)
        assert (r.tokens, r.bytes) == (plain.tokens, plain.bytes) == (16 * 9, r.bytes)
        assert r.loss != plain.loss


def test_stride_one_scores_each_target_with_its_full_window(setup):
    # Independent of the plan: with stride 1 every target past the first window is predicted from
    # exactly the seq_len tokens before it. Recompute each one by its own forward.
    gpt, tokens, tables = setup
    T, extent = 16, 16 * 9
    seq = torch.from_numpy(tokens.astype(np.int64))
    ends = torch.arange(T + 1, extent + 1)  # targets past the first window
    contexts = seq[ends[:, None] - T + torch.arange(T)]  # (n, T): the T tokens before each target
    with torch.no_grad():
        first = gpt.ce_loss(gpt.encode(seq[None, :T]), seq[None, 1 : T + 1], reduction="sum").item()
        rest = gpt.ce_loss(gpt.encode(contexts)[:, -1:], seq[ends][:, None], reduction="sum").item()
    r = evaluate(gpt, tokens, tables, T, 80, CPU, stride=1)
    assert r.loss * r.tokens == pytest.approx(first + rest, rel=1e-6)


@pytest.mark.parametrize("stride", [16, 5])
def test_two_ranks_split_the_windows_and_sum_to_one_rank(setup, stride):
    gpt, tokens, tables = setup
    one = evaluate(gpt, tokens, tables, 16, 32, CPU, stride=stride)
    parts = [evaluate(gpt, tokens, tables, 16, 32, CPU, stride=stride, rank=r, world_size=2, reduce=False)
             for r in range(2)]
    assert sum(p.tokens for p in parts) == one.tokens and sum(p.bytes for p in parts) == one.bytes
    assert all(p.tokens > 0 for p in parts)
    assert sum(p.loss * p.tokens for p in parts) == pytest.approx(one.loss * one.tokens, rel=1e-6)


# ----- any sequence length ------------------------------------------------------------------------


def test_rope_tables_grow_on_demand_and_keep_the_training_length_bitwise(setup):
    gpt, tokens, tables = setup
    fresh = GPT(gpt.cfg, 16)
    fresh.load_state_dict(gpt.state_dict())
    x = torch.from_numpy(tokens[:32].astype(np.int64)).view(2, 16)
    with torch.no_grad():
        before = fresh.encode(x)
        rot = fresh.blocks[0].attn.rotary
        cos16 = rot.cos.clone()
        long = torch.from_numpy(tokens[: 4 * 16].astype(np.int64))[None]  # 4x the training length
        z4 = fresh.encode(long)
        assert z4.shape == (1, 64, gpt.cfg.model_dim) and torch.isfinite(z4).all()
        assert rot.max_len == 64 and torch.equal(rot.cos[:, :, :16], cos16)
        assert torch.equal(fresh.encode(x), before)  # the training length is untouched, bit for bit
        # Extended tables are what a model built for the longer length computes.
        assert torch.equal(rot.cos, GPT(gpt.cfg, 64).blocks[0].attn.rotary.cos)
        assert torch.equal(rot.sin, GPT(gpt.cfg, 64).blocks[0].attn.rotary.sin)
        # Causality holds at the new length: the first 16 positions see only themselves.
        assert torch.allclose(z4[:, :16], fresh.encode(long[:, :16]), atol=1e-5)


@pytest.mark.parametrize("factor", [2, 4])
def test_evaluation_at_longer_lengths(setup, factor):
    gpt, tokens, tables = setup
    model = GPT(gpt.cfg, 16)  # tables for 16 only
    model.load_state_dict(gpt.state_dict())
    T = 16 * factor
    r = evaluate(model, tokens, tables, T, 4 * T, CPU)
    assert r.tokens == (len(tokens) - 1) // T * T and math.isfinite(r.bpb)
    s = evaluate(model, tokens, tables, T, 4 * T, CPU, stride=T // 4)
    assert (s.tokens, s.bytes) == (r.tokens, r.bytes)


@pytest.mark.parametrize(("targets", "seq_len", "stride"), [(144, 16, 5), (144, 16, 16), (1024 * 60, 1024, 64)])
def test_eval_flops_count_the_planned_windows(targets, seq_len, stride):
    cfg = build_config("v3", {}, environ={})
    f = flops_per_token(cfg, seq_len)
    windows = len(plan_windows(targets + 1, seq_len, stride).starts)
    assert eval_flops(cfg, targets, seq_len, stride) == windows * seq_len * f.body_fwd + targets * f.head_fwd
