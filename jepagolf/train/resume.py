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
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from jepagolf.config import Config, ConfigError, config_from_dict, override_config, read_config_json
from jepagolf.data.corpus import DatasetPaths
from jepagolf.data.fingerprint import dataset_fingerprint, tokenizer_sha256
from jepagolf.data.shards import TokenStream, list_shards, read_header
from jepagolf.jepa.target import WeightEMA
from jepagolf.sources import source_hash
from jepagolf.train.checkpoint import MAX_HEADER_BYTES, CheckpointError, DataChanged, LoadedCheckpoint
from jepagolf.train.runtime import Runtime, versions


class TrainerState(Protocol):
    """What a checkpoint is captured from and restored into (``jepagolf.train.loop.Trainer``): the
    functions below read and set exactly these."""

    cfg: Config
    rt: Runtime
    out_dir: Path
    paths: DatasetPaths
    model: torch.nn.Module
    target: torch.nn.Module | None
    artifact_ema: WeightEMA
    optimizers: list[torch.optim.Optimizer]
    stream: TokenStream
    step: int
    elapsed_s: float
    tokens_seen: int
    skipped_steps: int
    training_done: bool
    data_fingerprint: dict[str, list[list[Any]]] | None

METRICS_FILE = "metrics.jsonl"


# The state each optimizer keeps per parameter once it has stepped (torch.optim.Adam without amsgrad,
# jepagolf.optim.muon.Muon): a checkpoint holds all of it for a parameter, or none.
OPTIMIZER_STATE_KEYS = {"Adam": {"step", "exp_avg", "exp_avg_sq"}, "Muon": {"momentum_buffer"}}
# Param-group entries a checkpoint restores: the schedules' current values. Every other entry follows
# from the configuration (equal in a checkpoint that fits) or from the device (fused / foreach kernels),
# so the live optimizer's own values are kept.
SCHEDULED_GROUP_KEYS = ("lr", "momentum")
_DEVICE_GROUP_KEYS = ("foreach", "fused", "capturable", "differentiable")


def data_fingerprint(trainer: TrainerState) -> dict[str, list[list[Any]]]:
    """[name, size, content fingerprint] of every train and val shard (``jepagolf.data.fingerprint``:
    sampled bytes plus the manifest's sha256) and the tokenizer's sha256, taken once per trainer."""
    if trainer.data_fingerprint is None:
        trainer.data_fingerprint = {"train": dataset_fingerprint(trainer.stream.paths),
                                    "val": dataset_fingerprint(list_shards(trainer.paths.data_dir, "val")),
                                    "tokenizer": tokenizer_sha256(trainer.paths.tokenizer)}
    return trainer.data_fingerprint


def capture_state(trainer: TrainerState) -> tuple[dict[str, Tensor], dict[str, Any]]:
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
        "data": {"fingerprint": data_fingerprint(trainer)},
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


def max_checkpoint_bytes(trainer: TrainerState) -> int:
    """The most a checkpoint of this trainer can hold: its model, EMA target and artifact EMA, up to two
    optimizer moments per weight (Adam; Muon keeps one) plus a step counter each, the RNG states, and the
    largest header; ``load_latest`` refuses a larger file unread (a 5 GiB file named like a checkpoint)."""
    def nbytes(module: Any) -> int:
        return 0 if module is None else sum(t.numel() * t.element_size() for t in module.state_dict().values())

    model = nbytes(trainer.model)
    params = sum(1 for _ in trainer.model.parameters())
    state = model + nbytes(trainer.target) + nbytes(trainer.artifact_ema) + 2 * model + 64 * params
    return state + (1 << 20) * (2 + torch.cuda.device_count()) + MAX_HEADER_BYTES


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
        try:
            diff = config_diff(config_from_dict(saved), cfg) if isinstance(saved, dict) else "unknown"
        except ConfigError as e:
            diff = f"unknown: its config is not valid ({e})"
        raise CheckpointError(
            f"{ckpt.path} was written by a run with another configuration than {run_dir / 'config.json'} "
            f"(differs in: {diff}); the folder mixes two runs — resume a folder whose checkpoints and "
            "config.json belong together"
        )


