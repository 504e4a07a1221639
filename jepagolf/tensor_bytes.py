"""Tensors as raw little-endian bytes and back: the one tensor codec of jepagolf's two no-pickle file
formats, the artifact container (``export/container.py``) and training checkpoints
(``train/checkpoint.py``).

A dtype named in a file's header is looked up in ``DTYPES``, the allow-list: nothing else in a file
decides what its bytes become, and reading goes through ``numpy.frombuffer``, which builds numbers
only. Each format narrows the list further where it needs to.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

# name -> (numpy dtype of the stored bytes, torch dtype). bfloat16 has no numpy dtype: its bytes are
# stored and read as int16 and reinterpreted. bool is read as uint8 so that bytes other than 0/1
# are caught instead of becoming malformed booleans.
DTYPES: dict[str, tuple[str, torch.dtype]] = {
    "float32": ("<f4", torch.float32),
    "float64": ("<f8", torch.float64),
    "float16": ("<f2", torch.float16),
    "bfloat16": ("<i2", torch.bfloat16),
    "int64": ("<i8", torch.int64),
    "int32": ("<i4", torch.int32),
    "int16": ("<i2", torch.int16),
    "int8": ("<i1", torch.int8),
    "uint8": ("<u1", torch.uint8),
    "bool": ("<u1", torch.bool),
}
TORCH_TO_NAME: dict[torch.dtype, str] = {tdt: name for name, (_, tdt) in DTYPES.items()}


MAX_DIMS = 8
MAX_DIM = (1 << 31) - 1


def is_shape(shape: Any) -> bool:
    """Whether a header's ``shape`` is a list of at most MAX_DIMS ints in [0, MAX_DIM] (JSON booleans
    are not ints here)."""
    return isinstance(shape, list) and len(shape) <= MAX_DIMS and all(
        isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_DIM for d in shape)


def numel(shape: Sequence[int]) -> int:
    """Elements of ``shape``, in Python ints: [2**32, 2**32] is 2**64, not a wrapped-around 0."""
    return math.prod(shape)


def nbytes(dtype: str, shape: Sequence[int]) -> int:
    """Bytes a tensor of ``dtype`` (a DTYPES name) and ``shape`` takes on disk."""
    return numel(shape) * np.dtype(DTYPES[dtype][0]).itemsize


def tensor_bytes(t: Tensor) -> memoryview:
    """The raw little-endian bytes of ``t`` (copied to the CPU if needed), without a further copy."""
    t = t.detach().to("cpu").contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    arr = t.numpy()
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and sys.byteorder == "big"):
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return memoryview(np.ascontiguousarray(arr).reshape(-1)).cast("B")


def read_tensor(blob: memoryview, offset: int, dtype: str, shape: Sequence[int]) -> Tensor:
    """The tensor of ``dtype`` (a DTYPES name) and ``shape`` stored at ``blob[offset:]``, in native
    byte order, aligned and writable (a copy). Raises ValueError for a bool tensor whose bytes are
    not all 0 or 1. The caller has checked that the bytes lie inside ``blob``."""
    np_dtype, torch_dtype = DTYPES[dtype]
    count = numel(shape)
    arr = np.frombuffer(blob, dtype=np_dtype, count=count, offset=offset)
    t = torch.from_numpy(arr.astype(arr.dtype.newbyteorder("="), copy=True)).reshape(tuple(shape))
    if torch_dtype == torch.bfloat16:
        return t.view(torch.bfloat16)
    if torch_dtype == torch.bool:
        if t.numel() and int(t.max()) > 1:
            raise ValueError("bool tensor holds bytes other than 0/1")
        return t.to(torch.bool)
    return t
