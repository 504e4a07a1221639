"""The compiled training step (jepagolf/train/fastpath.py) trains the same model as the eager one.

Each case trains 20 steps twice from the same seed, once with the whole forward compiled and once eager, and
holds every step's losses equal within fp32 tolerance. Compiling on a small CPU takes tens of seconds per
graph, so CI runs plain CE and NextLat only; JEPAGOLF_SLOW_TESTS=1 runs the other JEPA cases too (v3's span
mask with its dynamic length, nextk with online targets).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from jepagolf.config import build_config
from jepagolf.data.dataset import resolve_dataset
from jepagolf.train.fastpath import step_compile_on
from jepagolf.train.loop import Trainer
from jepagolf.train.runtime import Runtime

STEPS = 20
SLOW = os.environ.get("JEPAGOLF_SLOW_TESTS") == "1"
# A tiny shape (compile time grows with the graph) with every structural feature of the research shapes.
TINY = {"num_layers": "2", "model_dim": "32", "num_heads": "2", "num_kv_heads": "1", "train_seq_len": "32",
        "train_batch_tokens": "256", "micro_batch_tokens": "256", "iterations": str(STEPS), "diag_every": "-1",
        "jepa_pred_hidden": "16"}
# TINY with 4,096 tokens a step: enough rows per thread that two threads scatter into the same embedding rows at once
# (the race the determinism tests look for).
RACE = {**TINY, "micro_batch_tokens": "4096", "train_batch_tokens": "4096"}
CASES = {
    "ce": {"jepa": "false"},
    "v3": {"jepa": "true"},
    "nextk-online": {"jepa": "true", "jepa_recipe": "multi-horizon"},
    "nextlat": {"jepa": "true", "jepa_recipe": "nextlat"},
}
# Run in CI beside plain CE: NextLat's compiled forward once returned its loss without a gradient (losses.py).
IN_CI = ("ce", "nextlat")


def losses(data: Path, tmp: Path, overrides: dict[str, str], compiled: bool) -> list[tuple[float, float]]:
    cfg = build_config("smoke", {**TINY, **overrides, "data_path": str(data),
                                 "step_compile": "on" if compiled else "off"}, environ={})
    paths = resolve_dataset(str(data), None, announce=False)
    trainer = Trainer(cfg, Runtime(device=torch.device("cpu")), tmp / ("compiled" if compiled else "eager"), paths)
    trainer.logger.close()
    assert trainer.step_compiled == compiled
    trainer.warmup(trainer.warmup_steps)  # as Trainer.run: compiles, then puts everything back
    out = []
    for _ in range(STEPS):
        stats = trainer.train_step()
        trainer.apply_update()
        trainer.step += 1
        out.append((float(stats["ce_loss"]), float(stats.get("jepa_loss", torch.zeros(())))))
    return out


SLOW_ONLY = pytest.mark.skipif(not SLOW, reason="compiles for minutes on a small CPU: JEPAGOLF_SLOW_TESTS=1")


@pytest.mark.parametrize("case", [pytest.param(name, marks=[] if name in IN_CI else [SLOW_ONLY]) for name in CASES])
def test_compiled_step_trains_the_same_model(case, tiny_data, tmp_path, one_torch_thread):
    eager = losses(tiny_data, tmp_path, CASES[case], compiled=False)
    fast = losses(tiny_data, tmp_path, CASES[case], compiled=True)
    # The same model up to fp32 rounding (fused kernels reassociate sums): 20 steps of Muon do not amplify it
    # beyond a few parts in 1e5 at this size.
    torch.testing.assert_close(torch.tensor(fast), torch.tensor(eager), rtol=2e-4, atol=2e-5)
    assert len({round(c, 3) for c, _ in eager}) > 5  # the losses move: the comparison is not of constants


def test_compiled_step_gradients_are_the_same_bits_every_time_on_two_threads(tiny_data, tmp_path, two_torch_threads):
    """The compiled step repeated from the same state on the same batch gives the same gradient, bit for bit, with
    two threads. Inductor's own embedding backward scattered the rows' gradients with atomic adds from both threads,
    whose order varied: the token and bigram tables' gradients differed in their last bits from run to run (a
    rerun or a resume of a 2-thread compiled run was not exact). The lookup is now one opaque op (gpt.embedding)."""
    cfg = build_config("smoke", {**RACE, "data_path": str(tiny_data), "step_compile": "on"}, environ={})
    paths = resolve_dataset(str(tiny_data), None, announce=False)
    trainer = Trainer(cfg, Runtime(device=torch.device("cpu")), tmp_path / "run", paths)
    trainer.logger.close()
    assert trainer.step_compiled
    trainer.warmup(trainer.warmup_steps)
    batch = trainer.stream.take(cfg.train.micro_batch_tokens + 1)
    grads = []
    for _ in range(4):
        trainer.model.zero_grad(set_to_none=True)
        trainer.forward_backward(batch)
        grads.append({n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None})
    assert "gpt.tok_emb.weight" in grads[0] and "gpt.bigram.weight" in grads[0]
    for other in grads[1:]:
        assert [n for n in grads[0] if not torch.equal(grads[0][n], other[n])] == []


def test_step_compile_defaults():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    demo = build_config("cpu-demo", {}, environ={})
    assert not step_compile_on(demo, cpu, distributed=False)  # off by default: it measured 0.96x eager for CE
    auto = build_config("cpu-demo", {"step_compile": "auto"}, environ={})
    assert step_compile_on(auto, cpu, distributed=False)  # auto: on for a single-process CPU run
    assert not step_compile_on(auto, cpu, distributed=True)  # DDP keeps its wrapper
    assert not step_compile_on(auto, cuda, distributed=False)  # CUDA: `compile` covers it
    assert not step_compile_on(build_config("smoke", {}, environ={}), cpu, distributed=False)  # a few steps
    assert step_compile_on(build_config("smoke", {"step_compile": "on"}, environ={}), cpu, distributed=False)


def test_threads_option_reaches_every_run_config():
    from jepagolf.cli import _research_common, build_parser, overrides_from_args

    parser = build_parser()
    train = parser.parse_args(["train", "--threads", "1"])
    assert overrides_from_args(train)["threads"] == "1"
    for command in (["ablate", "--arm", "ce:jepa=false"], ["ladder"]):
        assert _research_common(parser.parse_args([*command, "--threads", "2"]))["threads"] == "2"
        assert "threads" not in _research_common(parser.parse_args(command))  # default: torch's own choice
    cfg = build_config("smoke", {"threads": "3"}, environ={})
    assert cfg.train.threads == 3 and cfg.hash() == build_config("smoke", {}, environ={}).hash()  # operational


def test_apply_threads_sets_and_reports(one_torch_thread):
    from jepagolf.train.fastpath import apply_threads

    assert apply_threads(0)["threads"] == 1  # 0 leaves torch's setting
    assert apply_threads(2)["threads"] == 2


# A fresh process sets glibc's malloc to its initial thresholds (128 KB), held fixed: every large block is mapped
# and unmapped on its own, as glibc's adaptive thresholds leave it in some processes (a training step then faulted
# 0 to 22,945 pages in again, from one process to the next). Then, with retain_freed_memory or without it, it
# allocates two 16 MB tensors, touches every page and frees them, three times to warm up and six times more, and
# prints the page faults of each of those six.
_REALLOC_FAULTS = """
import ctypes, resource, sys, torch
from jepagolf.train.fastpath import retain_freed_memory
mallopt = ctypes.CDLL(None).mallopt
assert mallopt(-3, 128 << 10) and mallopt(-1, 128 << 10)  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
if sys.argv[1] == "retain":
    assert retain_freed_memory()