def check_data(trainer: TrainerState, ckpt: LoadedCheckpoint) -> None:
    """Refuse (DataChanged) a resume whose shards differ in content from those the checkpoint was
    trained on; a checkpoint without a readable fingerprint is a bad checkpoint (CheckpointError)."""
    saved = ckpt.meta.get("data")
    saved = saved.get("fingerprint") if isinstance(saved, dict) else None
    # "tokenizer" is absent from checkpoints written before it was fingerprinted: those compare shards only.
    rows_ok = isinstance(saved, dict) and set(saved) - {"tokenizer"} == {"train", "val"} and all(
        isinstance(saved[split], list) and all(isinstance(r, list) and len(r) == 3 for r in saved[split])
        for split in ("train", "val")) and isinstance(saved.get("tokenizer", ""), str)
    if not rows_ok:
        raise CheckpointError(f"{ckpt.path}: malformed checkpoint: no data fingerprint in its meta")
    now = data_fingerprint(trainer)
    if "tokenizer" not in saved:
        now = {k: v for k, v in now.items() if k != "tokenizer"}
    if saved == now:
        return
    diffs = []
    if saved.get("tokenizer") != now.get("tokenizer"):
        diffs.append(f"the tokenizer {trainer.paths.tokenizer} has other content (sha256 {now['tokenizer'][:12]}..., "
                     f"{saved['tokenizer'][:12]}... then): the same tokens would stand for other bytes")
    for split in ("train", "val"):
        then_rows, now_rows = saved[split], now[split]
        if len(then_rows) != len(now_rows):
            diffs.append(f"{len(then_rows)} {split} shards then, {len(now_rows)} now")
        diffs += [f"{b[0]} differs from {a[0]} then" if a[0] != b[0] else f"{b[0]} has other content"
                  for a, b in zip(then_rows, now_rows, strict=False) if a != b]
    raise DataChanged(
        f"{ckpt.path}: the training data changed since the checkpoint ({'; '.join(diffs[:3])}"
        f"{'; ...' if len(diffs) > 3 else ''}, compared by content, not names and sizes); resume with the same --data"
    )


def check_restorable(trainer: TrainerState, ckpt: LoadedCheckpoint, run_dir: Path) -> None:
    """Raise CheckpointError unless ``ckpt`` fits this run and can be restored completely: the same
    configuration (``check_fits``) and data (``check_data``, which raises DataChanged), and every tensor
    and meta entry that ``restore_state`` reads present, of the right type, shape and dtype, finite and
    in range. Nothing of the trainer is changed, so a failing checkpoint can be passed over for an
    older one."""
    check_fits(ckpt, trainer.cfg, run_dir)
    check_data(trainer, ckpt)
    try:
        _check_meta(trainer, ckpt.meta)
        _check_tensors(trainer, ckpt)
    except (ValueError, TypeError, KeyError, OverflowError) as e:
        raise CheckpointError(f"{ckpt.path}: does not fit this run: {e}") from None


def _count(meta: dict[str, Any], key: str) -> int:
    v = meta.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ValueError(f"meta {key}={v!r} is not a count")
    return v


