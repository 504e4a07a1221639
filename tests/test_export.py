"""Tests for int6 per-row quantisation and the binary artifact container."""

from __future__ import annotations

import functools
import hashlib
import json
import lzma
import os
import pickle
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jepagolf.export.container import (
    MAGIC,
    ArtifactError,
    artifact_bytes,
    artifact_bytes_from_state_dict,
    compress_report,
    encode_payload,
    load_artifact,
    load_artifact_bytes,
    save_artifact,
)
from jepagolf.export.quant import (
    DEFAULT_CLIP_QUANTILES,
    QuantizedModel,
    QuantizedTensor,
    dequantize_int6,
    dequantize_state_dict,
    quantize_int6,
    quantize_int8,
    quantize_state_dict,
)


def _randn(*shape: int, seed: int = 0, std: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * std


def _heavy_tailed(rows: int, cols: int, seed: int) -> torch.Tensor:
    # Student-t (3 dof) rows with per-row scales: outliers make clipping worth it, as in trained nets.
    # Built by hand (z / sqrt(chi2_3 / 3)) because torch.distributions takes no generator.
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(rows, cols, generator=g)
    chi2 = torch.randn(rows, cols, 3, generator=g).square().sum(-1)
    return z / (chi2 / 3).sqrt() * torch.rand(rows, 1, generator=g).add(0.1) * 0.02


# ----------------------------------------------------------------------------- quantisation

MATRICES = {
    "gauss": lambda: _randn(64, 300, seed=1, std=0.02),
    "heavy": lambda: _heavy_tailed(48, 256, seed=2),
    "tall": lambda: _randn(300, 7, seed=3, std=0.5),
    "one_col": lambda: _randn(9, 1, seed=4),
}


@pytest.mark.parametrize("kind", sorted(MATRICES))
def test_int6_levels_dtypes_and_error_bound_within_clip(kind: str) -> None:
    w = MATRICES[kind]()
    q, scale = quantize_int6(w)
    assert q.dtype == torch.int8 and q.shape == w.shape
    assert scale.dtype == torch.float16 and scale.shape == (w.shape[0],)
    assert int(q.min()) >= -31 and int(q.max()) <= 31
    deq = dequantize_int6(q, scale)
    assert deq.dtype == torch.float32
    s = scale.float()[:, None]
    inside = w.abs() <= 31 * s
    err = (w - deq).abs()
    # Rounding to the nearest level of the stored (fp16) step: at most half a step inside the clip.
    assert bool((err <= s / 2 * (1 + 1e-5) + 1e-12)[inside].all())
    # Outside the clip the value saturates at the extreme level with the right sign.
    outside = ~inside
    assert bool((q[outside].abs() == 31).all())
    assert bool((torch.sign(q[outside].float()) == torch.sign(w[outside])).all())


def _row_mse(w: torch.Tensor, clip: torch.Tensor, level: int = 31) -> torch.Tensor:
    """MSE per row for a given per-row clip, with the fp16-rounded scale (independent re-derivation)."""
    s = (clip / level).to(torch.float16).float()[:, None]
    q = torch.round(w / s).clamp(-level, level)
    return (q * s - w).square().mean(dim=1)


@pytest.mark.parametrize("kind", ["gauss", "heavy"])
def test_clip_choice_is_the_best_candidate_and_never_worse_than_max(kind: str) -> None:
    w = MATRICES[kind]()
    q, scale = quantize_int6(w)
    chosen = (dequantize_int6(q, scale) - w).square().mean(dim=1)
    per_candidate = torch.stack(
        [_row_mse(w, torch.quantile(w.abs(), qq, dim=1)) for qq in DEFAULT_CLIP_QUANTILES]
    )  # [n_candidates, rows]
    assert bool((chosen <= per_candidate[-1] * (1 + 1e-6) + 1e-14).all())  # the 1.0 quantile = max|w|
    torch.testing.assert_close(chosen, per_candidate.min(dim=0).values, rtol=1e-5, atol=1e-12)
    if kind == "heavy":
        # With outliers, clipping below the max must actually be chosen for some rows.
        assert bool((chosen < per_candidate[-1] * 0.99).any())


def test_int8_levels_and_finer_error() -> None:
    w = _randn(32, 200, seed=5, std=0.02)
    q8, s8 = quantize_int8(w)
    assert int(q8.abs().max()) <= 127 and int(q8.abs().max()) > 31
    q6, s6 = quantize_int6(w)
    err8 = (dequantize_int6(q8, s8) - w).square().mean()
    err6 = (dequantize_int6(q6, s6) - w).square().mean()
    assert err8 < err6 / 4


def test_degenerate_rows_do_not_produce_nan() -> None:
    w = torch.stack([torch.zeros(16), torch.full((16,), 0.3), torch.full((16,), 1e-9), _randn(16, seed=6)])
    q, scale = quantize_int6(w)
    deq = dequantize_int6(q, scale)
    assert torch.isfinite(deq).all() and bool((scale.float() > 0).all())
    assert torch.equal(deq[0], torch.zeros(16))
    torch.testing.assert_close(deq[1], w[1], rtol=1e-3, atol=0)


def test_quantize_rejects_nan() -> None:
    w = _randn(4, 4, seed=7)
    w[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        quantize_int6(w)


def _realistic_state_dict(width: int = 64, blocks: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {
        "tok_emb.weight": torch.randn(256, width, generator=g) * 0.005,
        "bigram.embed.weight": torch.randn(512, width, generator=g) * 0.01,
        "skip_weights": torch.ones(blocks // 2 or 1, width),
    }
    for i in range(blocks):
        p = f"blocks.{i}."
        sd[p + "attn.c_qkv.weight"] = torch.randn(3 * width, width, generator=g) * 0.02
        sd[p + "attn.proj.weight"] = torch.randn(width, width, generator=g) * 0.02
        sd[p + "mlp.fc.weight"] = torch.randn(3 * width, width, generator=g) * 0.02
        sd[p + "mlp.proj.weight"] = torch.randn(width, 3 * width, generator=g) * 0.02
        sd[p + "attn.q_gain"] = torch.full((4,), 4.0)
        sd[p + "attn_scale"] = torch.rand(width, generator=g)
        sd[p + "mlp_scale"] = torch.rand(width, generator=g)
        sd[p + "resid_mix"] = torch.rand(2, width, generator=g)
        sd[p + "norm.bias"] = torch.randn(width, generator=g) * 0.1
    sd["step_counter"] = torch.tensor(7, dtype=torch.int64)
    return sd


def test_quantize_state_dict_routes_each_tensor() -> None:
    sd = _realistic_state_dict()
    qm = quantize_state_dict(sd, min_numel=8192)
    assert set(qm.names()) == set(sd)
    # 64x192 = 12288 >= 8192 -> int6; 64x64 = 4096 < 8192 -> float.
    assert qm.quantized["blocks.0.mlp.fc.weight"].kind == "int6"
    assert "blocks.0.attn.proj.weight" in qm.floats and qm.floats["blocks.0.attn.proj.weight"].dtype == torch.float16
    assert qm.quantized["tok_emb.weight"].kind == "int6"
    for name in ["blocks.0.attn.q_gain", "blocks.0.attn_scale", "blocks.1.resid_mix", "skip_weights"]:
        assert qm.floats[name].dtype == torch.float32, name
    assert qm.floats["blocks.0.norm.bias"].dtype == torch.float16
    assert qm.floats["step_counter"].dtype == torch.int64
    # The tied embedding is quantised whatever its size, at int8 levels on request.
    qm8 = quantize_state_dict(sd, min_numel=10**9, embedding_kind="int8")
    assert qm8.quantized["tok_emb.weight"].kind == "int8" and set(qm8.quantized) == {"tok_emb.weight"}
    # A control name never gets quantised, however big.
    qm_ctrl = quantize_state_dict({"big.gain": torch.ones(200, 200)}, min_numel=1)
    assert qm_ctrl.floats["big.gain"].dtype == torch.float32


def test_quantize_state_dict_keeps_fp16_overflow_in_fp32() -> None:
    qm = quantize_state_dict({"buf": torch.tensor([1e6, 1.0])})
    assert qm.floats["buf"].dtype == torch.float32


def test_dequantize_state_dict_round_trip() -> None:
    sd = _realistic_state_dict()
    out = dequantize_state_dict(quantize_state_dict(sd, min_numel=4096))
    assert set(out) == set(sd)
    for name, t in sd.items():
        assert out[name].shape == t.shape
        if t.is_floating_point():
            assert out[name].dtype == torch.float32
            # int6 on std-0.02 weights: relative RMS error ~3%; fp16 ~1e-3.
            rel = (out[name] - t).square().mean().sqrt() / t.square().mean().sqrt()
            assert rel < 0.05, (name, float(rel))
        else:
            assert torch.equal(out[name], t)


# ----------------------------------------------------------------------------- container


@functools.lru_cache(maxsize=1)
def _small_artifact() -> bytes:
    """A small but complete artifact (every storage kind present), built once for the fuzz tests."""
    sd = _realistic_state_dict(width=32, blocks=2, seed=3)
    sd["mask"] = torch.tensor([True, False, True])
    return artifact_bytes(quantize_state_dict(sd, min_numel=2048, embedding_kind="int8"), {"preset": "smoke"})


def _assert_same_model(a: QuantizedModel, b: QuantizedModel) -> None:
    assert a.names() == b.names()
    for name, qt in a.quantized.items():
        other = b.quantized[name]
        assert qt.kind == other.kind and torch.equal(qt.q, other.q) and torch.equal(qt.scale, other.scale)
    for name, t in a.floats.items():
        assert t.dtype == b.floats[name].dtype and torch.equal(t, b.floats[name])


def test_artifact_round_trip_and_bytes_per_param(tmp_path: Path) -> None:
    sd = _realistic_state_dict(width=64, blocks=2)
    sd["blocks.0.mlp.big.weight"] = _randn(512, 1536, seed=9, std=0.02)  # the reference matrix
    qm = quantize_state_dict(sd)
    meta = {"preset": "smoke", "val_bpb": 1.2345, "nested": {"a": [1, 2]}}
    path = tmp_path / "model.jgolf"
    n_bytes = save_artifact(path, qm, meta=meta)
    assert n_bytes == path.stat().st_size
    qm2, meta2 = load_artifact(path)
    assert meta2 == meta
    _assert_same_model(qm, qm2)
    n_params = sum(t.numel() for t in sd.values())
    print(f"\nartifact: {n_bytes} bytes for {n_params} params = {n_bytes / n_params:.4f} bytes/param")

    # One Gaussian 512x1536 int6 matrix on its own: entropy of the codes ~5.3 bits, so LZMA should
    # land near 0.68 bytes/param (measured 0.680).
    big = {"w.weight": sd["blocks.0.mlp.big.weight"]}
    size = len(artifact_bytes_from_state_dict(big))
    per_param = size / big["w.weight"].numel()
    print(f"gaussian 512x1536 int6: {size} bytes = {per_param:.4f} bytes/param")
    assert per_param <= 0.70


def test_artifact_is_deterministic(tmp_path: Path) -> None:
    sd = _realistic_state_dict(seed=11)
    reversed_sd = dict(reversed(list(sd.items())))  # insertion order must not matter
    a = tmp_path / "a.jgolf"
    b = tmp_path / "b.jgolf"
    save_artifact(a, quantize_state_dict(sd), meta={"x": 1, "y": 2})
    save_artifact(b, quantize_state_dict(reversed_sd), meta={"y": 2, "x": 1})
    assert a.read_bytes() == b.read_bytes()


def test_save_is_atomic_and_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "m.jgolf"
    path.write_bytes(b"old contents")
    save_artifact(path, quantize_state_dict({"v": torch.ones(3)}))
    assert load_artifact(path)[0].names() == ["v"]
    assert sorted(os.listdir(tmp_path)) == ["m.jgolf"]  # no temp file left behind


def test_artifact_and_json_files_get_the_umask_mode_like_any_file(tmp_path: Path) -> None:
    # A temp file from tempfile.mkstemp is 0600: renamed into place, it left artifacts unreadable to
    # the group, unlike every other file of the run folder.
    from jepagolf.train.logger import atomic_write_text

    old = os.umask(0o022)
    try:
        save_artifact(tmp_path / "m.jgolf", quantize_state_dict({"v": torch.ones(3)}))
        atomic_write_text(tmp_path / "s.json", "{}\n")
        (tmp_path / "plain").write_text("x")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"m.jgolf": 0o644, "s.json": 0o644, "plain": 0o644}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_flipped_byte_is_detected(data: st.DataObject) -> None:
    blob = bytearray(_small_artifact())
    pos = data.draw(st.integers(0, len(blob) - 1), label="position")
    flip = data.draw(st.integers(1, 255), label="xor")
    blob[pos] ^= flip
    with pytest.raises(ArtifactError):
        load_artifact_bytes(bytes(blob))


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_truncated_file_is_detected(data: st.DataObject) -> None:
    blob = _small_artifact()
    cut = data.draw(st.integers(0, len(blob) - 1), label="length")
    with pytest.raises(ArtifactError):
        load_artifact_bytes(blob[:cut])


def test_error_messages(tmp_path: Path) -> None:
    blob = _small_artifact()
    with pytest.raises(ArtifactError, match="truncated"):
        load_artifact_bytes(blob[:-1])
    with pytest.raises(ArtifactError, match="truncated"):
        load_artifact_bytes(blob[:3])
    corrupted = bytearray(blob)
    corrupted[len(blob) // 2] ^= 0x40
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        load_artifact_bytes(bytes(corrupted))
    with pytest.raises(ArtifactError, match="not a jepagolf artifact"):
        load_artifact_bytes(b"PK\x03\x04" + blob[4:])
    torch_file = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, torch_file)
    with pytest.raises(ArtifactError, match="not a jepagolf artifact"):
        load_artifact(torch_file)
    with pytest.raises(ArtifactError, match="not a jepagolf artifact"):
        load_artifact_bytes(b"")


def _wrap(payload: bytes) -> bytes:
    """Build a file around a hand-made payload with valid lengths and checksum (format as documented)."""
    compressed = lzma.compress(payload, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 6}])
    body = MAGIC + struct.pack("<QQ", len(payload), len(compressed)) + compressed
    return body + hashlib.sha256(body).digest()


def _payload(header: dict, data: bytes) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<I", len(h)) + h + data


def _entry(name: str, kind: str, dtype: str, shape: list[int], offset: int, length: int) -> dict:
    return {"name": name, "kind": kind, "dtype": dtype, "shape": shape, "offset": offset, "length": length}


@pytest.mark.parametrize(
    ("header", "data", "match"),
    [
        ({"version": 1, "meta": {}, "tensors": [_entry("w", "fp32", "object", [1], 0, 8)]}, b"\0" * 8, "not allowed"),
        ({"version": 1, "meta": {}, "tensors": [_entry("w", "fp32", "float32", [2], 0, 4)]}, b"\0" * 8, "offset"),
        (
            {"version": 1, "meta": {}, "tensors": [_entry("w", "fp32", "float32", [4], 0, 16)]},
            b"\0" * 8,
            "past the end",
        ),
        ({"version": 1, "meta": {}, "tensors": [_entry("w", "fp32", "float32", [1], 0, 4)]}, b"\0" * 8, "trailing"),
        ({"version": 2, "meta": {}, "tensors": []}, b"", "version"),
        ({"version": 1, "meta": {}, "tensors": [_entry("w", "int6", "int8", [1, 2], 0, 2)]}, b"\0\0", "pair up"),
        (
            {
                "version": 1,
                "meta": {},
                "tensors": [_entry("w", "int6", "int8", [1, 2], 0, 2), _entry("w", "scale", "float16", [1], 2, 2)],
            },
            b"\x80\x00\x00\x3c",  # code -128: abs() would overflow int8 and hide it
            "codes outside",
        ),
        (
            {"version": 1, "meta": {}, "tensors": [_entry("w", "fp16", "float16", [1], i, 2) for i in (0, 2)]},
            b"\0" * 4,
            "duplicate",
        ),
    ],
)
def test_malformed_header_is_rejected(header: dict, data: bytes, match: str) -> None:
    with pytest.raises(ArtifactError, match=match):
        load_artifact_bytes(_wrap(_payload(header, data)))


def test_malformed_header_json() -> None:
    bad = struct.pack("<I", 5) + b"{nope"
    with pytest.raises(ArtifactError, match="malformed artifact header"):
        load_artifact_bytes(_wrap(bad))


def test_load_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.jgolf"
    path.write_bytes(_small_artifact())

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("artifact loading must not unpickle")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    qm, meta = load_artifact(path)
    assert meta == {"preset": "smoke"} and "tok_emb.weight" in qm.quantized


def test_quantized_tensor_validates_its_fields() -> None:
    with pytest.raises(ValueError, match="int8"):
        QuantizedTensor(torch.zeros(2, 2), torch.ones(2, dtype=torch.float16))
    with pytest.raises(ValueError, match="scale"):
        QuantizedTensor(torch.zeros(2, 2, dtype=torch.int8), torch.ones(3, dtype=torch.float16))


def test_compress_report_has_standard_codecs() -> None:
    payload = encode_payload(quantize_state_dict({"w.weight": _randn(128, 128, seed=12, std=0.02)}, min_numel=1))
    report = compress_report(payload)
    assert {"raw", "lzma", "xz", "zlib"} <= set(report)
    assert report["raw"] == len(payload)
    assert report["lzma"] < report["raw"] and report["lzma"] <= report["xz"]
