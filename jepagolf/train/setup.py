"""A run's set-up, before the trainer is built: the dataset found and checked, the run folder chosen,
refused when it holds another run, created and locked, and the validation data loaded.

:func:`prepare_run` does it in that order; ``jepagolf train --out`` also calls
:func:`refuse_used_run_folder` up front, and the generated ``train_gpt.py`` goes through here as well.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch.distributed as dist

from jepagolf.config import Config, ConfigError
from jepagolf.data.corpus import DatasetPaths
from jepagolf.data.dataset import resolve_dataset
from jepagolf.data.shards import list_shards, read_header
from jepagolf.data.tokenizer import load_tokenizer
from jepagolf.export.artifact import ARTIFACT_NAMES
from jepagolf.outputs import OutputError, RunLock
from jepagolf.sources import shipped_code_bytes
from jepagolf.train.checkpoint import CheckpointError, list_checkpoints, load_latest
from jepagolf.train.runtime import Runtime
from jepagolf.train.validation import ValData, load_val_data


@dataclass
class RunSetup:
    """What the set-up hands to the trainer: the dataset, the run folder and its lock (rank 0 holds it;
    None elsewhere), and the validation data."""

    paths: DatasetPaths
    out_dir: Path
    lock: RunLock | None
    val: ValData
    code_bytes: int  # of the train_gpt.py this run would ship (package_code_bytes)

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def prepare_run(cfg: Config, rt: Runtime, out_dir: Path | None, *, resume: bool) -> RunSetup:
    """Check the dataset, choose (default: a new one under runs/), check, create and lock the run folder
    (with ``resume``, one that holds checkpoints), and load the validation data. Nothing is left locked
    when it fails."""
    paths = resolve_dataset(cfg.data.data_path or None, cfg.data.tokenizer_path or None,
                            announce=rt.is_main)
    check_dataset(cfg, paths)
    if resume and out_dir is None:
        raise CheckpointError("resume needs the run folder")
    if not resume and out_dir is not None:
        refuse_resumable_run(out_dir)
    if resume and not list_checkpoints(out_dir):
        load_latest(out_dir)  # raises: no checkpoints to resume from
    if out_dir is None:
        out_dir = default_run_dir(cfg)
        if rt.distributed:
            # Every rank must agree on the folder (rank 0's clock decides).
            holder = [str(out_dir)]
            dist.broadcast_object_list(holder, src=0)
            out_dir = Path(holder[0])
    lock = claim_run_folder(out_dir, rt, fresh=not resume)
    try:
        val = load_val_data(cfg, paths, rt.device)
        # Computed now so that a bundling error stops the run before training, not after it.
        code_bytes = package_code_bytes(cfg)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return RunSetup(paths, out_dir, lock, val, code_bytes)


def package_code_bytes(cfg: Config) -> int:
    """Bytes of the single-file train_gpt.py that `jepagolf export` ships for this run (its own size
    when this is that file), so that total_bytes is what counts against the cap."""
    return shipped_code_bytes(cfg.to_dict())


def check_dataset(cfg: Config, paths: DatasetPaths) -> None:
    """Fail fast, before building the model: every shard header and size, and the tokenizer's vocab."""
    for split in ("train", "val"):
        for path in list_shards(paths.data_dir, split):
            read_header(path)
    load_tokenizer(paths.tokenizer, expected_vocab=cfg.model.vocab_size)


def default_run_dir(cfg: Config) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.preset}-{stamp}-seed{cfg.train.seed}"


def claim_run_folder(out_dir: Path, rt: Runtime, *, fresh: bool) -> RunLock | None:
    """Create ``out_dir`` and lock it for this run (rank 0 holds the lock, for the run's life); a new
    run (``fresh``) also refuses a folder that already holds results, checked under the lock so that
    two runs started at once cannot both pass. Every rank raises the same one-line error."""
    lock, error = None, ""
    if rt.is_main:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            lock = RunLock(out_dir).acquire()
            if fresh:
                refuse_used_run_folder(out_dir)
        except (OutputError, CheckpointError, OSError) as e:
            if lock is not None:
                lock.release()
                lock = None
            error = str(e) if not isinstance(e, OSError) else f"cannot use run folder {out_dir}: {e}"
    if rt.distributed:
        holder = [error]
        dist.broadcast_object_list(holder, src=0)
        error = holder[0]
    if error:
        raise OutputError(error)
    return lock


def refuse_resumable_run(out_dir: Path) -> None:
    """A new run must not mix into a folder that holds a resumable one."""
    if list_checkpoints(out_dir):
        raise CheckpointError(
            f"{out_dir} already holds a run with checkpoints; continue it with `jepagolf train --resume "
            f"{out_dir}` or choose another --out"
        )


def refuse_used_run_folder(out_dir: Path) -> None:
    """A new run (``jepagolf train --out DIR``, the generated train_gpt.py with OUT_DIR) must not go
    into a folder that holds another run's results, which it would append to (logs) or replace
    (artifact, summary, config)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file, not a folder; choose a folder for the run")
    refuse_resumable_run(out_dir)
    found = [n for n in ("summary.json", *ARTIFACT_NAMES.values(), "train.log", "metrics.jsonl", "config.json")
             if (out_dir / n).exists()]
    if found:
        raise CheckpointError(
            f"{out_dir} already holds a run ({', '.join(found)}); a new run there would append to its logs "
            "and replace its results: choose another --out, or delete that folder first"
        )
