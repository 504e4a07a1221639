"""GPTQ rounding and int5 storage: same grid and format, lower output error / fewer bytes."""

from __future__ import annotations

import pytest
import torch

from jepagolf.config import build_config
from jepagolf.export.artifact import int5_patterns, write_artifact
from jepagolf.export.container import ArtifactError, artifact_bytes, load_artifact, load_artifact_bytes
from jepagolf.export.gptq import calibration_tokens, collect_hessians, export_hessians, gptq_quantize
from jepagolf.export.quant import QuantizedModel, QuantizedTensor, quantize_rows, quantize_state_dict, storage_kind
from jepagolf.model.gpt import GPT


def _correlated_inputs(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g) * 0.3
    return torch.randn(n, d, generator=g) @ mix + torch.randn(n, d, generator=g)


@pytest.mark.parametrize("levels", [31, 15])
def test_gptq_lowers_the_output_error_on_the_same_grid(levels):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(96, 64, generator=g) * 0.02
    x = _correlated_inputs(2048, 64, seed=2)
    q_rtn, s_rtn = quantize_rows(w, levels)
    q, s = gptq_quantize(w, x.double().T @ x.double(), levels)
    assert torch.equal(s, s_rtn)  # same per-row scales: only the rounding differs
    assert q.dtype == torch.int8 and int(q.abs().max()) <= levels
    err_rtn = ((w - q_rtn.float() * s[:, None].float()) @ x.T).square().mean()
    err = ((w - q.float() * s[:, None].float()) @ x.T).square().mean()
    assert err < 0.8 * err_rtn


def test_gptq_with_identity_hessian_is_round_to_nearest():
    # With uncorrelated, equal-variance inputs no column can compensate another.
    w = torch.randn(16, 32, generator=torch.Generator().manual_seed(3))
    q_rtn, _ = quantize_rows(w, 31)
    q, _ = gptq_quantize(w, torch.eye(32, dtype=torch.float64), 31, damp=0.0)
    assert torch.equal(q, q_rtn)


def test_gptq_rejects_a_mismatched_hessian():
    with pytest.raises(ValueError, match="does not match"):
        gptq_quantize(torch.zeros(4, 8), torch.eye(7), 31)


def test_int5_routing_levels_and_container_round_trip():
    sd = {"blocks.0.mlp.fc.weight": torch.randn(64, 32), "blocks.0.attn.c_q.weight": torch.randn(32, 32)}
    assert storage_kind("blocks.0.mlp.fc.weight", (64, 32), min_numel=1, int5_patterns=("mlp.",)) == "int5"
    assert storage_kind("blocks.0.attn.c_q.weight", (32, 32), min_numel=1, int5_patterns=("mlp.",)) == "int6"
    qm = quantize_state_dict(sd, min_numel=1, int5_patterns=("mlp.",))
    assert qm.quantized["blocks.0.mlp.fc.weight"].kind == "int5"
    assert int(qm.quantized["blocks.0.mlp.fc.weight"].q.abs().max()) == 15
    back, _ = load_artifact_bytes(artifact_bytes(qm))
    assert back.quantized["blocks.0.mlp.fc.weight"].kind == "int5"
    assert torch.equal(back.quantized["blocks.0.mlp.fc.weight"].q, qm.quantized["blocks.0.mlp.fc.weight"].q)
    # Codes beyond the int5 range are rejected on load.
    bad = QuantizedModel(quantized={"w": QuantizedTensor(torch.full((2, 2), 20, dtype=torch.int8),
                                                         torch.ones(2, dtype=torch.float16), "int5")})
    with pytest.raises(ArtifactError, match="int5 codes outside -15..15"):
        load_artifact_bytes(artifact_bytes(bad))
    assert int5_patterns(build_config("smoke", {"int5_patterns": " mlp., attn. ,"}, environ={})) == ("mlp.", "attn.")


def test_int5_costs_fewer_bytes_than_int6():
    w = {"m.weight": torch.randn(256, 256, generator=torch.Generator().manual_seed(4))}
    six = len(artifact_bytes(quantize_state_dict(w, min_numel=1)))
    five = len(artifact_bytes(quantize_state_dict(w, min_numel=1, int5_patterns=("m.",))))
    assert five < 0.87 * six  # ~1 bit of ~5.3 per weight


def test_export_with_gptq_uses_train_calibration_and_round_trips(tmp_path, demo_data):
    cfg = build_config("smoke", {"gptq": "true", "gptq_calib_tokens": 512}, environ={})
    torch.manual_seed(0)
    gpt = GPT(cfg.model, cfg.train.train_seq_len)
    with torch.no_grad():  # non-zero output projections, so every matrix has something to round
        for p in gpt.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    tokens = calibration_tokens(demo_data.data_dir, 512, 64)
    assert tokens.shape == (8, 64) and tokens.dtype == torch.int64
    hessians = export_hessians(gpt, cfg, demo_data.data_dir)
    assert hessians is not None
    matrices = {n for n, t in gpt.state_dict().items() if n.endswith(".weight") and t.ndim == 2} - {"bigram.weight"}
    assert set(hessians) == matrices  # every linear, plus the tied head; the bigram table is a lookup
    for name, h in hessians.items():
        assert h.dtype == torch.float64 and torch.allclose(h, h.T) and float(torch.diag(h).min()) >= 0, name
    ref = collect_hessians(gpt, tokens)
    assert all(torch.allclose(ref[n], hessians[n]) for n in ref)
    size_gptq = write_artifact(gpt.state_dict(), tmp_path / "g.lzma", cfg, hessians)
    size_rtn = write_artifact(gpt.state_dict(), tmp_path / "r.lzma", cfg)
    qg, _ = load_artifact(tmp_path / "g.lzma")
    qr, _ = load_artifact(tmp_path / "r.lzma")
    assert any(not torch.equal(qg.quantized[n].q, qr.quantized[n].q) for n in qg.quantized)
    assert abs(size_gptq - size_rtn) < 0.05 * size_rtn
    assert export_hessians(gpt, build_config("smoke", {"gptq": "false"}, environ={}), demo_data.data_dir) is None
