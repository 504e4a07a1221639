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

    def agreed_max(self, local: float) -> float:
        """The maximum of ``local`` over the ranks; over a host-side gloo group it costs microseconds and
        no GPU sync."""
        if not self.distributed:
            return local
        buf = torch.tensor([local], dtype=torch.float64)
        dist.all_reduce(buf, op=dist.ReduceOp.MAX, group=self.cpu_group)
        return float(buf[0])

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        # bf16 autocast on CUDA with fp32 master weights; plain fp32 on CPU, where bf16 matmuls are
        # about 100x slower than fp32 on the machines we target.
        return torch.bfloat16 if self.device.type == "cuda" else None


def _env_int(name: str, default: int, lo: int) -> int:
    """A torchrun variable as an integer >= lo, or one ConfigError line naming it."""
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = int(text.strip(), 10)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not an integer (torchrun sets it; unset it for one process)") from None
    if not lo <= value <= 1 << 20:
        raise ConfigError(f"{name}={value} must be in {lo}..{1 << 20}")
    return value


def setup_runtime(device_pref: str = "auto") -> Runtime:
    """Read torchrun's environment (at call time, never at import) and join the process group."""
    world_size = _env_int("WORLD_SIZE", 1, 1)
    rank = _env_int("RANK", 0, 0)
    local_rank = _env_int("LOCAL_RANK", 0, 0)
    if rank >= world_size:
        raise ConfigError(f"RANK={rank} must be < WORLD_SIZE={world_size} (torchrun sets both)")
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
        store = _rendezvous(rank, world_size)
        dist.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None,
                                **({} if store is None else {"store": store, "rank": rank, "world_size": world_size}))
    cpu_group = None
    if world_size > 1 and device.type == "cuda":
        # An all-reduce over NCCL would need a device tensor and a .item() to read it: a host sync.
        cpu_group = dist.new_group(backend="gloo")
    return Runtime(device=device, rank=rank, world_size=world_size, local_rank=local_rank, cpu_group=cpu_group)


RENDEZVOUS_TIMEOUT_S = 300.0  # JEPAGOLF_RENDEZVOUS_TIMEOUT: how long rank 0 waits for the others to join


def _rendezvous(rank: int, world_size: int) -> Any:
    """The process group's store, joined within a time limit: ``WORLD_SIZE=2 RANK=0`` with no second
    process otherwise waits in torch's rendezvous with no message. Under torchrun's agent (which has
    joined every process already) None: torch's own rendezvous is used. The limit covers only the
    joining; collectives keep torch's default timeout."""
    from datetime import timedelta

    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true":
        return None
    addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not addr or not port:
        raise ConfigError(f"WORLD_SIZE={world_size} asks for {world_size} processes, but MASTER_ADDR and MASTER_PORT "
                          "are not set: start multi-process runs with torchrun (or unset WORLD_SIZE)")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"MASTER_PORT={port!r}: expected a port number 1..65535")
    try:
        limit = float(os.environ.get("JEPAGOLF_RENDEZVOUS_TIMEOUT", RENDEZVOUS_TIMEOUT_S))
    except ValueError:
        limit = -1.0
    if not limit > 0:
        raise ConfigError(f"JEPAGOLF_RENDEZVOUS_TIMEOUT={os.environ.get('JEPAGOLF_RENDEZVOUS_TIMEOUT')!r}: expected "
                          "a number of seconds > 0")
    try:
        return dist.TCPStore(addr, int(port), world_size, rank == 0, timeout=timedelta(seconds=limit),
                             wait_for_workers=True)
    except (dist.DistError, RuntimeError) as e:
        who = (f"rank 0 waited {limit:g} s at {addr}:{port} for the other {world_size - 1} process(es)" if rank == 0
               else f"rank {rank} could not reach rank 0 at {addr}:{port} within {limit:g} s")
        raise ConfigError(f"{who} of WORLD_SIZE={world_size}, but they did not join ({str(e).splitlines()[0][:120]}); "
                          "start every rank (torchrun --nproc_per_node=N), or unset WORLD_SIZE/RANK for one "
                          "process; JEPAGOLF_RENDEZVOUS_TIMEOUT sets the wait") from None


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
