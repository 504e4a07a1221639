"""Scale-out: world-size-independent batches and masks, the compile warm-up restore, and a real
2-process DDP run (torchrun, gloo) of the smoke preset against a 1-process run with accumulation 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from jepagolf.config import ConfigError, build_config, field_index
from jepagolf.export.artifact import ARTIFACT_NAME
from jepagolf.model.eval import evaluate
from jepagolf.model.gpt import GPT
from jepagolf.train.batches import micro_batch, micro_batch_indices, micro_batch_mask
from jepagolf.train.loop import Trainer
from jepagolf.train.run import train
from jepagolf.train.runtime import Runtime, preferred_sdpa_backends, sdpa_context
from jepagolf.train.validation import load_val_data

CPU = torch.device("cpu")
# A cap that is never reached in a 12-step smoke run: progress and warmdown stay step-determined,
# but the wall-clock path (ranks agreeing on the elapsed time every step) runs for real under DDP.
NEVER_REACHED_CAP = {"max_wallclock_seconds": "3600"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # One intra-op thread, like each torchrun worker (torchrun sets OMP_NUM_THREADS=1): runs compare
    # like with like, and on a shared 2-core machine two spinning threads per process cost 10x or more.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----- batches and masks ---------------------------------------------------------------------------
def step_inputs(cfg, chunk, step, rank, grad_accum):
    """What the trainer feeds rank ``rank`` at ``step``: per micro-batch (x, y, mask, positions)."""
    t = cfg.train
    out = []
    for index in micro_batch_indices(rank, grad_accum):
        x, y = micro_batch(chunk, index, t.micro_batch_tokens, t.train_seq_len, CPU)
        out.append((x, y, *micro_batch_mask(cfg, step, index, x.size(0), CPU)))
    return out


@pytest.mark.parametrize("per_sequence", [False, True])
def test_micro_batches_and_masks_do_not_depend_on_the_world_size(per_sequence):
    cfg = build_config("smoke", {"jepa_span_per_sequence": per_sequence}, environ={})
    t = cfg.train
    rng = np.random.default_rng(0)
    chunk = rng.integers(0, cfg.model.vocab_size, t.train_batch_tokens + 1).astype(np.int64)
    assert t.train_batch_tokens // t.micro_batch_tokens == 2
    for step in (0, 7):
        world1 = step_inputs(cfg, chunk, step, rank=0, grad_accum=2)
        world2 = [m for r in (0, 1) for m in step_inputs(cfg, chunk, step, rank=r, grad_accum=1)]
        assert len(world1) == len(world2) == 2
        for one, two in zip(world1, world2, strict=True):
            for a, b in zip(one, two, strict=True):
                assert torch.equal(a, b)
            x, y, mask, positions = one
            assert torch.equal(x.flatten()[1:], y.flatten()[:-1])  # y is x shifted by one
            assert torch.equal(positions, mask.flatten().nonzero().squeeze(1))
            assert mask.shape == x.shape and mask.any(dim=1).all()
        # The micro-batches cover the chunk in order, and get different masks (the index is in the seed).
        assert torch.equal(torch.cat([world1[0][0].flatten(), world1[1][0].flatten()]),
                           torch.from_numpy(chunk[:-1]))
        assert not torch.equal(world1[0][2], world1[1][2])
    assert list(micro_batch_indices(3, 4)) == [12, 13, 14, 15]


def test_gathering_masked_positions_by_index_equals_boolean_indexing():
    # The trainer passes host-built indices (no device sync); the result must be the boolean path's.
    from jepagolf.jepa.objective import JepaLM

    cfg = build_config("smoke", {}, environ={})
    torch.manual_seed(0)
    model = JepaLM(cfg)
    with torch.no_grad():
        model.mask_emb.normal_()
    chunk = np.random.default_rng(1).integers(0, 1024, cfg.train.train_batch_tokens + 1)
    x, y, mask, mask_index = step_inputs(cfg, chunk, 3, rank=0, grad_accum=2)[1]
    target_z = torch.randn(*x.shape, cfg.model.model_dim)
    ce_a, jl_a, stats_a = model(x, y, mask, target_z)
    ce_b, jl_b, stats_b = model(x, y, mask, target_z, mask_index)
    assert torch.equal(ce_a, ce_b) and torch.equal(jl_a, jl_b)
    assert all(torch.equal(stats_a[k], stats_b[k]) for k in stats_a)


def test_a_batch_that_does_not_split_over_the_world_is_refused(tmp_path, demo_data):
    cfg = build_config("smoke", {"data_path": str(demo_data.data_dir)}, environ={})  # 2 micro-batches
    with pytest.raises(ConfigError, match="do not split over 3 processes.*multiple of world_size"):
        Trainer(cfg, Runtime(device=CPU, world_size=3), tmp_path, demo_data)
    with pytest.raises(ConfigError, match="do not split over 4 processes.*micro_batch_tokens=256"):
        Trainer(cfg, Runtime(device=CPU, world_size=4), tmp_path, demo_data)


def test_muon_gets_the_rank_and_world_size():
    from jepagolf.jepa.objective import JepaLM
    from jepagolf.optim.groups import build_optimizers
    from jepagolf.optim.muon import Muon

    cfg = build_config("smoke", {}, environ={})
    model = JepaLM(cfg)
    muon = [o for o in build_optimizers(model, cfg.optim) if isinstance(o, Muon)]
    assert len(muon) == 1 and (muon[0].rank, muon[0].world_size) == (0, 1)
    # Sharding is requested (and refused here, with no process group) when a world size is given.
    with pytest.raises(ValueError, match="world_size=2 needs torch.distributed"):
        build_optimizers(model, cfg.optim, rank=1, world_size=2)


def test_sdpa_preference_is_flash_first_and_a_no_op_on_cpu():
    from torch.nn.attention import SDPBackend

    order = preferred_sdpa_backends()
    assert order[0] == SDPBackend.FLASH_ATTENTION and order[-1] == SDPBackend.MATH
    with sdpa_context(CPU):
        q = torch.randn(1, 2, 8, 4)
        torch.nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True)


# ----- compile warm-up ----------------------------------------------------------------------------
def _steps(trainer: Trainer, n: int) -> None:
    for _ in range(n):
        trainer.train_step()
        trainer.apply_update()
        trainer.step += 1


def _optimizer_tensors(trainer: Trainer) -> list[torch.Tensor]:
    out = []
    for opt in trainer.optimizers:
        for state in opt.state_dict()["state"].values():
            out.extend(v for v in state.values() if isinstance(v, torch.Tensor))
    return out


def test_warmup_restores_everything_so_the_run_is_unchanged(tmp_path, demo_data):
    cfg = build_config("smoke", {"data_path": str(demo_data.data_dir), "compile": "off"}, environ={})
    warm = Trainer(cfg, Runtime(device=CPU), tmp_path / "warm", demo_data)
    cold = Trainer(cfg, Runtime(device=CPU), tmp_path / "cold", demo_data)
    assert warm.warmup_steps == 0  # auto: no warm-up when not compiling
    before = warm.rank_state()
    stream_before = warm.stream.state_dict()
    warm.warmup(3)
    after = warm.rank_state()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert warm.stream.state_dict() == stream_before
    assert (warm.step, warm.tokens_seen, warm.artifact_ema.updates) == (0, 0, 0)
    assert all(not opt.state for opt in warm.optimizers)  # fresh, as before the first step
    _steps(warm, 3)
    _steps(cold, 3)
    a, b = warm.rank_state(), cold.rank_state()
    assert not np.array_equal(a["model/gpt.blocks.0.mlp.fc.weight"], before["model/gpt.blocks.0.mlp.fc.weight"])
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    for x, y in zip(_optimizer_tensors(warm), _optimizer_tensors(cold), strict=True):
        assert torch.equal(x, y)
    for t in (warm, cold):
        t.logger.close()


def test_warmup_steps_config():
    assert build_config("smoke", {}, environ={}).train.compile_warmup_steps == -1
    with pytest.raises(ConfigError, match="compile_warmup_steps"):
        build_config("smoke", {"compile_warmup_steps": "-2"}, environ={})


# ----- a real 2-process DDP run -------------------------------------------------------------------
def _clean_env() -> dict[str, str]:
    # Config fields can be set by environment variables; keep the caller's out of the child processes.
    keys = {name.upper() for name in field_index()}
    env = {k: v for k, v in os.environ.items() if k not in keys}
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory, demo_data):
    root = tmp_path_factory.mktemp("ddp")
    sets = [arg for k, v in NEVER_REACHED_CAP.items() for arg in ("--set", f"{k}={v}")]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "jepagolf", "train", "--preset", "smoke", "--data", str(demo_data.data_dir),
           "--out", str(root / "world2"), "--dump-rank-state", str(root / "dump2"), *sets]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_clean_env())
    # The single-process reference runs meanwhile: same global batch, accumulation 2.
    try:
        cfg = build_config("smoke", {"data_path": str(demo_data.data_dir), **NEVER_REACHED_CAP}, environ={})
        single = train(cfg, Runtime(device=CPU), root / "world1", dump_rank_state=root / "dump1")
    finally:
        try:
            out, _ = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{out[-4000:]}"
    distributed = json.loads((root / "world2" / "summary.json").read_text())
    return root, single, distributed


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_ddp_ranks_end_with_identical_weights_and_emas(ddp_runs):
    root, _, _ = ddp_runs
    r0, r1 = _load(root / "dump2" / "rank0.npz"), _load(root / "dump2" / "rank1.npz")
    assert {k.split("/")[0] for k in r0} == {"model", "target", "artifact_ema"}
    assert r0.keys() == r1.keys()
    for k in r0:
        # Bitwise: both ranks apply the same all-reduced gradients and the same schedules.
        assert np.array_equal(r0[k], r1[k]), k


def test_ddp_matches_one_process_with_accumulation(ddp_runs):
    root, single, distributed = ddp_runs
    one, two = _load(root / "dump1" / "rank0.npz"), _load(root / "dump2" / "rank0.npz")
    assert one.keys() == two.keys()
    # In exact arithmetic the runs are the same: (g0 + g1)/2 either way, and the halving is exact in
    # fp32. Only a kernel whose summation order depends on the process's thread count could make
    # them differ; 12 steps of such 1-ulp noise stay far below 1e-5 (measured here: 0, bitwise).
    worst = max(float(np.abs(one[k] - two[k]).max()) for k in one)
    assert worst <= 1e-5, worst
    assert distributed["world_size"] == 2 and single["world_size"] == 1
    assert distributed["steps"] == single["steps"] == 12
    assert distributed["tokens_seen"] == single["tokens_seen"]
    # val_bpb differs only through the evaluation's split into per-rank batches (fp32 CE per batch).
    for key in ("val_bpb", "roundtrip_val_bpb", "prequant_val_bpb", "live_val_bpb"):
        assert distributed[key] == pytest.approx(single[key], rel=1e-6, abs=0), key
    assert "world_size:2 grad_accum:1" in (root / "world2" / "train.log").read_text()
    assert "world_size:1 grad_accum:2" in (root / "world1" / "train.log").read_text()


def test_ddp_validation_split_over_ranks_equals_one_process_eval(ddp_runs, demo_data):
    root, _, distributed = ddp_runs
    cfg = build_config("smoke", {"data_path": str(demo_data.data_dir)}, environ={})
    state = _load(root / "dump2" / "rank0.npz")
    gpt = GPT(cfg.model, cfg.train.train_seq_len)
    gpt.load_state_dict({k.split("/", 1)[1]: torch.from_numpy(v) for k, v in state.items()
                         if k.startswith("artifact_ema/")})
    val = load_val_data(cfg, demo_data, CPU)
    res = evaluate(gpt, val.tokens, val.byte_tables, cfg.train.train_seq_len, cfg.train.val_batch_tokens, CPU)
    # The summary's prequant_val_bpb is the artifact EMA's, evaluated with the sequences split over 2 ranks.
    assert (res.tokens, res.bytes) == (distributed["val_tokens"], distributed["val_bytes"])
    assert res.bpb == pytest.approx(distributed["prequant_val_bpb"], rel=1e-6, abs=0)


def test_ddp_only_rank_zero_writes(ddp_runs):
    root, _, _ = ddp_runs
    out2, out1 = root / "world2", root / "world1"
    assert sorted(p.name for p in out2.iterdir()) == sorted(p.name for p in out1.iterdir())
    assert {"config.json", "train.log", "metrics.jsonl", "summary.json", ARTIFACT_NAME} <= {p.name for p in
                                                                                            out2.iterdir()}
    log = (out2 / "train.log").read_text()
    assert log.count("run:") == 1 and log.count("final score_val_bpb:") == 1
    rows1 = (out1 / "metrics.jsonl").read_text().splitlines()
    rows2 = (out2 / "metrics.jsonl").read_text().splitlines()
    assert len(rows1) == len(rows2)
    assert sorted(p.name for p in (root / "dump2").iterdir()) == ["rank0.npz", "rank1.npz"]