def cycle():
    a, b = torch.empty(1 << 22).fill_(1.0), torch.empty(1 << 22).fill_(1.0)
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    cycle()
per_cycle = []
for _ in range(6):
    before = faults()
    cycle()
    per_cycle.append(faults() - before)
print(*per_cycle)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_freed_memory_is_reused_without_page_faults():
    """retain_freed_memory (set by every CPU trainer): freed large blocks are reused in place, not given back to the
    system and faulted in again page by page, whatever thresholds glibc had. Each arm counts faults per cycle and
    keeps its quietest cycle: a CI runner once added 4,096 stray faults to one of four retained cycles."""
    def quietest_cycle(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", _REALLOC_FAULTS, mode], capture_output=True, text=True,
                             check=True)
        return min(int(n) for n in out.stdout.split())

    pages = 2 * (1 << 24) // 4096  # two 16 MB blocks a cycle
    assert quietest_cycle("default") > pages * 9 // 10  # glibc's returned blocks: every page faulted again
    assert quietest_cycle("retain") < pages // 100


def test_compile_cache_is_one_folder_per_version_of_the_code(monkeypatch, tmp_path):
    """torch's on-disk cache serves a compiled backward by the traced forward alone: a custom op whose backward
    formula changed (gpt.softcap_ce's, gpt.embedding's) got its old compiled backward from a shared folder. The
    default folder is therefore keyed by the package's source hash; an explicit TORCHINDUCTOR_CACHE_DIR is kept."""
    from jepagolf.sources import source_hash
    from jepagolf.train.fastpath import compile_cache_dir

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("JEPAGOLF_CACHE", str(tmp_path / "cache"))
    path = compile_cache_dir()
    assert path.name == source_hash() and path.parent.name == "inductor"
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(path)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert compile_cache_dir() == tmp_path / "mine"


