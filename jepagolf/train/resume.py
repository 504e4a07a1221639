"""What a checkpoint holds, how a Trainer is restored from it, and the checks that a resume
continues the *same* run (same configuration, same data).

A checkpoint holds every piece of state that the next step reads: the model (GPT, predictor,
mask embedding), the EMA target, the artifact EMA and its update count, every optimizer's state
and param groups, the RNG states (torch, numpy, Python, CUDA), the data-stream position, the step,
the elapsed training time, the tokens seen and the skipped-step count. What it does not need:
schedules are pure functions of (step, elapsed_s) and the JEPA span generators are seeded from
(seed, step, micro-batch index), so neither has state to replay; the meta records that.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from jepagolf.config import Config, ConfigError, config_from_dict, override_config, read_config_json
from jepagolf.train.checkpoint import CheckpointError, LoadedCheckpoint
from jepagolf.train.runtime import source_hash, versions

if TYPE_CHECKING:
    from jepagolf.train.loop import Trainer

METRICS_FILE = "metrics.jsonl"


def data_fingerprint(trainer: Trainer) -> list[list[Any]]:
    """Names and sizes of the training shards: a cheap check that a resume reads the same data."""
    return [[p.name, p.stat().st_size] for p in trainer.stream.paths]


def capture_state(trainer: Trainer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(tensors, JSON meta) of the trainer's full state; tensors are not copied here."""
    tensors: dict[str, Tensor] = {}
    tensors.update({f"model/{k}": v for k, v in trainer.model.state_dict().items()})
    if trainer.target is not None:
        tensors.update({f"target/{k}": v for k, v in trainer.target.state_dict().items()})
    tensors.update({f"artifact_ema/{k}": v for k, v in trainer.artifact_ema.state_dict().items()})
    optimizers = []
    for i, opt in enumerate(trainer.optimizers):
        sd = opt.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for pid, state in sd["state"].items():
            for key, value in state.items():
                if isinstance(value, Tensor):
                    tensors[f"optim/{i}/{pid}/{key}"] = value
                else:
                    scalars.setdefault(str(pid), {})[key] = value
        optimizers.append({"type": type(opt).__name__, "param_groups": sd["param_groups"], "scalars": scalars})
    tensors["rng/torch"] = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    for i, s in enumerate(cuda_states):
        tensors[f"rng/cuda/{i}"] = s
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    tensors["rng/numpy_keys"] = torch.from_numpy(np.asarray(np_keys, dtype=np.int64))
    py_version, py_internal, py_gauss = random.getstate()
    cfg = trainer.cfg
    meta = {
        "format": "jepagolf-checkpoint",
        "step": trainer.step,
        "elapsed_s": trainer.elapsed_s,
        "tokens_seen": trainer.tokens_seen,
        "skipped_steps": trainer.skipped_steps,
        "training_done": trainer.training_done,
        "artifact_ema_updates": trainer.artifact_ema.updates,
        "optimizers": optimizers,
        "stream": trainer.stream.state_dict(),
        "data": {"train_shards": data_fingerprint(trainer)},
        "rng": {
            "python": [py_version, list(py_internal), py_gauss],
            "numpy": [np_kind, int(np_pos), int(np_has_gauss), float(np_gauss)],
            "cuda_devices": len(cuda_states),
            "span_generators": "seeded from (seed, step, micro-batch index): nothing to save",
        },
        "schedules": "pure functions of (step, elapsed_s): nothing to save",
        "logs": {METRICS_FILE: _size(trainer.out_dir / METRICS_FILE)},
        "world_size": trainer.rt.world_size,
        "config": cfg.to_dict(),
        "config_hash": cfg.hash(),
        "source_hash": source_hash(),
        "versions": versions(),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return tensors, meta


def _size(path: Path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _section(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def check_fits(ckpt: LoadedCheckpoint, cfg: Config, run_dir: Path) -> None:
    """Refuse a checkpoint written under another configuration than the run folder's."""
    saved = ckpt.meta.get("config")
    if ckpt.meta.get("config_hash") != cfg.hash() or not isinstance(saved, dict):
        diff = config_diff(config_from_dict(saved), cfg) if isinstance(saved, dict) else "unknown"
        raise CheckpointError(
            f"{ckpt.path} was written by a run with another configuration than {run_dir / 'config.json'} "
            f"(differs in: {diff}); the folder mixes two runs — resume a folder whose checkpoints and "
            "config.json belong together"
        )


def restore_state(trainer: Trainer, ckpt: LoadedCheckpoint) -> None:
    """Load ``ckpt`` into a freshly built trainer (same config), in place."""
    t, meta = ckpt.tensors, ckpt.meta
    fingerprint = data_fingerprint(trainer)
    if meta["data"]["train_shards"] != fingerprint:
        raise CheckpointError(
            f"{ckpt.path}: the training data changed since the checkpoint (shards then: "
            f"{meta['data']['train_shards']}, now: {fingerprint}); resume with the same --data"
        )
    try:
        trainer.model.load_state_dict(_section(t, "model/"))
        if trainer.target is not None:
            trainer.target.load_state_dict(_section(t, "target/"))
        ema = _section(t, "artifact_ema/")
        if set(ema) != set(trainer.artifact_ema.names):
            raise ValueError(f"artifact EMA tensors {sorted(set(ema) ^ set(trainer.artifact_ema.names))} do not match")
        trainer.artifact_ema.load_state_dict(ema, int(meta["artifact_ema_updates"]))
        if len(meta["optimizers"]) != len(trainer.optimizers):
            raise ValueError(f"{len(meta['optimizers'])} optimizers saved, {len(trainer.optimizers)} built")
        for i, (opt, saved) in enumerate(zip(trainer.optimizers, meta["optimizers"], strict=True)):
            if saved["type"] != type(opt).__name__:
                raise ValueError(f"optimizer {i} is {type(opt).__name__}, the checkpoint has {saved['type']}")
            state: dict[int, dict[str, Any]] = {}
            for key, value in _section(t, f"optim/{i}/").items():
                pid, name = key.split("/", 1)
                state.setdefault(int(pid), {})[name] = value
            for pid, values in saved["scalars"].items():
                state.setdefault(int(pid), {}).update(values)
            live = opt.state_dict()["param_groups"]
            # JSON turned tuples (Adam's betas) into lists; give them back their live type.
            groups = [{k: tuple(v) if isinstance(g_live.get(k), tuple) else v for k, v in g.items()}
                      for g, g_live in zip(saved["param_groups"], live, strict=True)]
            opt.load_state_dict({"state": state, "param_groups": groups})
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{ckpt.path}: does not fit this model and optimizer ({e})") from e
    trainer.stream.load_state_dict(meta["stream"])
    trainer.step = int(meta["step"])
    trainer.elapsed_s = float(meta["elapsed_s"])
    trainer.tokens_seen = int(meta["tokens_seen"])
    trainer.skipped_steps = int(meta["skipped_steps"])
    trainer.training_done = bool(meta["training_done"])
    restore_rng(t, meta["rng"])


def restore_rng(tensors: dict[str, Tensor], rng: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng/torch"])
    kind, pos, has_gauss, gauss = rng["numpy"]
    np.random.set_state((kind, tensors["rng/numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = rng["python"]
    random.setstate((version, tuple(internal), gauss_next))
    cuda = [tensors[f"rng/cuda/{i}"] for i in range(int(rng["cuda_devices"]))]
    # A run moved to another machine keeps its CPU streams; the CUDA ones only where they fit.
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all(cuda)


def truncate_metrics(run_dir: Path, meta: dict[str, Any]) -> int:
    """Drop metrics.jsonl rows written after the checkpoint (the resumed run logs those steps again).

    Returns the number of rows dropped; their text stays in train.log, which is only appended to.
    """
    path = run_dir / METRICS_FILE
    keep = int(meta["logs"][METRICS_FILE])
    size = _size(path)
    if size <= keep:
        return 0
    with open(path, "rb+") as f:
        f.seek(keep)
        dropped = f.read().count(b"\n")
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return dropped


def flat_config(cfg: Config) -> dict[str, Any]:
    return {k: v for section in cfg.to_dict().values() if isinstance(section, dict) for k, v in section.items()}


def config_diff(a: Config, b: Config) -> str:
    fa, fb = flat_config(a), flat_config(b)
    keys = [k for k in fa if fa[k] != fb.get(k)]
    return ", ".join(f"{k}: {fa[k]!r} -> {fb.get(k)!r}" for k in keys) or "nothing visible"


def resume_config(run_dir: Path, overrides: dict[str, str], preset: str | None = None,
                  environ: dict[str, str] | None = None) -> Config:
    """The configuration of the run in ``run_dir``, with only operational settings changed.

    Environment variables and ``overrides`` apply as for a new run; any that would change what the
    run trains (anything in Config.hash()) is refused with the list of differences.
    """
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not run_dir.is_dir():
        raise CheckpointError(f"--resume {run_dir}: run folder does not exist")
    if not path.is_file():
        raise CheckpointError(f"--resume {run_dir}: no config.json there; not a jepagolf run folder")
    saved = config_from_dict(read_config_json(path))
    if preset is not None and preset != saved.preset:
        raise ConfigError(
            f"--resume {run_dir}: the run was trained with preset {saved.preset!r}, not {preset!r}; "
            "drop --preset when resuming (the run's config.json is used)"
        )
    cfg = override_config(saved, overrides, environ)
    if cfg.hash() != saved.hash():
        raise ConfigError(
            f"--resume {run_dir}: the requested settings differ from the run's config.json in "
            f"{config_diff(saved, cfg)}; a resumed run keeps its configuration (only device, compile, "
            "checkpoint_*, skip_nonfinite_steps and data paths may change) — drop those settings "
            "(check the environment variables too) or start a new run with --out"
        )
    return cfg
