"""The paired A/B harness of this folder's scripts: one process, one trainer per arm on the same batch, the arms
alternating every repeat; the figure is the median over repeats of one arm's step time over the other's in the same
repeat. A step is the bench's: forward and backward, the guard, the optimizer update. Run-to-run noise on a shared
machine moves whole bench runs by 10% and more; a ratio taken within each repeat does not carry it.

An arm is a set of the model module's globals (``jepagolf.model.gpt``), set around every step of that arm; the
compiled graphs guard on them, so each arm keeps its own cached graph. The package's own globals are the "after"
arm of every script here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

import jepagolf.model.gpt as gpt
from jepagolf.data.dataset import resolve_dataset
from jepagolf.research.bench import _loadavg, _machine, build_variant_config, variant_overrides
from jepagolf.train.fastpath import apply_threads
from jepagolf.train.logger import atomic_write_text
from jepagolf.train.loop import Trainer
from jepagolf.train.runtime import Runtime, sdpa_context
from jepagolf.train.validation import load_val_data

SHAPES = {
    "cpu-demo": {},
    "r1": {"num_layers": "2", "model_dim": "64", "num_heads": "2", "num_kv_heads": "1", "train_seq_len": "128",
           "train_batch_tokens": "2048", "micro_batch_tokens": "2048"},
    "r2": {"num_layers": "3", "model_dim": "96", "num_heads": "2", "num_kv_heads": "1", "train_seq_len": "128",
           "train_batch_tokens": "4096", "micro_batch_tokens": "4096"},
}
# (shape, threads, step_compile, repeats, steps per repeat)
SETTINGS = [("r1", 2, "on", 12, 10), ("r1", 1, "on", 12, 10), ("r1", 2, "off", 12, 10), ("r2", 2, "on", 8, 4),
            ("cpu-demo", 2, "on", 8, 2)]
Arm = dict[str, Any]  # names in jepagolf.model.gpt -> the values this arm runs with


@contextlib.contextmanager
def code(arm: Arm) -> Iterator[None]:
    """The model module's globals of one arm, the package's own restored after."""
    own = {k: getattr(gpt, k) for k in arm}
    for k, v in arm.items():
        setattr(gpt, k, v)
    try:
        yield
    finally:
        for k, v in own.items():
            setattr(gpt, k, v)


def rebuilt_loss(op: Any) -> Callable[..., Any]:
    """An earlier version of gpt.softcap_ce, rebuilt in a script as its own custom op ``op`` (every version returns
    (total, d total / dz, d total / dw)), made a stand-in for gpt.softcap_cross_entropy: the package's fake and
    autograd registered on it, and the package's wrapper around it."""
    op.register_fake(gpt._softcap_ce_fake)
    op.register_autograd(gpt._softcap_ce_backward, setup_context=gpt._softcap_ce_context)

    def loss(z: torch.Tensor, w: torch.Tensor, targets: torch.Tensor, cap: float, scale: float) -> torch.Tensor:
        grads = torch.is_grad_enabled() and (z.requires_grad or w.requires_grad)
        total, _, _ = op(z, w, targets, cap, grads)
        return total * scale

    return loss


def trainers(arms: dict[str, Arm], shape: str, threads: int, compiled: str, folder: Path) -> dict[str, Trainer]:
    """One plain-CE trainer per arm at ``shape`` (cpu-demo's preset), compiled graphs warm."""
    apply_threads(threads)
    rt = Runtime(device=torch.device("cpu"))
    cfg = build_variant_config("cpu-demo", {"step_compile": compiled, **SHAPES[shape]}, variant_overrides("ce"))
    paths = resolve_dataset(None, None, announce=False)
    val = load_val_data(cfg, paths, rt.device)
    out = {}
    for name, arm in arms.items():
        with code(arm):
            out[name] = Trainer(cfg, rt, folder / name, paths, val=val)
            out[name].logger.close()
            out[name].warmup(out[name].warmup_steps)
    return out


def timed_steps(tr: Trainer, batch: np.ndarray, n: int) -> float:
    """Seconds per step of ``n`` steps (the bench's step) on ``batch``."""
    with sdpa_context(tr.rt.device):
        t0 = time.perf_counter()
        for _ in range(n):
            stats = tr.forward_backward(batch)
            tr.skip_bad_step(stats)
            tr.apply_update()
            tr.step += 1
        return (time.perf_counter() - t0) / n


def measure(before: Arm, shape: str, threads: int, compiled: str, repeats: int, steps: int) -> dict:
    """``before`` against the package as it is ("after") at one setting."""
    tmp = tempfile.TemporaryDirectory(prefix="ab-")
    arms = {"before": before, "after": {}}
    trs = trainers(arms, shape, threads, compiled, Path(tmp.name))
    batch = trs["before"].stream.take(trs["before"].cfg.train.micro_batch_tokens + 1)

    def run(name: str, n: int) -> float:
        with code(arms[name]):
            return timed_steps(trs[name], batch, n)

    for name in arms:
        run(name, 3)
    times: dict[str, list[float]] = {"before": [], "after": []}
    for r in range(repeats):
        for name in (("before", "after") if r % 2 == 0 else ("after", "before")):
            times[name].append(run(name, steps))
    tmp.cleanup()
    ratios = [a / b for a, b in zip(times["after"], times["before"], strict=True)]
    return {"shape": shape, "threads": threads, "step_compile": compiled, "repeats": repeats,
            "steps_per_repeat": steps, "before_ms": 1000 * statistics.median(times["before"]),
            "after_ms": 1000 * statistics.median(times["after"]), "after_over_before": statistics.median(ratios),
            "ratio_min": min(ratios), "ratio_max": max(ratios)}


def main(doc: str, before: Arm) -> None:
    """The command line of a script here: every setting of SETTINGS, printed, and with --out written as JSON."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    args = ap.parse_args()
    rows = []
    for setting in SETTINGS:
        row = measure(before, *setting)
        rows.append(row)
        print(f"{row['shape']:8s} threads={row['threads']} step_compile={row['step_compile']:3s}  "
              f"before {row['before_ms']:7.1f} ms  after {row['after_ms']:7.1f} ms  after/before "
              f"{row['after_over_before']:.3f} ({row['ratio_min']:.3f}..{row['ratio_max']:.3f})", flush=True)
    if args.out:
        machine = {"cpu": _machine(Runtime(device=torch.device("cpu")))["cpu"], "loadavg": _loadavg(),
                   "torch": torch.__version__, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        atomic_write_text(args.out, json.dumps({"settings": rows, "machine": machine}, indent=1) + "\n")
