"""The compressed model artifact: a checksummed, LZMA-compressed binary container. Never unpickles.

File layout (all integers little-endian)::

    MAGIC                 7 bytes  b"JGOLF1\\0"
    payload_len           u64      size of the uncompressed payload
    compressed_len        u64      size of the LZMA block that follows
    LZMA2 raw stream      compressed_len bytes (filters in _LZMA_FILTERS)
    sha256                32 bytes over everything above

Payload (uncompressed)::

    header_len            u32
    header                header_len bytes of UTF-8 JSON:
                          {"version": 1, "meta": {...},
                           "tensors": [{"name", "kind", "dtype", "shape", "offset", "length"}, ...]}
    data                  the tensors' raw little-endian bytes, back to back, in header order

Tensors are written in sections -- non-float tensors, fp32, fp16, per-row scales, int8 codes,
int5 codes, int6 codes -- each sorted by name, so the same model always gives byte-identical files and LZMA sees
long runs of statistically similar bytes. Loading checks the file size, the magic, the lengths and the
checksum before decompressing, bounds the declared payload size (MAX_FILE_BYTES, MAX_PAYLOAD_BYTES,
MAX_EXPANSION) so that a small file cannot make it allocate much more than its own size, and
validates every header entry (dtype allow-list, shape, bounds, levels, finite floats) before
building tensors with ``numpy.frombuffer``.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from jepagolf.config import CAP_BYTES, MAX_PARAMS
from jepagolf.data.shards import atomic_write
from jepagolf.export.quant import QuantizedModel, QuantizedTensor, quantize_state_dict
from jepagolf.tensor_bytes import TORCH_TO_NAME, is_shape, nbytes, read_tensor, tensor_bytes

MAGIC = b"JGOLF1\0"
# The same container with a zlib (level 9) stream instead of LZMA: the reference trainer's compression.
MAGIC_ZLIB = b"JGOLFZ\0"
COMPRESSIONS = ("lzma", "zlib")
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<7sQQ")  # magic, payload_len, compressed_len
_DIGEST_LEN = 32
# LZMA2 at preset 9e with its default literal contexts (lc=3, lp=0, pb=2). Measured on a Gaussian
# v3-like state dict (3 blocks, 8.66M params): lc=0/pb=0 gains 0.03% on a single int6 matrix but
# loses 0.1% on the whole dict, so the defaults stay; raw format saves xz's ~60 bytes of framing.
_LZMA_FILTERS: list[dict[str, Any]] = [
    {"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "lc": 3, "lp": 0, "pb": 2}
]
# The decoder only needs the dictionary size (LZMA2 chunks carry lc/lp/pb); it must be at least
# the encoder's, which preset 9 sets to 64 MiB.
_LZMA_DECODE_FILTERS: list[dict[str, Any]] = [{"id": lzma.FILTER_LZMA2, "dict_size": 64 << 20}]

# Bounds checked before anything is decompressed or allocated. An artifact of a model the config
# limits allow (at most MAX_PARAMS weights) stores at most 4 bytes a weight (fp32) plus its header,
# and compresses to less than its payload; the file cap leaves room for runs far over the size cap.
MAX_HEADER_BYTES = 4 << 20
MAX_PAYLOAD_BYTES = 4 * MAX_PARAMS + MAX_HEADER_BYTES
MAX_FILE_BYTES = 16 * CAP_BYTES
# Payload over compressed stream, measured: 1.6 for smoke after 2 steps, 2.0 (smoke) and 2.3 (cpu-demo)
# freshly initialised, 196 and 1489 for all-zero smoke and cpu-demo weights. A payload declared larger
# than MAX_EXPANSION times the compressed stream plus EXPANSION_SLACK is refused before decompressing:
# an LZMA bomb of a few hundred KB would otherwise decompress to gigabytes. Only nearly all-zero models
# compress this well.
MAX_EXPANSION = 32
EXPANSION_SLACK = 1 << 20

# Storage kinds in file order. The few small, heterogeneous float tensors go first and the long
# near-i.i.d. int code runs last: LZMA's adaptive probabilities then settle on the codes and are not
# disturbed afterwards (measured: 0.14% smaller than codes-first on the dict above).
_KIND_ORDER = ("raw", "fp32", "fp16", "scale", "int8", "int5", "int6")
_LEVELS = {"int5": 15, "int6": 31, "int8": 127}
# The dtypes each storage kind may hold: the only way a name in the header becomes a numpy/torch
# dtype (through tensor_bytes.DTYPES), so a crafted header cannot reach anything else.
_KIND_DTYPES = {
    "int5": {"int8"},
    "int6": {"int8"},
    "int8": {"int8"},
    "scale": {"float16"},
    "fp16": {"float16"},
    "fp32": {"float32"},
    "raw": {"int8", "uint8", "int16", "int32", "int64", "bool"},
}


class ArtifactError(ValueError):
    """The file is not a valid jepagolf artifact (wrong type, corrupted, truncated, malformed)."""


# ----------------------------------------------------------------------------- encoding


def _entries(qm: QuantizedModel) -> list[tuple[str, str, Tensor]]:
    """(kind, name, tensor) for everything to write, in file order."""
    sections: dict[str, list[tuple[str, Tensor]]] = {k: [] for k in _KIND_ORDER}
    for name, qt in qm.quantized.items():
        sections[qt.kind].append((name, qt.q))
        sections["scale"].append((name, qt.scale))
    for name, t in qm.floats.items():
        if t.dtype == torch.float16:
            sections["fp16"].append((name, t))
        elif t.dtype == torch.float32:
            sections["fp32"].append((name, t))
        elif TORCH_TO_NAME.get(t.dtype) in _KIND_DTYPES["raw"]:
            sections["raw"].append((name, t))
        else:
            raise ValueError(
                f"artifact: tensor {name!r} has dtype {t.dtype}; floats must be fp16 or fp32 "
                f"(use quantize_state_dict), others one of {sorted(_KIND_DTYPES['raw'])}"
            )
    return [(kind, name, t) for kind in _KIND_ORDER for name, t in sorted(sections[kind], key=lambda e: e[0])]


def encode_payload(qm: QuantizedModel, meta: dict[str, Any] | None = None) -> bytes:
    """The uncompressed payload (header + raw tensor bytes); deterministic for equal inputs."""
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(k, str) for k in meta)):
        raise TypeError("artifact meta must be a dict with str keys")
    tensors = []
    chunks = []
    offset = 0
    for kind, name, t in _entries(qm):
        raw = tensor_bytes(t)
        tensors.append(
            {
                "name": name,
                "kind": kind,
                "dtype": TORCH_TO_NAME[t.dtype],
                "shape": list(t.shape),
                "offset": offset,
                "length": len(raw),
            }
        )
        chunks.append(raw)
        offset += len(raw)
    header = {"version": FORMAT_VERSION, "meta": meta or {}, "tensors": tensors}
    try:
        header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    except TypeError as e:
        raise TypeError(f"artifact meta must be JSON-serialisable: {e}") from e
    return b"".join([struct.pack("<I", len(header_bytes)), header_bytes, *chunks])


def compress_payload(payload: bytes, compression: str = "lzma") -> bytes:
    if compression == "zlib":
        return zlib.compress(payload, level=9)
    return lzma.compress(payload, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)


def artifact_bytes(qm: QuantizedModel, meta: dict[str, Any] | None = None, compression: str = "lzma") -> bytes:
    """The complete artifact file contents for ``qm``; ``compression`` is "lzma" or "zlib"."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"artifact compression {compression!r}: use one of {COMPRESSIONS}")
    payload = encode_payload(qm, meta)
    compressed = compress_payload(payload, compression)
    magic = MAGIC_ZLIB if compression == "zlib" else MAGIC
    body = _PREFIX.pack(magic, len(payload), len(compressed)) + compressed
    return body + hashlib.sha256(body).digest()


