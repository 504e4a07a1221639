"""Token shards in the parameter-golf format, and a resumable stream over them.

A shard is 256 little-endian int32 header words ([0] magic 20240520, [1] version 1,
[2] token count n, the rest 0) followed by n little-endian uint16 tokens, so its size
is exactly 1024 + 2n bytes (DESIGN section 5). Every reader here checks all of that
before trusting a file: a truncated download or a shard from a larger-vocab tokenizer
must stop the run with a message naming the file, never train on garbage.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
HEADER_WORDS = 256
HEADER_BYTES = HEADER_WORDS * 4
HEADER_DTYPE = np.dtype("<i4")
TOKEN_DTYPE = np.dtype("<u2")
MAX_TOKEN_ID = np.iinfo(np.uint16).max

# Vocabulary checks scan shards in pieces of this many tokens so that validating a
# 100M-token (200 MB) shard does not materialise a second full-size boolean array.
_CHECK_CHUNK = 1 << 24


class ShardError(ValueError):
    """A shard file (or a folder of them) is malformed or unusable."""


class ShardNotFoundError(ShardError, FileNotFoundError):
    """The data folder or the shards of a split are missing.

    Also a FileNotFoundError so that callers handling "nothing there" generically
    still catch it.
    """


def write_shard(path: str | os.PathLike[str], tokens: np.ndarray) -> None:
    """Write ``tokens`` (1-D, integer, each in [0, 65535]) as a shard at ``path``.

    The file appears atomically (see ``atomic_write``), so a crash mid-write leaves
    either the old file or the new one, never half a shard.
    """
    path = Path(path)
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise ShardError(f"{path}: tokens must be a 1-D array, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ShardError(f"{path}: tokens must have an integer dtype, got {arr.dtype}")
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > MAX_TOKEN_ID:
            raise ShardError(
                f"{path}: token ids must lie in [0, {MAX_TOKEN_ID}] to fit uint16, found range [{lo}, {hi}]"
            )
    if arr.size > np.iinfo(np.int32).max:
        raise ShardError(f"{path}: {arr.size} tokens do not fit the int32 count in the header; split it")

    header = np.zeros(HEADER_WORDS, dtype=HEADER_DTYPE)
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, arr.size
    body = np.ascontiguousarray(arr, dtype=TOKEN_DTYPE)

    def write(f: BinaryIO) -> None:
        f.write(header.tobytes())
        f.flush()
        # Through the file object, not ndarray.tofile: no second in-memory copy either, and a failed
        # write (disk full) raises with its errno, which atomic_write turns into a line naming the file.
        f.write(memoryview(body).cast("B"))

    atomic_write(path, write)


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Create or replace ``path`` atomically with what ``write(f)`` writes to a binary file.

    The bytes go to a temp file in the same folder (so the final rename stays on one
    filesystem), are fsynced, then renamed over ``path``: readers see the old file or
    the complete new one, never a partial write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkstemp: its files are mode 0600, while open(..., "x") honours the
    # umask like any ordinary file, which matters for a shared dataset cache.
    tmp_name = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    f = open(tmp_name, "xb")  # noqa: SIM115 - closed by the with below, inside the cleanup's reach
    try:
        with f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except OSError as e:
        tmp_name.unlink(missing_ok=True)
        if e.filename is None and e.errno is not None:  # a failed write or fsync (disk full) names no file
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    except BaseException:
        # Remove the partial temp file, then let the original error propagate.
        tmp_name.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # The rename is only durable once the directory entry is on disk; POSIX only,
    # since Windows cannot open a directory as a file.
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_header(path: str | os.PathLike[str]) -> int:
    """Validate the header and the file size of a shard; return its token count."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError as e:
        raise ShardNotFoundError(f"{path}: shard file does not exist") from e
    if len(raw) < HEADER_BYTES:
        raise ShardError(
            f"{path}: file is {len(raw)} bytes, shorter than the {HEADER_BYTES}-byte shard header; "
            "it is truncated or not a shard — re-download or rebuild it"
        )
    header = np.frombuffer(raw, dtype=HEADER_DTYPE)
    magic, version, n = int(header[0]), int(header[1]), int(header[2])
    if magic != SHARD_MAGIC:
        raise ShardError(
            f"{path}: wrong magic number {magic} (expected {SHARD_MAGIC}); not a parameter-golf token shard"
        )
    if version != SHARD_VERSION:
        raise ShardError(f"{path}: unsupported shard version {version} (expected {SHARD_VERSION})")
    if n < 0:
        raise ShardError(f"{path}: negative token count {n} in header; the file is corrupt")
    expected = HEADER_BYTES + 2 * n
    if size != expected:
        raise ShardError(
            f"{path}: truncated: expected {expected} bytes for {n} tokens, found {size}; "
            "re-download or rebuild this shard"
        )
    return n


