"""Checkpoints, exact resume after SIGKILL, preemption by signal, the divergence guard.

Every run here uses the smoke preset on a tiny copy of the demo corpus (40k train tokens, one
4096-token validation sequence block) and one torch thread, so that a run takes seconds even on a
shared 2-core machine and the in-process and subprocess runs use the same kernels.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import smoke_train_args

from jepagolf.cli import main
from jepagolf.data.shards import load_shard, write_shard
from jepagolf.export.artifact import ARTIFACT_NAME
from jepagolf.train import checkpoint as ckpt_mod
from jepagolf.train.checkpoint import list_checkpoints, read_checkpoint
from jepagolf.train.loop import Trainer
from jepagolf.train.reliability import DivergenceGuard

TIMING_KEYS = ("step_ms", "tokens_per_s", "train_time_s")
ORIGINAL_TRAIN_STEP = Trainer.train_step


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_dataset(root: Path, demo, train_tokens: int = 40_000, val_tokens: int = 4097) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_shard(root / "tiny_train_000000.bin", np.asarray(load_shard(demo.data_dir / "demo_train_000000.bin")
                                                           [:train_tokens]))
    write_shard(root / "tiny_val_000000.bin", np.asarray(load_shard(demo.data_dir / "demo_val_000000.bin")
                                                         [:val_tokens]))
    shutil.copy(demo.tokenizer, root / "tokenizer.model")
    return root


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, demo_data) -> Path:
    return make_dataset(tmp_path_factory.mktemp("tiny"), demo_data)


def base_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--preset", "smoke", "--data", str(data), "--out", str(out), "--set", "iterations=16",
            "--set", "checkpoint_every_steps=4", *extra]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_data) -> Path:
    """The uninterrupted run that every interrupted one must reproduce exactly."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(base_args(tiny_data, out)) == 0
    return out


def metrics_rows(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def assert_same_run(run: Path, ref: Path) -> None:
    assert (run / ARTIFACT_NAME).read_bytes() == (ref / ARTIFACT_NAME).read_bytes()
    a, b = json.loads((run / "summary.json").read_text()), json.loads((ref / "summary.json").read_text())
    for key in ("val_loss", "val_bpb", "roundtrip_val_bpb", "live_val_bpb", "steps", "tokens_seen", "config_hash"):
        assert a[key] == b[key], key
    assert metrics_rows(run) == metrics_rows(ref)
    # The complete final state (weights, EMAs, optimizer moments, RNG, stream) is bitwise equal too.
    (ta, ma), (tb, mb) = (read_checkpoint(r / "checkpoints" / "step_00000016.ckpt") for r in (run, ref))
    assert ta.keys() == tb.keys()
    for k in ta:
        assert ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]), k
    for k in ("step", "tokens_seen", "stream", "optimizers", "artifact_ema_updates", "rng"):
        assert ma[k] == mb[k], k


# ----------------------------------------------------------------------------- exact resume

DRIVER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import torch
    from jepagolf.cli import main
    from jepagolf.train.loop import Trainer

    torch.set_num_threads(1)
    marker = Path(sys.argv[1])
    original = Trainer.train_step

    def train_step(self):
        if self.step == 10:  # checkpoint 8 is written and step 9 is logged: park here to be killed
            marker.write_text("ready")
            time.sleep(600)
        return original(self)

    Trainer.train_step = train_step
    sys.exit(main(sys.argv[2:]))
