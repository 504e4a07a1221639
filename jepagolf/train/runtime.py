"""Process-level setup: device, distributed group, autocast dtype, reproducibility metadata."""

from __future__ import annotations

import os
import platform
import random
import sys
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

import jepagolf
from jepagolf.config import ConfigError


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    cpu_group: Any = None
    """A gloo process group for small host-side agreements (the training clock) that must not wait
    on the GPU; None on CPU runs, whose default group is already gloo."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        # bf16 autocast on CUDA with fp32 master weights; plain fp32 on CPU, where bf16 matmuls are
        # about 100x slower than fp32 on the machines we target.
        return torch.bfloat16 if self.device.type == "cuda" else None


def setup_runtime(device_pref: str = "auto") -> Runtime:
    """Read torchrun's environment (at call time, never at import) and join the process group."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_pref == "auto":
        device_pref = "cuda" if torch.cuda.is_available() else "cpu"
    if device_pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={device_pref} requested but CUDA is not available; use --set device=cpu")
        device = torch.device("cuda", local_rank) if device_pref == "cuda" else torch.device(device_pref)
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None)
    cpu_group = None
    if world_size > 1 and device.type == "cuda":
        # An all-reduce over NCCL would need a device tensor and a .item() to read it: a host sync.
        cpu_group = dist.new_group(backend="gloo")
    return Runtime(device=device, rank=rank, world_size=world_size, local_rank=local_rank, cpu_group=cpu_group)


def preferred_sdpa_backends() -> list[Any]:
    """Attention kernels in order of preference on CUDA: flash, then cuDNN, then the memory-efficient
    kernel, with the math kernel as a last resort (PyTorch's own default ranks cuDNN last)."""
    from torch.nn.attention import SDPBackend

    return [SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
            SDPBackend.MATH]


def sdpa_context(device: torch.device) -> AbstractContextManager[Any]:
    """Prefer the fused attention kernels on CUDA; nothing to choose on CPU."""
    if device.type != "cuda":
        return nullcontext()
    from torch.nn.attention import sdpa_kernel

    return sdpa_kernel(preferred_sdpa_backends(), set_priority=True)


def peak_memory_mib(device: torch.device) -> float | None:
    """Peak bytes held by tensors on a CUDA device since the start (allocator statistic, no sync)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def teardown_runtime(rt: Runtime) -> None:
    if rt.distributed and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def versions() -> dict[str, str]:
    import sentencepiece

    return {
        "jepagolf": jepagolf.__version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "sentencepiece": sentencepiece.__version__,
        "platform": platform.platform(),
        "cuda": torch.version.cuda or "none",
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    return f"cpu ({cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"
