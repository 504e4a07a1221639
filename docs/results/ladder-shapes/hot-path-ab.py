"""Paired A/B of the CPU hot path of commit 7f57eff against the code before it, in one process.

Usage (from the repository root, on an otherwise idle machine):

    python docs/results/ladder-shapes/hot-path-ab.py [--out FILE]

"before" is the code of 2414a50 for the two things 7f57eff changed, rebuilt here: the chunked soft-capped loss
through tanh in 2^17-element chunks (as its own custom op, `abtest::softcap_ce_tanh`) and the embedding lookups
through `nn.Embedding` (whose compiled backward is inductor's atomic scatter). "after" is the package as it is.
Per setting, one trainer per arm on the same batch; the arms alternate every repeat, and the figure is the median
over repeats of after's step time over before's in the same repeat. A step is the bench's: forward and backward,
the guard, the optimizer update. Run-to-run noise on a shared machine moves whole bench runs by 10% and more; a
ratio taken within each repeat does not carry it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

import jepagolf.model.gpt as gpt
from jepagolf.data.dataset import resolve_dataset
from jepagolf.research.bench import _loadavg, _machine, build_variant_config, variant_overrides
from jepagolf.train.fastpath import apply_threads
from jepagolf.train.loop import Trainer
from jepagolf.train.runtime import Runtime, sdpa_context
from jepagolf.train.validation import load_val_data

OLD_CHUNK_ELEMENTS = 1 << 17


@torch.library.custom_op("abtest::softcap_ce_tanh", mutates_args=())
def softcap_ce_tanh(z: Tensor, w: Tensor, targets: Tensor, cap: float, grads: bool) -> tuple[Tensor, Tensor, Tensor]:
    """The loss of 2414a50: tanh, 2^17-element chunks."""
    N, V = z.size(0), w.size(0)
    rows = max(1, min(N, OLD_CHUNK_ELEMENTS // V))
    w_cap = w * (1.0 / cap)
    t_buf, e_buf = z.new_empty(rows, V), z.new_empty(rows, V)
    total = z.new_zeros((), dtype=torch.float64)
    gz = z.new_empty(z.shape) if grads else z.new_empty(0)
    gw = w.new_zeros(w.shape) if grads else w.new_empty(0)
    at = torch.arange(rows, device=z.device)
    for s in range(0, N, rows):
        n = min(rows, N - s)
        zc, yc, t, e = z[s : s + n], targets[s : s + n], t_buf[:n], e_buf[:n]
        torch.mm(zc, w_cap.T, out=t).tanh_()
        torch.mul(t, cap, out=e).exp_()
        sumexp = e.sum(dim=1)
        picked = t.gather(1, yc[:, None]).squeeze(1)
        total += (sumexp.log() - cap * picked).sum(dtype=torch.float64)
        if grads:
            e.div_(sumexp[:, None])
            e[at[:n], yc] -= 1.0
            e.addcmul_(e, t.square_(), value=-1.0)
            torch.mm(e, w, out=gz[s : s + n])
            gw.addmm_(e.T, zc)
    return total.to(z.dtype), gz, gw


@softcap_ce_tanh.register_fake
def _(z: Tensor, w: Tensor, targets: Tensor, cap: float, grads: bool) -> tuple[Tensor, Tensor, Tensor]:
    if grads:
        return z.new_empty(()), z.new_empty(z.shape), w.new_empty(w.shape)
    return z.new_empty(()), z.new_empty(0), w.new_empty(0)


# The same autograd as the package's loss: both ops return (total, d total / dz, d total / dw).
softcap_ce_tanh.register_autograd(gpt._softcap_ce_backward, setup_context=gpt._softcap_ce_context)


def old_loss(z: Tensor, w: Tensor, targets: Tensor, cap: float, scale: float) -> Tensor:
    grads = torch.is_grad_enabled() and (z.requires_grad or w.requires_grad)
    total, _, _ = torch.ops.abtest.softcap_ce_tanh(z, w, targets, cap, grads)
    return total * scale


NEW = {"softcap_cross_entropy": gpt.softcap_cross_entropy, "lookup": gpt.lookup}
OLD = {"softcap_cross_entropy": old_loss, "lookup": lambda table, idx: table(idx)}


@contextlib.contextmanager
def code(which: dict) -> Iterator[None]:
    """The model's module globals of one arm: set for every step of that arm (the compiled graphs guard on them,
    so each arm keeps its own cached graph)."""
    for k, v in which.items():
        setattr(gpt, k, v)
    try:
        yield
    finally:
        for k, v in NEW.items():
            setattr(gpt, k, v)


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


def measure(shape: str, threads: int, compiled: str, repeats: int, steps: int) -> dict:
    apply_threads(threads)
    rt = Runtime(device=torch.device("cpu"))
    cfg = build_variant_config("cpu-demo", {"step_compile": compiled, **SHAPES[shape]}, variant_overrides("ce"))
    paths = resolve_dataset(None, None, announce=False)
    val = load_val_data(cfg, paths, rt.device)
    tmp = tempfile.TemporaryDirectory(prefix="hot-path-ab-")
    arms = {}
    for name, which in (("before", OLD), ("after", NEW)):
        with code(which):
            tr = Trainer(cfg, rt, Path(tmp.name) / name, paths, val=val)
            tr.logger.close()
            tr.warmup(tr.warmup_steps)
        arms[name] = (tr, which)
    batch = arms["before"][0].stream.take(cfg.train.micro_batch_tokens + 1)

    def run(name: str, n: int) -> float:
        tr, which = arms[name]
        with code(which), sdpa_context(rt.device):
            t0 = time.perf_counter()
            for _ in range(n):
                stats = tr.forward_backward(batch)
                tr.skip_bad_step(stats)
                tr.apply_update()
                tr.step += 1
            return (time.perf_counter() - t0) / n

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    args = ap.parse_args()
    rows = []
    for setting in SETTINGS:
        row = measure(*setting)
        rows.append(row)
        print(f"{row['shape']:8s} threads={row['threads']} step_compile={row['step_compile']:3s}  "
              f"before {row['before_ms']:7.1f} ms  after {row['after_ms']:7.1f} ms  after/before "
              f"{row['after_over_before']:.3f} ({row['ratio_min']:.3f}..{row['ratio_max']:.3f})", flush=True)
    if args.out:
        machine = {"cpu": _machine(Runtime(device=torch.device("cpu")))["cpu"], "loadavg": _loadavg(),
                   "torch": torch.__version__, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        args.out.write_text(json.dumps({"settings": rows, "machine": machine}, indent=1) + "\n")


if __name__ == "__main__":
    main()
