"""The checkpoint file format: exact round trip, no pickle, corruption and truncation detected."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from jepagolf.train.checkpoint import (
    MAGIC,
    CheckpointError,
    list_checkpoints,
    load_latest,
    read_checkpoint,
    save_checkpoint,
    write_checkpoint,
)

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
          torch.int8, torch.uint8, torch.bool]


def sample_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "model/w": torch.randn(5, 7, generator=g),
        "optim/0/3/step": torch.tensor(12.0),
        "bf16": torch.randn(4, generator=g).to(torch.bfloat16),
        "rng/torch": torch.get_rng_state(),
        "empty": torch.zeros(0, 3),
        "mask": torch.tensor([True, False, True]),
    }


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(DTYPES), st.lists(st.integers(0, 4), max_size=3)), max_size=6),
       st.dictionaries(st.text(max_size=5),
                       st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(),
                                 st.lists(st.integers(), max_size=3)), max_size=4))
def test_round_trip_is_exact(tmp_path_factory, specs, meta):
    g = torch.Generator().manual_seed(1)
    tensors = {}
    for i, (dtype, shape) in enumerate(specs):
        raw = torch.randn(tuple(shape), generator=g) * 100
        tensors[f"t{i}"] = raw > 0 if dtype == torch.bool else raw.to(dtype)
    path = tmp_path_factory.mktemp("rt") / "x.ckpt"
    size = write_checkpoint(path, tensors, meta)
    assert size == path.stat().st_size
    back, back_meta = read_checkpoint(path)
    assert back_meta == meta and list(back) == list(tensors)
    for k, t in tensors.items():
        assert back[k].dtype == t.dtype and back[k].shape == t.shape and torch.equal(back[k], t), k


def test_every_flipped_byte_region_is_detected(tmp_path):
    path = tmp_path / "a.ckpt"
    write_checkpoint(path, sample_tensors(), {"step": 3})
    data = path.read_bytes()
    for pos in (0, 10, 30, len(data) // 2, len(data) - 40, len(data) - 1):
        bad = bytearray(data)
        bad[pos] ^= 0x01
        path.write_bytes(bytes(bad))
        with pytest.raises(CheckpointError):
            read_checkpoint(path)
    for cut in (4, 20, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated"):
            read_checkpoint(path)


def test_pickle_files_are_refused(tmp_path):
    # A torch.save file (a pickle) is never unpickled: the magic check refuses it first.
    path = tmp_path / "evil.ckpt"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not a jepagolf checkpoint"):
        read_checkpoint(path)


def _forge(header: dict, blob: bytes) -> bytes:
    h = json.dumps(header).encode()
    body = struct.pack("<8sQQ", MAGIC, len(h), len(blob)) + h + blob
    return body + hashlib.sha256(body).digest()


def test_header_is_validated_even_with_a_valid_checksum(tmp_path):
    path = tmp_path / "forged.ckpt"
    cases = {
        "dtype 'object' is not allowed": {"dtype": "object", "shape": [1], "offset": 0, "length": 8},
        "bad shape": {"dtype": "float32", "shape": [-1], "offset": 0, "length": 8},
        "offset/length do not match": {"dtype": "float32", "shape": [4], "offset": 0, "length": 8},
    }
    for message, entry in cases.items():
        path.write_bytes(_forge({"version": 1, "meta": {}, "tensors": [{"name": "x", **entry}]}, b"\0" * 8))
        with pytest.raises(CheckpointError, match=message):
            read_checkpoint(path)
    path.write_bytes(_forge({"version": 2, "meta": {}, "tensors": []}, b""))
    with pytest.raises(CheckpointError, match="unsupported checkpoint format version 2"):
        read_checkpoint(path)


def test_keep_last_k_and_fallback(tmp_path):
    for step in (2, 4, 6, 8):
        save_checkpoint(tmp_path, step, sample_tensors(), {"step": step}, keep=3)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [4, 6, 8]
    (tmp_path / "checkpoints" / "step_00000008.ckpt").write_bytes(b"garbage")
    warnings: list[str] = []
    ckpt, issued = load_latest(tmp_path, warn=warnings.append)
    assert ckpt.step == 6 and issued == warnings
    assert "step_00000008.ckpt: not a jepagolf checkpoint" in warnings[0]
    assert "falling back to the previous checkpoint step_00000006.ckpt" in warnings[0]
    # A checkpoint renamed to another step is refused too.
    (tmp_path / "checkpoints" / "step_00000006.ckpt").rename(tmp_path / "checkpoints" / "step_00000009.ckpt")
    ckpt, _ = load_latest(tmp_path)
    assert ckpt.step == 4


def test_non_json_meta_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not plain JSON"):
        write_checkpoint(tmp_path / "x.ckpt", {}, {"bad": object()})
    with pytest.raises(CheckpointError, match="not plain JSON"):
        write_checkpoint(tmp_path / "x.ckpt", {}, {"nan": float("nan")})
    assert not list(tmp_path.iterdir())
