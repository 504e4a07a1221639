"""Shard format, validation errors, and the resumable TokenStream."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jepagolf.data import shards
from jepagolf.data.shards import (
    HEADER_BYTES,
    SHARD_MAGIC,
    ShardError,
    ShardNotFoundError,
    TokenStream,
    atomic_write,
    list_shards,
    load_shard,
    load_tokens,
    read_header,
    write_shard,
)


def _header(path: Path) -> np.ndarray:
    return np.fromfile(path, dtype="<i4", count=256)


def _patch_header(path: Path, word: int, value: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[4 * word : 4 * word + 4] = np.array([value], dtype="<i4").tobytes()
    path.write_bytes(bytes(raw))


def test_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 65536, size=10_007)
    path = tmp_path / "x_train_000000.bin"
    write_shard(path, tokens)

    assert path.stat().st_size == HEADER_BYTES + 2 * len(tokens)
    header = _header(path)
    assert list(header[:3]) == [SHARD_MAGIC, 1, len(tokens)]
    assert not header[3:].any()
    assert read_header(path) == len(tokens)
    loaded = load_shard(path)
    assert loaded.dtype == np.uint16
    np.testing.assert_array_equal(loaded, tokens)
    # Memory-mapped read-only: a training bug cannot scribble over the dataset.
    with pytest.raises(ValueError):
        loaded[0] = 1
    # Little-endian on disk whatever the host byte order.
    assert path.read_bytes()[HEADER_BYTES : HEADER_BYTES + 2] == int(tokens[0]).to_bytes(2, "little")
    # The atomic write leaves no temp file behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_empty_shard_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "e.bin"
    write_shard(path, np.zeros(0, dtype=np.int64))
    assert read_header(path) == 0
    assert len(load_shard(path, vocab_size=10)) == 0


@pytest.mark.parametrize(
    "tokens, fragment",
    [
        (np.array([1, -1]), "found range [-1, 1]"),
        (np.array([70_000]), "found range [70000, 70000]"),
        (np.zeros((2, 2), dtype=np.int64), "1-D"),
        (np.array([1.5]), "integer dtype"),
    ],
)
def test_write_rejects_bad_tokens(tmp_path: Path, tokens: np.ndarray, fragment: str) -> None:
    path = tmp_path / "bad.bin"
    with pytest.raises(ShardError, match="bad.bin") as info:
        write_shard(path, tokens)
    assert fragment in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "s.bin"
    write_shard(path, np.arange(10))
    before = path.read_bytes()

    def crash(f: BinaryIO) -> None:
        f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["s.bin"]


@pytest.fixture
def shard(tmp_path: Path) -> Path:
    path = tmp_path / "demo_val_000000.bin"
    write_shard(path, np.arange(100) % 50)
    return path


def test_wrong_magic(shard: Path) -> None:
    _patch_header(shard, 0, 12345)
    with pytest.raises(ShardError, match=r"demo_val_000000\.bin: wrong magic number 12345"):
        load_shard(shard)


def test_wrong_version(shard: Path) -> None:
    _patch_header(shard, 1, 2)
    with pytest.raises(ShardError, match=r"demo_val_000000\.bin: unsupported shard version 2"):
        read_header(shard)


def test_truncated(shard: Path) -> None:
    shard.write_bytes(shard.read_bytes()[:-3])
    with pytest.raises(
        ShardError, match=r"demo_val_000000\.bin: truncated: expected 1224 bytes .*found 1221"
    ):
        load_shard(shard)


def test_trailing_bytes_are_rejected_too(shard: Path) -> None:
    shard.write_bytes(shard.read_bytes() + b"\0\0")
    with pytest.raises(ShardError, match="expected 1224 bytes for 100 tokens, found 1226"):
        read_header(shard)


def test_shorter_than_header(shard: Path) -> None:
    shard.write_bytes(b"\0" * 10)
    with pytest.raises(ShardError, match=r"demo_val_000000\.bin: file is 10 bytes, shorter than"):
        read_header(shard)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.bin"):
        read_header(tmp_path / "nope.bin")


def test_token_out_of_vocab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tiny chunks so the bad token sits in a later chunk than the first.
    monkeypatch.setattr(shards, "_CHECK_CHUNK", 16)
    tokens = np.arange(100) % 50
    tokens[[70, 90]] = [1024, 2000]
    path = tmp_path / "s.bin"
    write_shard(path, tokens)
    load_shard(path, vocab_size=2001)  # all ids fit this vocab
    with pytest.raises(ShardError) as info:
        load_shard(path, vocab_size=1024)
    msg = str(info.value)
    assert str(path) in msg and "token id 1024 at position 70" in msg and "vocab size 1024" in msg


def test_list_shards(tmp_path: Path) -> None:
    for name in ["p_train_000001.bin", "p_train_000000.bin", "p_val_000000.bin", "p_train_notes.txt"]:
        write_shard(tmp_path / name, np.arange(3))
    assert [p.name for p in list_shards(tmp_path, "train")] == ["p_train_000000.bin", "p_train_000001.bin"]
    assert [p.name for p in list_shards(tmp_path, "val")] == ["p_val_000000.bin"]
    with pytest.raises(ShardNotFoundError, match="no shards for split 'test'"):
        list_shards(tmp_path, "test")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_shards(tmp_path / "missing", "train")


def test_load_tokens_concatenates(tmp_path: Path) -> None:
    paths = [tmp_path / "a_val_000000.bin", tmp_path / "a_val_000001.bin"]
    write_shard(paths[0], np.arange(5))
    write_shard(paths[1], np.arange(5, 12))
    np.testing.assert_array_equal(load_tokens(paths, vocab_size=12), np.arange(12))
    with pytest.raises(ShardError, match="token id 11"):
        load_tokens(paths, vocab_size=11)


def _write_stream_shards(directory: Path, lengths: list[int]) -> tuple[list[Path], np.ndarray]:
    """Shards holding consecutive integers, so every token says where it came from."""
    paths, start = [], 0
    for i, n in enumerate(lengths):
        path = directory / f"s_train_{i:06d}.bin"
        write_shard(path, np.arange(start, start + n))
        paths.append(path)
        start += n
    return paths, np.arange(start)


def test_stream_crosses_boundaries_and_wraps(tmp_path: Path) -> None:
    paths, all_tokens = _write_stream_shards(tmp_path, [10, 5, 15])
    stream = TokenStream(paths, vocab_size=30)
    first = stream.take(12)
    assert first.dtype == np.int64
    np.testing.assert_array_equal(first, np.arange(12))  # crosses shard 0 -> 1
    np.testing.assert_array_equal(stream.take(18), np.arange(12, 30))  # ends exactly at the end
    assert stream.state_dict() == {"shard_index": 0, "position": 0, "num_shards": 3}
    np.testing.assert_array_equal(stream.take(65), np.resize(all_tokens, 65))  # wraps twice


def test_stream_validates_vocab_when_opening(tmp_path: Path) -> None:
    paths, _ = _write_stream_shards(tmp_path, [10, 10])
    stream = TokenStream(paths, vocab_size=15)
    stream.take(10)
    with pytest.raises(ShardError, match=r"s_train_000001\.bin: token id 15 at position 5"):
        stream.take(10)


def test_stream_all_empty(tmp_path: Path) -> None:
    paths, _ = _write_stream_shards(tmp_path, [0, 0])
    with pytest.raises(ShardError, match="all 2 shards are empty"):
        TokenStream(paths).take(1)


def test_stream_state_errors(tmp_path: Path) -> None:
    paths, _ = _write_stream_shards(tmp_path, [10, 5])
    stream = TokenStream(paths)
    with pytest.raises(ShardError, match="saved over 3 shards"):
        stream.load_state_dict({"shard_index": 0, "position": 0, "num_shards": 3})
    with pytest.raises(ShardError, match="saved position 6 is outside"):
        stream.load_state_dict({"shard_index": 1, "position": 6, "num_shards": 2})


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 40), min_size=1, max_size=5).filter(lambda xs: sum(xs) > 0),
    takes=st.lists(st.integers(0, 90), min_size=1, max_size=8),
    resume_at=st.integers(0, 8),
)
def test_stream_property_and_resume(lengths: list[int], takes: list[int], resume_at: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        paths, all_tokens = _write_stream_shards(Path(d), lengths)
        stream = TokenStream(paths, vocab_size=len(all_tokens))
        got = [stream.take(n) for n in takes]
        # Expected: the cyclic concatenation of all shards, read in order.
        expected = np.resize(all_tokens, sum(takes))
        np.testing.assert_array_equal(np.concatenate(got), expected)

        # Resume from a saved state (through JSON, as a checkpoint would) at any point.
        replay = TokenStream(paths, vocab_size=len(all_tokens))
        k = min(resume_at, len(takes))
        for n in takes[:k]:
            replay.take(n)
        state = json.loads(json.dumps(replay.state_dict()))
        assert all(type(v) is int for v in state.values())
        resumed = TokenStream(paths, vocab_size=len(all_tokens))
        resumed.load_state_dict(state)
        for n, want in zip(takes[k:], got[k:], strict=True):
            np.testing.assert_array_equal(resumed.take(n), want)
        assert resumed.state_dict() == stream.state_dict()


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 40), min_size=1, max_size=5).filter(lambda xs: sum(xs) > 0),
    ops=st.lists(st.tuples(st.booleans(), st.integers(0, 130)), min_size=1, max_size=8),
    laps=st.integers(0, 10**12),
)
def test_stream_skip_reads_what_take_would(lengths: list[int], ops: list[tuple[bool, int]], laps: int) -> None:
    """skip(n) lands where take(n) would, from any position (mid-shard included), and a skip of many
    laps of the corpus takes no longer than one lap (it is reduced modulo the corpus)."""
    with tempfile.TemporaryDirectory() as d:
        paths, all_tokens = _write_stream_shards(Path(d), lengths)
        stream, ref = TokenStream(paths, vocab_size=len(all_tokens)), TokenStream(paths, vocab_size=len(all_tokens))
        for is_skip, n in ops:
            if is_skip:
                stream.skip(n)
                ref.take(n)
            else:
                np.testing.assert_array_equal(stream.take(n), ref.take(n))
            assert stream.state_dict() == ref.state_dict()
        stream.skip(laps * len(all_tokens) + 3)
        ref.take(3)
        assert stream.state_dict() == ref.state_dict()


def test_stream_skip_errors(tmp_path: Path) -> None:
    paths, _ = _write_stream_shards(tmp_path, [0, 0])
    stream = TokenStream(paths)
    stream.skip(0)  # nothing to read, nothing read
    with pytest.raises(ShardError, match="all 2 shards are empty"):
        stream.skip(1)
    with pytest.raises(ValueError, match="n must be >= 0"):
        stream.skip(-1)


def test_two_datasets_in_one_folder_are_refused_by_name(tmp_path):
    for prefix in ("fineweb", "mine"):
        for split in ("train", "val"):
            write_shard(tmp_path / f"{prefix}_{split}_000000.bin", np.arange(10, dtype=np.uint16))
    with pytest.raises(ShardError, match=r"train shards of 2 datasets \(fineweb_train_\*, mine_train_\*\) in one "
                                         "folder; keep one dataset per folder"):
        list_shards(tmp_path, "train")


def test_a_failed_shard_write_names_the_file_and_the_cause(tmp_path):
    """A write cut short (disk full; here the file-size limit, which fails writes the same way) raises with
    the system's errno and the shard's own name, and leaves no temporary file: not numpy's `N requested and
    M written`."""
    import errno
    import resource
    import signal

    path = tmp_path / "x_train_000000.bin"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, hard))
    try:
        with pytest.raises(OSError) as info:
            write_shard(path, np.zeros(200_000, dtype=np.uint16))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert info.value.errno == errno.EFBIG and info.value.filename == str(path), info.value
    assert not list(tmp_path.iterdir())


def test_split_tokens_counts_each_splits_headers(tmp_path: Path) -> None:
    for name, n in (("fineweb_train_000000.bin", 5), ("fineweb_train_000001.bin", 7), ("fineweb_val_000000.bin", 3)):
        shards.write_shard(tmp_path / name, np.arange(n, dtype=np.uint16))
    assert (shards.split_tokens(tmp_path, "train"), shards.split_tokens(tmp_path, "val")) == (12, 3)