def test_resume_on_the_compiled_path_is_bitwise_on_two_threads(tiny_data, tmp_path, monkeypatch, two_torch_threads):
    """A compiled 2-thread run stopped after its step-8 checkpoint and resumed ends in the state of the run that
    was not stopped, bit for bit: weights, EMAs, optimizer moments, and the scores. (Before the embedding op, the
    atomic scatter's order made every 2-thread compiled run differ from the next in its last bits.)"""
    from jepagolf.cli import main
    from jepagolf.train.checkpoint import read_checkpoint

    shape = {**RACE, "iterations": "16", "checkpoint_every_steps": "8", "step_compile": "on"}

    def args(out: Path) -> list[str]:
        return ["train", "--preset", "smoke", "--data", str(tiny_data), "--out", str(out), "--threads", "2",
                *[a for k, v in shape.items() for a in ("--set", f"{k}={v}")]]

    original = Trainer.train_step

    def stop_at_step_10(self):
        if self.step == 10:
            raise KeyboardInterrupt
        return original(self)

    assert main(args(tmp_path / "reference")) == 0
    monkeypatch.setattr(Trainer, "train_step", stop_at_step_10)
    assert main(args(tmp_path / "run")) == 130
    monkeypatch.setattr(Trainer, "train_step", original)
    assert main(["train", "--resume", str(tmp_path / "run")]) == 0
    run, ref = tmp_path / "run", tmp_path / "reference"
    assert "resume: from" in (run / "train.log").read_text()
    (ta, ma), (tb, mb) = (read_checkpoint(r / "checkpoints" / "step_00000016.ckpt") for r in (run, ref))
    assert ta.keys() == tb.keys()
    assert [k for k in ta if not torch.equal(ta[k], tb[k])] == []
    assert ma["optimizers"] == mb["optimizers"] and ma["step"] == mb["step"] == 16
    a, b = (json.loads((r / "summary.json").read_text()) for r in (run, ref))
    assert a["step_compiled"] is b["step_compiled"] is True
    assert [a[k] for k in ("val_loss", "roundtrip_val_bpb")] == [b[k] for k in ("val_loss", "roundtrip_val_bpb")]