def artifact_bytes_from_state_dict(
    sd: dict[str, Tensor], meta: dict[str, Any] | None = None, **quant_kwargs: Any
) -> bytes:
    """Quantise ``sd`` (``quant_kwargs`` go to ``quantize_state_dict``) and return the file bytes;
    ``len()`` of the result is the artifact size that counts against the cap."""
    return artifact_bytes(quantize_state_dict(sd, **quant_kwargs), meta)


def save_artifact(path: str | os.PathLike[str], qm: QuantizedModel, *, meta: dict[str, Any] | None = None,
                  compression: str = "lzma") -> int:
    """Write the artifact atomically (temp file, fsync, rename, directory fsync): a crash leaves either
    the old file or the new one, never a torn artifact. Returns the bytes written."""
    data = artifact_bytes(qm, meta, compression)
    atomic_write(path, lambda f: f.write(data))
    return len(data)


# ----------------------------------------------------------------------------- decoding


def _unwrap(data: bytes, source: str) -> bytes:
    """Check magic, lengths and checksum; return the decompressed payload."""
    if len(data) < len(MAGIC) and data and (MAGIC.startswith(data) or MAGIC_ZLIB.startswith(data)):
        raise ArtifactError(f"{source}: artifact truncated: {len(data)} bytes, not even the magic")
    if len(data) < len(MAGIC) or data[: len(MAGIC)] not in (MAGIC, MAGIC_ZLIB):
        raise ArtifactError(f"{source}: not a jepagolf artifact (bad magic bytes)")
    if len(data) < _PREFIX.size + _DIGEST_LEN:
        raise ArtifactError(f"{source}: artifact truncated: {len(data)} bytes is shorter than the fixed header")
    if len(data) > MAX_FILE_BYTES:
        raise ArtifactError(f"{source}: {len(data):,} bytes is larger than any artifact ({MAX_FILE_BYTES:,} at most)")
    _, payload_len, compressed_len = _PREFIX.unpack_from(data)
    expected = _PREFIX.size + compressed_len + _DIGEST_LEN
    body, digest = data[:-_DIGEST_LEN], data[-_DIGEST_LEN:]
    if hashlib.sha256(body).digest() != digest:
        # The lengths are not trustworthy until the checksum passes; they only pick the message.
        if len(data) < expected:
            raise ArtifactError(
                f"{source}: artifact truncated: the header declares {expected} bytes, the file has "
                f"{len(data)} -- re-export or re-download"
            )
        raise ArtifactError(f"{source}: artifact corrupted: checksum mismatch -- re-export or re-download")
    if len(data) != expected:
        raise ArtifactError(f"{source}: malformed artifact: header declares {expected} bytes, file has {len(data)}")
    limit = min(MAX_PAYLOAD_BYTES, MAX_EXPANSION * compressed_len + EXPANSION_SLACK)
    if payload_len > limit:
        raise ArtifactError(
            f"{source}: refused: it declares a payload of {payload_len:,} bytes for {compressed_len:,} compressed, "
            f"more than {limit:,} ({MAX_EXPANSION}x + {EXPANSION_SLACK:,}, at most {MAX_PAYLOAD_BYTES:,}); only a "
            "decompression bomb or a model of nearly all-zero weights compresses that well"
        )
    if data[: len(MAGIC)] == MAGIC_ZLIB:
        return _inflate(data[_PREFIX.size : _PREFIX.size + compressed_len], payload_len, source)
    decomp = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_LZMA_DECODE_FILTERS)
    try:
        # max_length bounds memory by the declared size even if the stream would decode to more.
        payload = decomp.decompress(data[_PREFIX.size : _PREFIX.size + compressed_len], max_length=payload_len)
        if not decomp.eof and len(payload) == payload_len:
            # Output stopped exactly at the limit; drain the end-of-stream marker (or find extra data).
            payload += decomp.decompress(b"", max_length=1)
    except lzma.LZMAError as e:
        raise ArtifactError(f"{source}: malformed artifact: LZMA stream does not decode ({e})") from e
    if len(payload) != payload_len or not decomp.eof:
        raise ArtifactError(
            f"{source}: malformed artifact: LZMA stream does not decode to the declared {payload_len} bytes"
        )
    return payload