def load_shard(path: str | os.PathLike[str], vocab_size: int | None = None) -> np.ndarray:
    """Memory-map a shard read-only as uint16 after validating it.

    With ``vocab_size``, every token is checked to be < vocab_size: a shard from a
    different tokenizer would otherwise index past the embedding table.
    """
    path = Path(path)
    n = read_header(path)
    if n == 0:
        # mmap cannot map zero bytes; an empty shard is legal, so hand back an empty array.
        return np.zeros(0, dtype=TOKEN_DTYPE)
    tokens = np.memmap(path, dtype=TOKEN_DTYPE, mode="r", offset=HEADER_BYTES, shape=(n,))
    if vocab_size is not None:
        _check_vocab(path, tokens, vocab_size)
    return tokens


def _check_vocab(path: Path, tokens: np.ndarray, vocab_size: int) -> None:
    for start in range(0, len(tokens), _CHECK_CHUNK):
        chunk = tokens[start : start + _CHECK_CHUNK]
        if int(chunk.max()) >= vocab_size:
            pos = int(np.flatnonzero(chunk >= vocab_size)[0])
            bad = int(chunk[pos])
            raise ShardError(
                f"{path}: token id {bad} at position {start + pos} is >= vocab size {vocab_size}; "
                "the shard was made with a different tokenizer — use matching data or vocab_size"
            )


def list_shards(data_dir: str | os.PathLike[str], split: str) -> list[Path]:
    """Shard files ``*_{split}_*.bin`` in ``data_dir``, sorted by name."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ShardNotFoundError(f"{data_dir}: data folder does not exist (build or download the dataset)")
    paths = sorted(p for p in data_dir.glob(f"*_{split}_*.bin") if p.is_file())
    if not paths:
        raise ShardNotFoundError(
            f"{data_dir}: no shards for split {split!r} (expected files named <prefix>_{split}_NNNNNN.bin)"
        )
    # Two datasets in one folder would both be read, as one: refuse and name them.
    prefixes = sorted({p.name.rsplit(f"_{split}_", 1)[0] for p in paths})
    if len(prefixes) > 1:
        raise ShardError(
            f"{data_dir}: {split} shards of {len(prefixes)} datasets ({', '.join(f'{q}_{split}_*' for q in prefixes)}) "
            "in one folder; keep one dataset per folder (move the others away)"
        )
    return paths


def split_tokens(data_dir: str | os.PathLike[str], split: str) -> int:
    """Tokens in a split's shards, from their headers alone (each bounded by ``read_header``)."""
    return sum(read_header(p) for p in list_shards(data_dir, split))


def load_tokens(paths: Sequence[str | os.PathLike[str]], vocab_size: int | None) -> np.ndarray:
    """All tokens of ``paths`` concatenated in order, as one in-memory uint16 array."""
    if not paths:
        raise ShardNotFoundError("load_tokens: no shard paths given")
    return np.concatenate([load_shard(p, vocab_size) for p in paths])