def _check_meta(trainer: TrainerState, meta: dict[str, Any]) -> None:
    for key in ("step", "tokens_seen", "skipped_steps", "artifact_ema_updates", "world_size"):
        _count(meta, key)
    elapsed = meta.get("elapsed_s")
    if not isinstance(elapsed, (int, float)) or isinstance(elapsed, bool) or not 0 <= elapsed < float("inf"):
        raise ValueError(f"meta elapsed_s={elapsed!r} is not a time")
    if not isinstance(meta.get("training_done"), bool):
        raise ValueError(f"meta training_done={meta.get('training_done')!r} is not a bool")
    logs = meta.get("logs")
    if not isinstance(logs, dict):
        raise ValueError("meta logs is not an object")
    _count(logs, METRICS_FILE)
    stream = meta.get("stream")
    if not isinstance(stream, dict) or set(stream) != {"shard_index", "position", "num_shards"}:
        raise ValueError(f"meta stream={stream!r} is not a stream position")
    index, position, shards = (_count(stream, k) for k in ("shard_index", "position", "num_shards"))
    paths = trainer.stream.paths
    if shards != len(paths) or index >= shards or position > read_header(paths[index]):
        raise ValueError(f"stream position {stream} is outside the {len(paths)} train shards")
    rng = meta.get("rng")
    if not isinstance(rng, dict) or not isinstance(rng.get("python"), list) or len(rng["python"]) != 3:
        raise ValueError("meta rng.python is not a Python RNG state")
    version, internal, gauss = rng["python"]
    random.Random().setstate((version, tuple(internal), gauss))  # raises on a malformed state
    if not isinstance(rng.get("numpy"), list) or len(rng["numpy"]) != 4:
        raise ValueError("meta rng.numpy is not a numpy RNG state")
    if not 0 <= _count(rng, "cuda_devices") <= 1024:
        raise ValueError(f"meta rng.cuda_devices={rng['cuda_devices']} is out of range")
    saved_opts = meta.get("optimizers")
    if not isinstance(saved_opts, list) or len(saved_opts) != len(trainer.optimizers):
        raise ValueError(f"{len(trainer.optimizers)} optimizers built, the checkpoint does not hold as many")
    for i, (opt, saved) in enumerate(zip(trainer.optimizers, saved_opts, strict=True)):
        _check_optimizer(i, opt, saved)


def _check_optimizer(i: int, opt: torch.optim.Optimizer, saved: Any) -> None:
    name = type(opt).__name__
    if not isinstance(saved, dict) or saved.get("type") != name:
        raise ValueError(f"optimizer {i} is {name}, the checkpoint's is not")
    live, groups = opt.state_dict()["param_groups"], saved.get("param_groups")
    if not isinstance(groups, list) or len(groups) != len(live):
        raise ValueError(f"optimizer {i} has {len(live)} param groups, the checkpoint's a different number")
    for g, g_live in zip(groups, live, strict=True):
        if not isinstance(g, dict) or set(g) != set(g_live) or g["params"] != g_live["params"]:
            raise ValueError(f"optimizer {i}: a param group does not match ({sorted(g_live)})")
        for k, v in g.items():
            if k in SCHEDULED_GROUP_KEYS:
                if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v < float("inf"):
                    raise ValueError(f"optimizer {i}: {k}={v!r} is not a finite number >= 0")
            elif k in _DEVICE_GROUP_KEYS:
                if v is not None and not isinstance(v, bool):
                    raise ValueError(f"optimizer {i}: {k}={v!r} is not a flag")
            elif (list(v) if isinstance(v, (list, tuple)) else v) != (
                    list(g_live[k]) if isinstance(g_live[k], tuple) else g_live[k]):
                raise ValueError(f"optimizer {i}: {k}={v!r} differs from the configuration's {g_live[k]!r}")
    scalars = saved.get("scalars")
    if not isinstance(scalars, dict) or scalars:
        # Adam and Muon keep only tensors in their state (Adam's step included).
        raise ValueError(f"optimizer {i}: unexpected non-tensor state {scalars!r}")


def _expected_tensors(trainer: TrainerState) -> dict[str, Tensor]:
    """The live trainer's tensors under their checkpoint names (model, target, artifact EMA, RNG)."""
    live: dict[str, Tensor] = {f"model/{k}": v for k, v in trainer.model.state_dict().items()}
    if trainer.target is not None:
        live.update({f"target/{k}": v for k, v in trainer.target.state_dict().items()})
    live.update({f"artifact_ema/{k}": v for k, v in trainer.artifact_ema.state_dict().items()})
    live["rng/torch"] = torch.get_rng_state()
    return live