""")


def test_sigkill_then_resume_is_bitwise_identical(tmp_path, tiny_data, reference):
    run, marker = tmp_path / "run", tmp_path / "ready"
    (tmp_path / "driver.py").write_text(DRIVER)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with open(tmp_path / "log.txt", "wb") as log:
        proc = subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), str(marker),
                                 *base_args(tiny_data, run)], stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 300
            while not marker.exists():
                assert proc.poll() is None, (tmp_path / "log.txt").read_text()
                assert time.monotonic() < deadline, "the run never reached step 10"
                time.sleep(0.1)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert [s for s, _ in list_checkpoints(run)] == [4, 8]
    assert not (run / "summary.json").exists()
    assert metrics_rows(run)[-1]["step"] == 9  # a row after the checkpoint, which resume must drop

    assert main(["train", "--resume", str(run)]) == 0
    assert_same_run(run, reference)
    log_text = (run / "train.log").read_text()
    assert f"resume: from {run / 'checkpoints' / 'step_00000008.ckpt'} at step 8" in log_text
    assert "dropped 1 metrics.jsonl row(s)" in log_text
    assert log_text.index("step:9/16") < log_text.index("resume:")  # appended, not rewritten


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_saves_a_checkpoint_and_the_resume_is_exact(tmp_path, tiny_data, reference, monkeypatch,
                                                           capsys, sig, code):
    original = Trainer.train_step

    def train_step(self):
        if self.step == 6:  # the signal arrives in the middle of step 7
            os.kill(os.getpid(), sig)
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", train_step)
    run = tmp_path / "run"
    assert main(base_args(tiny_data, run)) == code
    err = capsys.readouterr().err
    assert f"stopped by {sig.name} after step 7/16" in err
    assert f"resume with `jepagolf train --resume {run}`" in err
    assert [s for s, _ in list_checkpoints(run)][-1] == 7
    assert not (run / "summary.json").exists()
    if sig == signal.SIGTERM:  # one resume is enough to show that this checkpoint is exact too
        monkeypatch.setattr(Trainer, "train_step", original)
        assert main(["train", "--resume", str(run)]) == 0
        assert_same_run(run, reference)


def test_stop_request_second_signal(monkeypatch):
    from jepagolf.train.preempt import StopRequest

    req = StopRequest(announce=False)
    req.armed = True
    req._handle(signal.SIGINT, None)
    assert req.signum == signal.SIGINT
    req._handle(signal.SIGTERM, None)  # torchrun's SIGTERM after a Ctrl-C must not abort the save
    assert req.signum == signal.SIGINT
    with pytest.raises(KeyboardInterrupt):
        req._handle(signal.SIGINT, None)  # a second Ctrl-C stops at once


def test_corrupted_checkpoints_fall_back_to_an_older_one(tmp_path, reference, capsys):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    last, before = run / "checkpoints" / "step_00000016.ckpt", run / "checkpoints" / "step_00000012.ckpt"
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0xFF
    last.write_bytes(bytes(data))
    before.write_bytes(before.read_bytes()[:-1000])
    assert main(["train", "--resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert "step_00000016.ckpt: checkpoint corrupted (checksum mismatch); falling back to the previous " \
           "checkpoint step_00000012.ckpt" in err
    assert "step_00000012.ckpt: checkpoint truncated" in err and "falling back to the previous checkpoint " \
           "step_00000008.ckpt" in err
    assert "falling back" in (run / "train.log").read_text()
    assert_same_run(run, reference)

    for _, p in list_checkpoints(run):
        p.write_bytes(b"JGCKPT1\0")
    assert main(["train", "--resume", str(run)]) == 2
    assert "no usable checkpoint" in capsys.readouterr().err


def test_resume_refuses_another_configuration(tmp_path, reference, capsys, monkeypatch):
    def fails(args: list[str], message: str) -> None:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err

    fails(["train", "--resume", str(reference), "--set", "num_layers=4"], "num_layers: 3 -> 4")
    fails(["train", "--resume", str(reference), "--preset", "cpu-demo"], "trained with preset 'smoke'")
    fails(["train", "--resume", str(reference), "--out", str(tmp_path)], "drop --out")
    monkeypatch.setenv("ITERATIONS", "20")
    fails(["train", "--resume", str(reference)], "iterations: 16 -> 20")
    monkeypatch.delenv("ITERATIONS")
    # A folder whose config.json was swapped for another run's: the checkpoints do not belong to it.
    run = tmp_path / "mixed"
    shutil.copytree(reference, run)
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"]["model_dim"] = 128
    (run / "config.json").write_text(json.dumps(cfg))
    fails(["train", "--resume", str(run)], "written by a run with another configuration")
    fails(["train", "--resume", str(tmp_path / "nope")], "run folder does not exist")
    (tmp_path / "empty").mkdir()
    shutil.copy(reference / "config.json", tmp_path / "empty" / "config.json")
    fails(["train", "--resume", str(tmp_path / "empty")], "no checkpoints to resume from")
    # A new run must not silently mix into a folder that holds a resumable one.
    fails(["train", "--preset", "smoke", "--out", str(reference)], "already holds a run with checkpoints")
    # Nor into one that holds a finished run: its logs would be appended to, its artifact replaced.
    finished = tmp_path / "finished"
    finished.mkdir()
    (finished / "train.log").write_text("step:1/16 train_loss:6.9\n")
    fails(["train", "--preset", "smoke", "--out", str(finished)], "already holds a run (train.log)")


def test_disk_full_keeps_the_previous_checkpoint(tmp_path, tiny_data, monkeypatch, capsys):
    real_write = ckpt_mod._write

    def write(f, data):
        if ".step_00000004.ckpt." in f.name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(f, data)

    monkeypatch.setattr(ckpt_mod, "_write", write)
    run = tmp_path / "run"
    args = ["train", "--preset", "smoke", "--data", str(tiny_data), "--out", str(run), "--set", "iterations=6",
            "--set", "checkpoint_every_steps=2", "--set", "val_loss_every=0"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"could not write checkpoint {run / 'checkpoints' / 'step_00000004.ckpt'}: No space left on device" in err
    assert f"the previous checkpoint {run / 'checkpoints' / 'step_00000002.ckpt'} is intact" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000002.ckpt"]  # no temp left
    assert read_checkpoint(run / "checkpoints" / "step_00000002.ckpt")[1]["step"] == 2


# ----------------------------------------------------------------------------- divergence guard


def inject_nan(monkeypatch, steps: set[int], loss: bool = True) -> None:
    """Make the given (1-based) steps non-finite: the JEPA loss (if ``loss``) and one gradient."""
    original = ORIGINAL_TRAIN_STEP

    def train_step(self):
        stats = original(self)
        if self.step + 1 in steps:
            if loss:
                stats["jepa_loss"] = torch.tensor(float("nan"))
            next(p for p in self.model.parameters() if p.grad is not None).grad.view(-1)[0] = float("inf")
        return stats

    monkeypatch.setattr(Trainer, "train_step", train_step)


short_run = partial(smoke_train_args, iterations=6)


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, tiny_data, monkeypatch, capsys):
    inject_nan(monkeypatch, {5})
    run = tmp_path / "run"
    assert main(short_run(tiny_data, run, "checkpoint_every_steps=2")) == 2
    err = capsys.readouterr().err
    assert "non-finite JEPA loss = nan, gradient norm = inf at step 5 (CE loss = " in err
    assert "last good checkpoint (step 4) is kept" in err and "Traceback" not in err
    assert [s for s, _ in list_checkpoints(run)] == [2, 4]
    tensors, _ = read_checkpoint(run / "checkpoints" / "step_00000004.ckpt")
    assert all(torch.isfinite(t).all() for k, t in tensors.items() if t.is_floating_point())


def test_nonfinite_gradient_is_named(tmp_path, tiny_data, monkeypatch, capsys):
    inject_nan(monkeypatch, {3}, loss=False)
    assert main(short_run(tiny_data, tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert "non-finite gradient norm = inf at step 3 (CE loss = " in err and "JEPA loss = " in err
    assert "No checkpoint was written" in err


def test_deferred_check_never_saves_a_bad_state(tmp_path, tiny_data, monkeypatch, capsys):
    # The CUDA path: flags stay on the device and are read at log steps and before checkpoints.
    monkeypatch.setattr(DivergenceGuard, "syncs_every_step", lambda self: False)
    inject_nan(monkeypatch, {5})
    run = tmp_path / "run"
    assert main(short_run(tiny_data, run, "checkpoint_every_steps=3", "train_log_every=4")) == 2
    err = capsys.readouterr().err
    assert "non-finite JEPA loss = nan, gradient norm = inf at step 5" in err and "(detected at step 6)" in err
    assert [s for s, _ in list_checkpoints(run)] == [3]


def test_bounded_skipping_of_bad_steps(tmp_path, tiny_data, monkeypatch, capsys):
    inject_nan(monkeypatch, {3})
    run = tmp_path / "run"
    assert main(short_run(tiny_data, run, "skip_nonfinite_steps=1", "checkpoint_every_steps=6",
                          "train_log_every=1")) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    skips = [r for r in rows if r["kind"] == "skip"]
    assert [r["step"] for r in skips] == [3] and "non-finite JEPA loss" in skips[0]["reason"]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [1, 2, 4, 5, 6]
    assert json.loads((run / "summary.json").read_text())["skipped_steps"] == 1
    tensors, meta = read_checkpoint(run / "checkpoints" / "step_00000006.ckpt")
    assert meta["step"] == 6 and meta["skipped_steps"] == 1
    assert meta["artifact_ema_updates"] == 5  # the bad step moved neither EMA ...
    assert all(float(t) == 5 for k, t in tensors.items() if k.endswith("/step"))  # ... nor Adam
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())

    inject_nan(monkeypatch, {2, 4})
    assert main(short_run(tiny_data, tmp_path / "run2", "skip_nonfinite_steps=1")) == 2
    err = capsys.readouterr().err
    assert "at step 4" in err and "already skipped 1 bad step(s), the limit (skip_nonfinite_steps)" in err


def test_checkpoint_every_seconds(tmp_path, tiny_data, capsys):
    run = tmp_path / "run"
    assert main(short_run(tiny_data, run, "iterations=4", "checkpoint_every_seconds=1e-9", "checkpoint_keep=2")) == 0
    assert [s for s, _ in list_checkpoints(run)] == [3, 4]  # one per step (the clock is always due), last 2 kept
    assert (run / "train.log").read_text().count("reason:interval") == 3  # steps 1-3; step 4 is the final one