class TokenStream:
    """Deterministic sequential reader over shards, wrapping after the last one.

    ``take(n)`` returns the next n tokens as one contiguous int64 array, crossing
    shard boundaries as needed. The position is two plain ints (shard index, token
    offset), so ``state_dict()`` / ``load_state_dict()`` resume exactly without
    replaying any reads. Shards are memory-mapped one at a time and validated the
    first time they are opened.
    """

    def __init__(self, paths: Sequence[str | os.PathLike[str]], vocab_size: int | None = None):
        if not paths:
            raise ShardNotFoundError("no shard files given to read tokens from")
        self.paths = [Path(p) for p in paths]
        self.vocab_size = vocab_size
        self.shard_index = 0
        self.position = 0
        self._validated: set[int] = set()
        self._tokens_index = -1
        self._tokens = np.zeros(0, dtype=TOKEN_DTYPE)

    def _shard(self, index: int) -> np.ndarray:
        if index != self._tokens_index:
            # Only the current shard stays mapped; re-mapping is cheap, validating is
            # not, so the vocab scan runs once per shard per stream.
            check = self.vocab_size if index not in self._validated else None
            self._tokens = load_shard(self.paths[index], check)
            self._tokens_index = index
            self._validated.add(index)
        return self._tokens

    def _advance_shard(self) -> None:
        self.shard_index = (self.shard_index + 1) % len(self.paths)
        self.position = 0

    def take(self, n: int) -> np.ndarray:
        if n < 0:
            raise ValueError(f"TokenStream.take: n must be >= 0, got {n}")
        out = np.empty(n, dtype=np.int64)
        filled = 0
        empty_in_a_row = 0
        while filled < n:
            tokens = self._shard(self.shard_index)
            k = min(len(tokens) - self.position, n - filled)
            if k <= 0:
                empty_in_a_row += 1
                if empty_in_a_row > len(self.paths):
                    raise ShardError(
                        f"{self.paths[0].parent}: all {len(self.paths)} shards are empty (first: "
                        f"{self.paths[0].name}); rebuild the dataset"
                    )
                self._advance_shard()
                continue
            empty_in_a_row = 0
            out[filled : filled + k] = tokens[self.position : self.position + k]
            filled += k
            self.position += k
            if self.position == len(tokens):
                # Keep the state canonical (never "at the end of shard i") so that equal
                # stream positions always give equal state dicts.
                self._advance_shard()
        return out

    def skip(self, n: int) -> None:
        """Advance the position by ``n`` tokens without copying them, wrapping after the last shard as
        ``take`` does (so ``skip(n)`` then ``take(k)`` reads what ``take(n + k)[n:]`` would)."""
        if n < 0:
            raise ValueError(f"TokenStream.skip: n must be >= 0, got {n}")
        start = (self.shard_index, self.position)
        left, walked = n, 0
        while left > 0:
            length = len(self._shard(self.shard_index))
            k = min(length - self.position, left)
            if self.shard_index == start[0] and self.position < start[1]:
                k = min(k, start[1] - self.position)  # stop on the start, so that a lap is seen
            left -= k
            walked += k
            self.position += k
            if self.position == length:
                self._advance_shard()
            if left and (self.shard_index, self.position) == start:  # one whole lap: the rest is modulo it
                if not walked:
                    raise ShardError(f"{self.paths[0].parent}: all {len(self.paths)} shards are empty (first: "
                                     f"{self.paths[0].name}); rebuild the dataset")
                left %= walked

    def state_dict(self) -> dict[str, int]:
        return {"shard_index": self.shard_index, "position": self.position, "num_shards": len(self.paths)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        num_shards = int(state["num_shards"])
        if num_shards != len(self.paths):
            raise ShardError(
                f"{self.paths[0].parent}: the checkpoint's data position was saved over {num_shards} shards but "
                f"the data has {len(self.paths)} (first: {self.paths[0].name}); resume with the same data"
            )
        index, position = int(state["shard_index"]), int(state["position"])
        if not 0 <= index < len(self.paths):
            raise ShardError(f"{self.paths[0].parent}: the checkpoint's data position (shard {index}) is out of "
                             f"range for the {len(self.paths)} shards; resume with the same data")
        length = len(self._shard(index))
        if not 0 <= position <= length:
            raise ShardError(
                f"{self.paths[index]}: saved position {position} is outside the shard's {length} tokens; "
                "the data changed since the checkpoint"
            )
        self.shard_index, self.position = index, position
