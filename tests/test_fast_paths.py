"""Hand-fused kernels of the hot path give the reference values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from jepagolf.config import build_config
from jepagolf.model.gpt import GPT, LeakyReluSquare, lookup, softcap_cross_entropy


def reference_ce(z, w, y, cap, reduction):
    logits = F.linear(z, w)
    logits = cap * torch.tanh(logits / cap)
    return F.cross_entropy(logits, y, reduction=reduction)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("cap", [30.0, 5.0])
def test_softcap_cross_entropy_matches_the_reference_in_float64(reduction, cap):
    g = torch.Generator().manual_seed(0)
    N, D, V = 37, 16, 50
    z = torch.randn(N, D, generator=g, dtype=torch.float64, requires_grad=True)
    w = (torch.randn(V, D, generator=g, dtype=torch.float64) * 3).requires_grad_()  # logits reach the cap
    y = torch.randint(0, V, (N,), generator=g)
    ref = reference_ce(z, w, y, cap, reduction)
    gz, gw = torch.autograd.grad(ref * 1.7, (z, w))
    scale = 1.0 / N if reduction == "mean" else 1.0
    got = softcap_cross_entropy(z, w, y, cap, scale)
    fz, fw = torch.autograd.grad(got * 1.7, (z, w))
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fz, gz, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fw, gw, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("chunk_rows", [8, 1, 37])
def test_softcap_cross_entropy_in_chunks_matches_the_reference(monkeypatch, chunk_rows):
    """The loss runs over the logits chunk by chunk (rows, a ragged last chunk, one row each, one chunk): the
    same value and gradients as the whole-matrix reference; with no gradient wanted it computes the value
    alone."""
    import jepagolf.model.gpt as gpt_module

    g = torch.Generator().manual_seed(1)
    N, D, V = 37, 16, 50
    monkeypatch.setattr(gpt_module, "CE_CHUNK_ELEMENTS", chunk_rows * V)
    z = torch.randn(N, D, generator=g, dtype=torch.float64, requires_grad=True)
    w = (torch.randn(V, D, generator=g, dtype=torch.float64) * 3).requires_grad_()
    y = torch.randint(0, V, (N,), generator=g)
    ref = reference_ce(z, w, y, 30.0, "mean")
    gz, gw = torch.autograd.grad(ref, (z, w))
    got = softcap_cross_entropy(z, w, y, 30.0, 1.0 / N)
    fz, fw = torch.autograd.grad(got, (z, w))
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fz, gz, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fw, gw, rtol=1e-10, atol=1e-12)
    # a transposed (non-contiguous) z gives the same gradient
    zt = z.detach().T.contiguous().T.requires_grad_()
    (tz,) = torch.autograd.grad(softcap_cross_entropy(zt, w, y, 30.0, 1.0 / N), zt)
    torch.testing.assert_close(tz, gz, rtol=1e-10, atol=1e-12)
    total, no_gz, no_gw = torch.ops.jepagolf.softcap_ce(z.detach(), w.detach(), y, 30.0, False)
    assert no_gz.numel() == no_gw.numel() == 0
    torch.testing.assert_close(total / N, ref.detach(), rtol=1e-12, atol=1e-12)


def test_the_chunked_loss_is_a_well_formed_custom_op():
    """torch.library.opcheck: its schema, its fake (shape-only) implementation that a compiled step traces, and
    its autograd registration agree with what the op does, with and without gradients."""
    g = torch.Generator().manual_seed(2)
    z, w = torch.randn(37, 16, generator=g), torch.randn(50, 16, generator=g)
    y = torch.randint(0, 50, (37,), generator=g)
    torch.library.opcheck(torch.ops.jepagolf.softcap_ce.default,
                          (z.clone().requires_grad_(), w.clone().requires_grad_(), y, 30.0, True))
    torch.library.opcheck(torch.ops.jepagolf.softcap_ce.default, (z, w, y, 30.0, False))
    zt = z.T.contiguous().T.requires_grad_()  # strided: the fake must give the op's (contiguous) gradient strides
    torch.library.opcheck(torch.ops.jepagolf.softcap_ce.default, (zt, w.clone().requires_grad_(), y, 30.0, True))


def test_softcap_cross_entropy_second_backward_gives_the_same_gradient():
    # The gradient-share diagnostics differentiate the CE graph twice; the in-place buffers are rebuilt.
    z = torch.randn(4, 8, requires_grad=True)
    loss = softcap_cross_entropy(z, torch.randn(10, 8), torch.tensor([1, 2, 3, 4]), 30.0, 0.25)
    (g1,) = torch.autograd.grad(loss, z, retain_graph=True)
    (g2,) = torch.autograd.grad(loss, z)
    assert torch.equal(g1, g2)


def test_model_ce_loss_takes_the_fused_path_with_the_same_result():
    cfg = build_config("smoke", {}, environ={})
    torch.manual_seed(0)
    gpt = GPT(cfg.model, 64)
    with torch.no_grad():
        gpt.tok_emb.weight.normal_(0, 2.0)  # large logits: the soft cap is active
    x = torch.randint(0, 1024, (3, 64))
    y = torch.randint(0, 1024, (3, 64))
    z = gpt.encode(x)
    fused = gpt.ce_loss(z, y)
    (gz_f, gw_f) = torch.autograd.grad(fused, (z, gpt.tok_emb.weight), retain_graph=True)
    assert "softcap_ce" in fused.grad_fn.next_functions[0][0].name()
    ref = F.cross_entropy(gpt.logits(z).flatten(0, 1), y.flatten())
    (gz_r, gw_r) = torch.autograd.grad(ref, (z, gpt.tok_emb.weight))
    torch.testing.assert_close(fused, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gz_f, gz_r, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(gw_f, gw_r, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("slope", [0.5, 0.0, -0.3])
def test_leaky_relu_square_matches_autograd(slope):
    h = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    ref = F.leaky_relu(h, slope).square() if slope >= 0 else torch.where(h > 0, h, slope * h).square()
    got = LeakyReluSquare.apply(h, slope)
    torch.testing.assert_close(got, ref, rtol=1e-14, atol=1e-14)
    torch.autograd.gradcheck(lambda t: LeakyReluSquare.apply(t, slope), (h,))


def test_muon_orthogonalises_same_shape_matrices_as_one_batch_with_per_matrix_results():
    from jepagolf.optim.muon import Muon, newton_schulz5

    g = torch.Generator().manual_seed(3)
    shapes = [(24, 8), (16, 16), (24, 8), (16, 16), (24, 8), (8, 24)]
    params = [torch.nn.Parameter(torch.randn(*s, generator=g)) for s in shapes]
    # Two groups, and a different ns_steps in the second: matrices batch only with their own kind.
    opt = Muon([{"params": params[:4]}, {"params": params[4:], "ns_steps": 3}], lr=0.03, momentum=0.9)
    grads = [torch.randn(*s, generator=g) for s in shapes]
    params[3].grad = None
    want = []
    for i, (p, gr) in enumerate(zip(params, grads, strict=True)):
        if i != 3:
            p.grad = gr.clone()
        u = gr + 0.9 * gr  # Nesterov on a zero buffer: g + m * (m * 0 + g)
        steps = 5 if i < 4 else 3
        u = newton_schulz5(u, steps=steps) * max(1.0, p.shape[0] / p.shape[1]) ** 0.5
        want.append(p.detach().clone() if i == 3 else p.detach() - 0.03 * u)
    opt.step()
    for i, (p, w) in enumerate(zip(params, want, strict=True)):
        torch.testing.assert_close(p.detach(), w, rtol=1e-5, atol=1e-6, msg=str(i))


def test_the_embedding_op_is_the_module_lookup_to_the_bit():
    """gpt.embedding (the CPU lookup that a compiled step keeps opaque) gives nn.Embedding's values and weight
    gradient exactly, for a batch of rows and a single row, and is a well-formed custom op."""
    g = torch.Generator().manual_seed(3)
    table = torch.nn.Embedding(50, 16)
    idx = torch.randint(0, 50, (4, 37), generator=g)
    grad = torch.randn(4, 37, 16, generator=g)
    for i, gi in ((idx, grad), (idx[0, :1], grad[0, :1])):
        ref = table(i)
        (ref_gw,) = torch.autograd.grad(ref, table.weight, gi)
        got = lookup(table, i)
        (got_gw,) = torch.autograd.grad(got, table.weight, gi)
        assert torch.equal(got, ref) and torch.equal(got_gw, ref_gw)
    torch.library.opcheck(torch.ops.jepagolf.embedding.default, (table.weight, idx))
    torch.library.opcheck(torch.ops.jepagolf.embedding_backward.default, (grad, idx, 50))
