"""Training checkpoints on disk: a checksummed tensors-plus-JSON file that loads without pickle.

File layout (integers little-endian)::

    MAGIC        8 bytes  b"JGCKPT1\\0"
    header_len   u64
    data_len     u64      (so that a truncated file is told apart from a corrupted one)
    header       header_len bytes of UTF-8 JSON:
                 {"version": 1, "meta": {...},
                  "tensors": [{"name", "dtype", "shape", "offset", "length"}, ...]}
    data         the tensors' raw little-endian bytes, back to back, in header order
    sha256       32 bytes over everything above

``meta`` is plain JSON (numbers, strings, lists, dicts): nothing in the file can name code to run,
and a tensor's dtype is looked up in a fixed allow-list. ``torch.load`` is never used, so a
checkpoint from an untrusted place cannot execute anything. The checksum is verified before any
byte of the header is trusted; a corrupted or truncated file raises ``CheckpointError``.

Checkpoints live in ``RUN_DIR/checkpoints/step_NNNNNNNN.ckpt``; they are written atomically
(temporary file, fsync, rename, fsync of the folder), and only after a successful write are the
oldest ones beyond ``keep`` deleted, so a failed write (disk full) never costs the previous one.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from torch import Tensor

from jepagolf.data.shards import atomic_write
from jepagolf.jsonfile import read_regular
from jepagolf.tensor_bytes import DTYPES, TORCH_TO_NAME, is_shape, nbytes, read_tensor, tensor_bytes

MAGIC = b"JGCKPT1\0"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sQQ")  # magic, header_len, data_len
_DIGEST_LEN = 32
CHECKPOINT_DIR = "checkpoints"
# The JSON header (meta and tensor table) of the largest model the config limits allow is a few MB.
MAX_HEADER_BYTES = 64 << 20
# With no run to size it by: the state of the largest model the config allows (128M parameters, fp32:
# weights, EMA target, artifact EMA, two Adam moments) with its header.
MAX_CHECKPOINT_BYTES = 5 * 4 * 128_000_000 + MAX_HEADER_BYTES
_NAME_RE = re.compile(r"^step_(\d{8,})\.ckpt$")


class CheckpointError(ValueError):
    """A checkpoint cannot be written, is not a valid checkpoint, or does not fit this run."""


class DataChanged(CheckpointError):
    """The data given to a resume is not the data the run was trained on: refused, never passed over
    for an older checkpoint (they were all trained on the same data)."""


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}.ckpt"


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint file in the run folder, oldest first (temp files ignored)."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _NAME_RE.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


# ----------------------------------------------------------------------------- writing


def _write(f: BinaryIO, data: bytes | memoryview) -> None:
    # One seam for every byte written, so tests can simulate a full disk here.
    f.write(data)


def write_checkpoint(path: Path, tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> int:
    """Write ``tensors`` and the JSON-able ``meta`` to ``path`` atomically; return the file size.

    Tensors are streamed one by one (each copied to the CPU just before it is written), and the
    checksum is computed on the way, so peak host memory is one tensor, not the whole state.
    """
    entries = []
    offset = 0
    for name, t in tensors.items():
        if t.dtype not in TORCH_TO_NAME:
            raise CheckpointError(f"checkpoint tensor {name!r} has unsupported dtype {t.dtype}")
        length = t.numel() * t.element_size()
        entries.append({"name": name, "dtype": TORCH_TO_NAME[t.dtype], "shape": list(t.shape),
                        "offset": offset, "length": length})
        offset += length
    try:
        header = json.dumps({"version": FORMAT_VERSION, "meta": meta, "tensors": entries},
                            sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint metadata is not plain JSON: {e}") from e

    def write(f: BinaryIO) -> None:
        digest = hashlib.sha256()

        def put(data: bytes | memoryview) -> None:
            digest.update(data)
            _write(f, data)

        put(_PREFIX.pack(MAGIC, len(header), offset))
        put(header)
        for t in tensors.values():
            put(tensor_bytes(t))
        _write(f, digest.digest())

    atomic_write(path, write)
    return _PREFIX.size + len(header) + offset + _DIGEST_LEN


# ----------------------------------------------------------------------------- reading


def _bad(path: Path, msg: str) -> CheckpointError:
    return CheckpointError(f"{path}: {msg}")


def read_checkpoint(path: Path, max_bytes: int | None = None) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read and verify a checkpoint: (tensors by name, meta). Raises CheckpointError on any defect.

    ``max_bytes``: the largest this run's checkpoint can be (see ``resume.max_checkpoint_bytes``); a
    larger file, or one that is not a regular file, is refused before a byte of it is read."""
    path = Path(path)
    try:
        data = read_regular(path, MAX_CHECKPOINT_BYTES if max_bytes is None else max_bytes,
                            "this run's checkpoint", error=CheckpointError)
    except OSError as e:
        raise _bad(path, f"cannot read checkpoint ({e.strerror or e})") from e
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        if data and MAGIC.startswith(data[: len(MAGIC)]):
            raise _bad(path, f"checkpoint truncated to {len(data)} bytes")
        raise _bad(path, "not a jepagolf checkpoint (bad magic bytes)")
    if len(data) < _PREFIX.size + _DIGEST_LEN:
        raise _bad(path, f"checkpoint truncated to {len(data)} bytes")
    body, digest = memoryview(data)[:-_DIGEST_LEN], data[-_DIGEST_LEN:]
    if hashlib.sha256(body).digest() != digest:
        # The declared sizes only choose between the two messages; they are not trusted otherwise.
        _, header_len, data_len = _PREFIX.unpack_from(data)
        expected = _PREFIX.size + header_len + data_len + _DIGEST_LEN
        if expected > len(data):
            raise _bad(path, f"checkpoint truncated ({len(data)} of {expected} bytes)")
        raise _bad(path, "checkpoint corrupted (checksum mismatch)")
    _, header_len, data_len = _PREFIX.unpack_from(data)
    if _PREFIX.size + header_len + data_len != len(body):
        raise _bad(path, "malformed checkpoint: declared sizes do not match the file size")
    if header_len > MAX_HEADER_BYTES:
        raise _bad(path, f"malformed checkpoint: header of {header_len:,} bytes, more than {MAX_HEADER_BYTES:,}")
    try:
        header = json.loads(bytes(body[_PREFIX.size : _PREFIX.size + header_len]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad(path, f"malformed checkpoint header ({e})") from e
    except RecursionError:
        raise _bad(path, "malformed checkpoint header (JSON nested too deeply)") from None
    if not isinstance(header, dict) or header.get("version") != FORMAT_VERSION:
        version = header.get("version") if isinstance(header, dict) else None
        raise _bad(path, f"unsupported checkpoint format version {version!r} (this reader knows {FORMAT_VERSION})")
    meta, entries = header.get("meta"), header.get("tensors")
    if not isinstance(meta, dict) or not isinstance(entries, list):
        raise _bad(path, "malformed checkpoint header: missing 'meta' object or 'tensors' list")
    blob = body[_PREFIX.size + header_len :]
    tensors: dict[str, Tensor] = {}
    offset = 0
    for e in entries:
        name, t = _read_entry(path, e, blob, offset)
        if name in tensors:
            raise _bad(path, f"malformed checkpoint: duplicate tensor {name!r}")
        tensors[name] = t
        offset += e["length"]
    if offset != len(blob):
        raise _bad(path, f"malformed checkpoint: {len(blob) - offset} bytes after the last tensor")
    return tensors, meta


def _read_entry(path: Path, e: Any, blob: memoryview, offset: int) -> tuple[str, Tensor]:
    if not isinstance(e, dict) or set(e) != {"name", "dtype", "shape", "offset", "length"}:
        raise _bad(path, f"malformed checkpoint: bad tensor entry {e!r}")
    name, dtype, shape = e["name"], e["dtype"], e["shape"]
    if not isinstance(name, str) or dtype not in DTYPES:
        raise _bad(path, f"malformed checkpoint: tensor {name!r} with dtype {dtype!r} is not allowed")
    if not is_shape(shape):
        raise _bad(path, f"malformed checkpoint: tensor {name!r} has bad shape {shape!r}")
    length = nbytes(dtype, shape)
    if e["offset"] != offset or e["length"] != length or offset + length > len(blob):
        raise _bad(path, f"malformed checkpoint: tensor {name!r} offset/length do not match its shape")
    try:
        return name, read_tensor(blob, offset, dtype, shape)
    except ValueError as err:
        raise _bad(path, f"malformed checkpoint: tensor {name!r}: {err}") from err


# ----------------------------------------------------------------------------- run folders


def save_checkpoint(run_dir: Path, step: int, tensors: Mapping[str, Tensor], meta: Mapping[str, Any],
                    keep: int) -> tuple[Path, int]:
    """Write the checkpoint for ``step``, then delete all but the newest ``keep``; (path, bytes).

    A failed write (e.g. disk full) raises CheckpointError naming the checkpoint that is still
    intact; nothing is deleted in that case.
    """
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".step_*.tmp"):
        # Left by a process killed mid-write (atomic_write removes its own on an exception).
        stale.unlink(missing_ok=True)
    path = folder / checkpoint_name(step)
    try:
        size = write_checkpoint(path, tensors, meta)
    except OSError as e:
        previous = [p for s, p in list_checkpoints(run_dir) if s != step]
        kept = f"the previous checkpoint {previous[-1]} is intact" if previous else "no earlier checkpoint exists"
        raise CheckpointError(
            f"could not write checkpoint {path}: {e.strerror or e}; {kept}. Free space (or fix the folder) "
            f"and resume with `jepagolf train --resume {run_dir}`"
        ) from e
    for _, old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path, size


@dataclass
class LoadedCheckpoint:
    path: Path
    step: int
    tensors: dict[str, Tensor]
    meta: dict[str, Any]


def load_latest(run_dir: Path, warn: Callable[[str], None] | None = None,
                check: Callable[[LoadedCheckpoint], None] | None = None,
                max_bytes: int | None = None) -> tuple[LoadedCheckpoint, list[str]]:
    """The newest checkpoint that reads, verifies and passes ``check`` (which raises CheckpointError
    for content that does not fit the run), falling back to older ones and saying so; DataChanged
    from ``check`` stops the search. A file over ``max_bytes`` is passed over unread.

    Returns the checkpoint and the warnings issued (each also passed to ``warn``).
    """
    found = list_checkpoints(run_dir)
    if not found:
        raise CheckpointError(
            f"{run_dir}: no checkpoints to resume from (none in {checkpoint_dir(run_dir)}); checkpoints "
            "are written with checkpoint_every_steps / checkpoint_every_seconds or on SIGTERM/SIGINT — "
            "start the run again with --out pointing to a new folder"
        )
    warnings: list[str] = []
    problems: list[str] = []
    for i, (step, path) in enumerate(reversed(found)):
        try:
            tensors, meta = read_checkpoint(path, max_bytes)
            ckpt = LoadedCheckpoint(path, step, tensors, meta)
            if meta.get("step") != step:
                raise _bad(path, f"file name says step {step} but the checkpoint holds step {meta.get('step')}")
            if check is not None:
                check(ckpt)
            return ckpt, warnings
        except DataChanged:
            raise
        except CheckpointError as e:
            problems.append(str(e))
            older = found[len(found) - 2 - i][1] if i + 1 < len(found) else None
            if older is not None:
                msg = f"warning: {e}; falling back to the previous checkpoint {older.name}"
                warnings.append(msg)
                if warn is not None:
                    warn(msg)
    raise CheckpointError(
        f"{run_dir}: no usable checkpoint ({len(found)} tried): " + " | ".join(problems)
    )