def _check_tensors(trainer: TrainerState, ckpt: LoadedCheckpoint) -> None:
    t, meta = ckpt.tensors, ckpt.meta
    live = _expected_tensors(trainer)
    for name, ref in live.items():
        got = t.get(name)
        if got is None or got.shape != ref.shape or got.dtype != ref.dtype:
            what = "missing" if got is None else f"{got.dtype} {list(got.shape)}"
            raise ValueError(f"tensor {name}: {what}, expected {ref.dtype} {list(ref.shape)}")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise ValueError(f"tensor {name} holds NaN or inf")
    keys = t.get("rng/numpy_keys")
    if keys is None or keys.dtype != torch.int64 or keys.shape != (624,):
        raise ValueError("tensor rng/numpy_keys: missing or not 624 int64")
    kind, pos, has_gauss, gauss = meta["rng"]["numpy"]
    np.random.RandomState().set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    cuda = [f"rng/cuda/{i}" for i in range(meta["rng"]["cuda_devices"])]
    for name in cuda:
        s = t.get(name)
        if s is None or s.dtype != torch.uint8 or s.dim() != 1 or s.numel() > 1024:
            raise ValueError(f"tensor {name}: missing or not a CUDA RNG state")
    known = set(live) | {"rng/numpy_keys", *cuda}
    params = [[p for g in opt.param_groups for p in g["params"]] for opt in trainer.optimizers]
    state: dict[tuple[int, int], set[str]] = {}
    for name, v in t.items():
        if name in known:
            continue
        parts = name.split("/")
        if len(parts) != 4 or parts[0] != "optim" or not (parts[1].isdigit() and parts[2].isdigit()):
            raise ValueError(f"unexpected tensor {name}")
        i, pid, key = int(parts[1]), int(parts[2]), parts[3]
        if i >= len(params) or pid >= len(params[i]):
            raise ValueError(f"tensor {name}: no such optimizer parameter")
        if key not in OPTIMIZER_STATE_KEYS[type(trainer.optimizers[i]).__name__]:
            raise ValueError(f"tensor {name}: unknown optimizer state {key!r}")
        shape = () if key == "step" else params[i][pid].shape
        if v.shape != shape or v.dtype != torch.float32 or not bool(torch.isfinite(v).all()):
            raise ValueError(f"tensor {name}: {v.dtype} {list(v.shape)}, expected finite float32 {list(shape)}")
        state.setdefault((i, pid), set()).add(key)
    for (i, pid), keys_found in state.items():
        expected = OPTIMIZER_STATE_KEYS[type(trainer.optimizers[i]).__name__]
        if keys_found != expected:
            raise ValueError(f"optimizer {i} parameter {pid}: state {sorted(keys_found)}, expected {sorted(expected)}")


def restore_state(trainer: TrainerState, ckpt: LoadedCheckpoint) -> None:
    """Load ``ckpt`` into a freshly built trainer (same config), in place; ``check_restorable`` has
    passed on it."""
    t, meta = ckpt.tensors, ckpt.meta
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
            live = opt.state_dict()["param_groups"]
            groups = [{**g_live, **{k: g[k] for k in SCHEDULED_GROUP_KEYS if k in g_live}}
                      for g, g_live in zip(saved["param_groups"], live, strict=True)]
            opt.load_state_dict({"state": state, "param_groups": groups})
        trainer.stream.load_state_dict(meta["stream"])
        restore_rng(t, meta["rng"])
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{ckpt.path}: does not fit this model and optimizer ({e})") from e
    trainer.step = int(meta["step"])
    trainer.elapsed_s = float(meta["elapsed_s"])
    trainer.tokens_seen = int(meta["tokens_seen"])
    trainer.skipped_steps = int(meta["skipped_steps"])
    trainer.training_done = bool(meta["training_done"])


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
        # In blocks: a metrics.jsonl grown huge (or crafted) is counted, never read whole.
        dropped = sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))
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
