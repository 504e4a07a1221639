"""The CPU fast path of the training step: thread settings and the whole training forward compiled.

At the research shapes (a few layers, 64-192 wide, 2-8k tokens a step) a step is a few dozen milliseconds of
small kernels, so what does not scale with the arithmetic (one dispatch per elementwise op, one pass over memory
each) is a large share of it. ``compile_forward`` hands the trained module's whole forward (the network, the
JEPA paths and both losses) to torch.compile; AOTAutograd compiles the backward with it, so elementwise chains
fuse forward and backward. Diagnostic steps (extra backward passes through the graph) run the eager module.

Compiling costs tens of seconds per graph on a small CPU; the graphs go to an on-disk cache
(``compile_cache_dir``), so the next process with the same shapes (the next seed of a ladder rung) loads
them instead, and the trainer compiles before its clock starts (``Trainer.warmup``).

This module is part of ``jepagolf.train``: it may import config, model and jepa, never research or cli.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jepagolf.config import Config
from jepagolf.sources import source_hash

# Distinct compiled graphs a process may hold per code object (JepaLM.forward): every arm x rung x step kind
# (JEPA or CE step) of a ladder run in one process is one; past the limit dynamo would silently run eagerly.
RECOMPILE_LIMIT = 256
# Warm-up steps before the clock when only the step is compiled (CPU): every graph (JEPA step, CE-only step
# when jepa_every > 1, the span mask's dynamic length) is traced within a few steps; CPU kernels need no
# autotuning.
STEP_COMPILE_WARMUP_STEPS = 4


def step_compile_on(cfg: Config, device: torch.device, distributed: bool) -> bool:
    """Whether the training forward is compiled whole: ``step_compile`` on, or auto on a single-process
    CPU run. Under DDP (and on CUDA, where ``compile`` compiles the encoder) the step stays as it is."""
    mode = cfg.train.step_compile
    if distributed:
        return False
    return mode == "on" or (mode == "auto" and device.type == "cpu")


def apply_threads(threads: int) -> dict[str, int]:
    """Set torch's CPU threads (``threads`` > 0; 0 leaves torch's choice) and return what is in force.

    The inter-op pool (used by nothing in a training step) is set to 1 when it can still be set: it must be
    before any inter-op work starts, and torch refuses a second setting."""
    if threads > 0:
        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):  # already set, or the pool is running: leave it
            torch.set_num_interop_threads(1)
    return {"threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads()}


# glibc's malloc hands large freed blocks back to the system (a block above its mmap threshold is unmapped; free
# memory at the heap's top is trimmed), so the next step's tensors of the same sizes fault their pages in again, at
# ~1.1 us a 4 KB page here. How often depends on the process's allocation history: at cpu-demo's shape 0 to 22,945
# faults a step (up to ~25 ms of a ~400 ms step), from one process to the next. Fixed thresholds keep freed blocks in
# the process, whose resident size then stays at its peak. 32 MB is the largest mmap threshold glibc accepts on
# 64-bit; a larger block is still mapped on its own.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers, from glibc's malloc.h
MALLOC_MMAP_THRESHOLD = 32 << 20
MALLOC_TRIM_THRESHOLD = 1 << 30


def retain_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of returning it to the system (see above): a
    process-wide setting, taken by CPU training. Returns whether it is in force (False off Linux or off glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter itself runs on
    except (OSError, AttributeError):  # no mallopt in the C library
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; a C library that takes the call but not the setting returns 0
    return bool(mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD))


def compile_cache_dir() -> Path:
    """Where inductor keeps compiled graphs: ``$TORCHINDUCTOR_CACHE_DIR`` when set, else
    <jepagolf cache>/inductor/<source hash> (set for this process, so that runs share it across reboots of /tmp).

    One folder per version of the package's code: torch's cache keys a compiled backward by the traced forward,
    not by the Python of a custom op's backward formula (gpt.softcap_ce's, gpt.embedding's), so from a shared
    folder a changed formula was served the old compiled backward (seen with torch 2.13, 2026-12-06)."""
    env = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if env:
        return Path(env)
    from jepagolf.data.corpus import default_cache_dir

    path = default_cache_dir() / "inductor" / source_hash()
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    return path


def compile_forward(module: nn.Module) -> Any:
    """``module`` (the JepaLM) with its forward compiled: one graph per step kind, the span mask's length
    (it varies every step) a symbol with no guard on it."""
    compile_cache_dir()
    cfg = torch._dynamo.config
    cfg.recompile_limit = max(cfg.recompile_limit, RECOMPILE_LIMIT)
    cfg.accumulated_recompile_limit = max(cfg.accumulated_recompile_limit, 4 * RECOMPILE_LIMIT)
    # dynamic=None: a Python int that changes every step (SIGReg's seed) becomes a graph input after one
    # recompile instead of a recompile per value.
    compiled = torch.compile(module, dynamic=None)

    def forward(*args: Any, **kwargs: Any) -> Any:
        mask = args[2] if len(args) > 2 else kwargs.get("mask")
        mask_pos = args[4] if len(args) > 4 else kwargs.get("mask_pos")
        if mask_pos is not None and mask is not None:
            # Unbacked: the graph may not guard on the length at all. Merely dynamic, it held for the lengths
            # seen while tracing (a guard 2 <= N <= model_dim at r1) and a later step with more masked positions
            # recompiled inside the clock (16 s at r1).
            torch._dynamo.decorators.mark_unbacked(mask_pos, 0)
        return compiled(*args, **kwargs)

    return forward


def compile_target_pass(module: nn.Module) -> Any:
    """``module.target_repr`` (the EMA target's no-grad pass, v3's second network pass) compiled."""
    compile_cache_dir()
    return torch.compile(module.target_repr, dynamic=False)