def _inflate(stream: bytes, payload_len: int, source: str) -> bytes:
    """The zlib stream's payload, decoded to at most the declared length (memory stays bounded)."""
    decomp = zlib.decompressobj()
    try:
        payload = decomp.decompress(stream, payload_len)
        extra = decomp.decompress(decomp.unconsumed_tail, 1) if decomp.unconsumed_tail else b""
    except zlib.error as e:
        raise ArtifactError(f"{source}: malformed artifact: zlib stream does not decode ({e})") from e
    if len(payload) != payload_len or extra or not decomp.eof:
        raise ArtifactError(f"{source}: malformed artifact: zlib stream does not decode to the declared "
                            f"{payload_len} bytes")
    return payload


def _malformed(source: str, msg: str) -> ArtifactError:
    return ArtifactError(f"{source}: malformed artifact header: {msg}")


def _parse_header(payload: bytes, source: str) -> tuple[dict[str, Any], memoryview]:
    if len(payload) < 4:
        raise _malformed(source, "payload shorter than its length prefix")
    (header_len,) = struct.unpack_from("<I", payload)
    if 4 + header_len > len(payload):
        raise _malformed(source, f"header length {header_len} exceeds payload size {len(payload)}")
    if header_len > MAX_HEADER_BYTES:
        raise _malformed(source, f"header length {header_len:,} is more than {MAX_HEADER_BYTES:,}")
    try:
        header = json.loads(payload[4 : 4 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _malformed(source, f"not valid UTF-8 JSON ({e})") from e
    except RecursionError:
        raise _malformed(source, "JSON nested too deeply") from None
    if not isinstance(header, dict) or header.get("version") != FORMAT_VERSION:
        version = header.get("version") if isinstance(header, dict) else None
        raise _malformed(source, f"unsupported format version {version!r} (this reader knows {FORMAT_VERSION})")
    if not isinstance(header.get("meta"), dict) or not isinstance(header.get("tensors"), list):
        raise _malformed(source, "missing 'meta' object or 'tensors' list")
    return header, memoryview(payload)[4 + header_len :]


def _check_entry(e: Any, source: str, expected_offset: int, blob_len: int) -> tuple[str, str, str, tuple[int, ...]]:
    if not isinstance(e, dict) or set(e) != {"name", "kind", "dtype", "shape", "offset", "length"}:
        raise _malformed(source, f"bad tensor entry {e!r}")
    name, kind, dtype, shape = e["name"], e["kind"], e["dtype"], e["shape"]
    if not isinstance(name, str) or not name:
        raise _malformed(source, f"bad tensor name {name!r}")
    if kind not in _KIND_DTYPES or dtype not in _KIND_DTYPES[kind]:
        raise _malformed(source, f"{name!r}: kind {kind!r} with dtype {dtype!r} is not allowed")
    if not is_shape(shape):
        raise _malformed(source, f"{name!r}: bad shape {shape!r}")
    length = nbytes(dtype, shape)
    if e["offset"] != expected_offset or e["length"] != length:
        raise _malformed(
            source,
            f"{name!r}: offset/length {e['offset']}/{e['length']} do not match the expected "
            f"{expected_offset}/{length} for shape {shape} {dtype}",
        )
    if expected_offset + e["length"] > blob_len:
        raise _malformed(source, f"{name!r}: data runs past the end of the payload")
    return name, kind, dtype, tuple(shape)


def load_artifact_bytes(data: bytes, source: str = "<bytes>") -> tuple[QuantizedModel, dict[str, Any]]:
    """Parse artifact file contents; raise ArtifactError on anything unexpected."""
    payload = _unwrap(data, source)
    header, blob = _parse_header(payload, source)
    codes: dict[str, tuple[str, Tensor]] = {}  # name -> (int6 | int8, codes)
    scales: dict[str, Tensor] = {}
    floats: dict[str, Tensor] = {}
    offset = 0
    for e in header["tensors"]:
        name, kind, dtype, shape = _check_entry(e, source, offset, len(blob))
        try:
            t = read_tensor(blob, offset, dtype, shape)
        except ValueError as err:
            raise _malformed(source, f"{name!r}: {err}") from err
        offset += e["length"]
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise _malformed(source, f"{name!r}: non-finite values (NaN or inf) in a stored {kind} tensor")
        if kind == "scale":
            if name in scales:
                raise _malformed(source, f"duplicate scale for {name!r}")
            scales[name] = t
            continue
        if name in codes or name in floats:
            raise _malformed(source, f"duplicate tensor {name!r}")
        if kind in _LEVELS:
            level = _LEVELS[kind]
            if len(shape) != 2:
                raise _malformed(source, f"{name!r}: quantised tensor must be 2-D, got shape {list(shape)}")
            # Compare rather than abs(): abs(-128) overflows int8.
            if t.numel() and (int(t.min()) < -level or int(t.max()) > level):
                raise _malformed(source, f"{name!r}: {kind} codes outside -{level}..{level}")
            codes[name] = (kind, t)
        else:
            floats[name] = t
    if offset != len(blob):
        raise _malformed(source, f"{len(blob) - offset} trailing bytes after the last tensor")
    if set(scales) != set(codes):
        raise _malformed(source, f"scales and quantised tensors do not pair up: {sorted(set(scales) ^ set(codes))}")
    qm = QuantizedModel()
    for name, (kind, q) in codes.items():
        if tuple(scales[name].shape) != (q.shape[0],):
            raise _malformed(source, f"{name!r}: scale shape {list(scales[name].shape)} for {q.shape[0]} rows")
        qm.quantized[name] = QuantizedTensor(q, scales[name], kind)  # type: ignore[arg-type]
    qm.floats.update(floats)
    return qm, header["meta"]


def artifact_compression(data: bytes) -> str:
    """The compression ("lzma" or "zlib") of artifact file contents, from its magic bytes (not checked
    here: reading the file checks them)."""
    return "zlib" if data[: len(MAGIC_ZLIB)] == MAGIC_ZLIB else "lzma"


def artifact_payload(data: bytes, source: str = "<bytes>") -> bytes:
    """The checked, decompressed payload of artifact file contents (for size reports)."""
    return _unwrap(data, source)


def read_artifact_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of an artifact file, refusing a folder or a file larger than any artifact unread."""
    path = Path(path)
    if path.is_dir():
        raise ArtifactError(f"{path} is a folder, not an artifact file")
    if not path.is_file():
        raise ArtifactError(f"{path}: artifact file does not exist")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ArtifactError(f"{path}: {size:,} bytes is larger than any artifact ({MAX_FILE_BYTES:,} at most)")
    return path.read_bytes()


def load_artifact(path: str | os.PathLike[str]) -> tuple[QuantizedModel, dict[str, Any]]:
    """Read and validate an artifact file: (quantised model, meta dict)."""
    return load_artifact_bytes(read_artifact_file(path), source=str(path))


# ----------------------------------------------------------------------------- size report


def compress_report(payload: bytes) -> dict[str, int]:
    """Compressed sizes of ``payload`` with the artifact's LZMA settings and common alternatives.

    Keys: raw, lzma (the container's filters), xz (preset 9e, default contexts), zlib (level 9),
    and zstd (level 22) / brotli (quality 11) when those modules are importable.
    """
    report = {
        "raw": len(payload),
        "lzma": len(compress_payload(payload)),
        "xz": len(lzma.compress(payload, preset=9 | lzma.PRESET_EXTREME)),
        "zlib": len(zlib.compress(payload, 9)),
    }
    zstd_compress = _optional_zstd()
    if zstd_compress is not None:
        report["zstd"] = len(zstd_compress(payload))
    try:
        import brotli  # type: ignore[import-not-found]
    except ImportError:
        pass  # optional: not a dependency; the report just lacks the key
    else:
        report["brotli"] = len(brotli.compress(payload, quality=11))
    return report


def _optional_zstd() -> Any:
    try:
        from compression import zstd  # type: ignore[import-not-found]  # Python >= 3.14

        return lambda b: zstd.compress(b, level=22)
    except ImportError:
        pass
    try:
        import zstandard  # type: ignore[import-not-found]
    except ImportError:
        return None
    return zstandard.ZstdCompressor(level=22).compress
