"""Hostile and careless input (issue 14): every case ends in one ``error:`` line and exit status 2,
or in correct behaviour; docs/errors.md lists them. Every crafted file is made here from a valid one.

Most cases run ``cli.main`` in-process (exit status and stderr are what a user sees); the artifacts
are written from an untrained smoke GPT, so no case trains a model unless the case is about training.
"""

from __future__ import annotations

import errno
import hashlib
import json
import lzma
import os
import re
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import smoke_train_args, tiny_dataset

from jepagolf.cli import main
from jepagolf.config import build_config
from jepagolf.export import container
from jepagolf.export.artifact import ARTIFACT_NAME, write_artifact
from jepagolf.model.gpt import GPT

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def fails(args: list[str], message: str, capsys) -> str:
    """``main(args)`` exits 2 with exactly one ``error:`` line containing ``message``, no traceback."""
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and message in lines[-1], err
    assert "Traceback" not in err, err
    return lines[-1]


# ----------------------------------------------------------------------------- crafted artifacts


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> bytes:
    """A valid smoke artifact (random weights, so that every tensor carries values)."""
    cfg = build_config("smoke", {"gptq": "false"})
    torch.manual_seed(0)
    gpt = GPT(cfg.model, cfg.train.train_seq_len)
    with torch.no_grad():
        for p in gpt.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    path = tmp_path_factory.mktemp("artifact") / ARTIFACT_NAME
    write_artifact(gpt.state_dict(), path, cfg)
    return path.read_bytes()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, demo_data) -> Path:
    return tiny_dataset(tmp_path_factory.mktemp("tiny") / "data", demo_data)


def wrap(payload: bytes, payload_len: int | None = None, fast: bool = False) -> bytes:
    """Artifact file bytes around ``payload``, with a valid checksum (and optionally a false length)."""
    compressed = (lzma.compress(payload, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 1}])
                  if fast else container.compress_payload(payload))
    body = container._PREFIX.pack(container.MAGIC, len(payload) if payload_len is None else payload_len,
                                  len(compressed)) + compressed
    return body + hashlib.sha256(body).digest()


def split(data: bytes) -> tuple[dict[str, Any], bytes]:
    payload = container.artifact_payload(data)
    (n,) = struct.unpack_from("<I", payload)
    return json.loads(payload[4 : 4 + n]), payload[4 + n :]


def join(header: dict[str, Any] | bytes, blob: bytes) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return wrap(struct.pack("<I", len(raw)) + raw + blob)


def edit_header(data: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    header, blob = split(data)
    edit(header)
    return join(header, blob)


def entry(header: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in header["tensors"] if e["name"] == name)


def fill_floats(data: bytes, value: float) -> bytes:
    """Every fp32 tensor's values set to ``value`` (the checksum stays valid)."""
    header, blob = split(data)
    out = bytearray(blob)
    for e in header["tensors"]:
        if e["kind"] == "fp32":
            out[e["offset"] : e["offset"] + e["length"]] = np.full(e["length"] // 4, value, "<f4").tobytes()
    return join(header, bytes(out))


def set_meta(path: list[str], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(header: dict[str, Any]) -> None:
        d = header["meta"]
        for key in path[:-1]:
            d = d[key]
        d[path[-1]] = value
    return edit


def del_meta(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda header: header["meta"].pop(key)


def set_entry(name: str, **fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda header: entry(header, name).update(fields)


def deep_json(data: bytes) -> bytes:
    _, blob = split(data)
    return join(b"[" * 100_000 + b"]" * 100_000, blob)


def lzma_bomb(data: bytes) -> bytes:
    # 64 MB of zeros compress to a few KB: declared honestly, the stream really decodes to 64 MB.
    return wrap(bytes(64 << 20), fast=True)


# (case, craft from the valid artifact, message) for cases any reader refuses: `size` and `eval`.
CONTAINER_CASES: list[tuple[str, Callable[[bytes], bytes], str]] = [
    ("payload_len 2^64-1", lambda d: wrap(split_payload(d), payload_len=2**64 - 1),
     "refused: it declares a payload of 18,446,744,073,709,551,615 bytes"),
    ("LZMA bomb", lzma_bomb, "refused: it declares a payload of 67,108,864 bytes"),
    ("shape [2^32, 2^32]", lambda d: edit_header(d, set_entry("blocks.0.attn.q_gain", shape=[2**32, 2**32])),
     "bad shape [4294967296, 4294967296]"),
    # 4 * 5 * 5581 * 8681 * 49477 * 384773 = 2^64 + 4: in int64 the product wraps to the 4 elements stored.
    ("shape product wraps around in int64", lambda d: edit_header(d, set_entry(
        "blocks.0.attn.q_gain", shape=[4, 5, 5581, 8681, 49477, 384773])), "do not match the expected"),
    ("nine dimensions", lambda d: edit_header(d, set_entry("blocks.0.attn.q_gain", shape=[1] * 9)), "bad shape"),
    ("deeply nested JSON header", deep_json, "JSON nested too deeply"),
    ("header not an object", lambda d: join(b"[1, 2]", split(d)[1]), "unsupported format version None"),
    ("all-NaN weights", lambda d: fill_floats(d, float("nan")), "non-finite values (NaN or inf)"),
    ("truncated", lambda d: d[: len(d) // 2], "artifact truncated"),
    ("not an artifact", lambda d: b"PK\3\4" + d, "not a jepagolf artifact"),
]


def split_payload(data: bytes) -> bytes:
    return container.artifact_payload(data)


@pytest.mark.parametrize("case, craft, message", CONTAINER_CASES, ids=[c[0] for c in CONTAINER_CASES])
def test_crafted_artifact_is_refused_by_size_and_eval(tmp_path, artifact, case, craft, message, capsys):
    path = tmp_path / ARTIFACT_NAME
    path.write_bytes(craft(artifact))
    fails(["size", "--artifact", str(path)], message, capsys)
    fails(["eval", str(path), "--data", str(tmp_path / "never-read")], message, capsys)


# Cases in the model the header describes: refused before the model is built.
MODEL_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("train_seq_len 250000000", set_meta(["train_seq_len"], 250_000_000),
     "train_seq_len=250000000 must be in 1..65536"),
    ("train_seq_len a string", set_meta(["train_seq_len"], "64"), "an integer 'train_seq_len', found dict and str"),
    ("train_seq_len missing", del_meta("train_seq_len"), "an integer 'train_seq_len'"),
    ("model missing", del_meta("model"), "meta needs a 'model' object"),
    ("model a list", set_meta(["model"], [3, 64]), "meta needs a 'model' object"),
    ("model_dim 2^20", set_meta(["model", "model_dim"], 1 << 20), "cannot fit the 16,000,000-byte cap even at 1 bit"),
    ("num_layers 10^6", set_meta(["model", "num_layers"], 10**6), "num_layers=1000000 is more than 1024"),
    ("num_layers a string", set_meta(["model", "num_layers"], "3"), "num_layers='3': expected a value of type int"),
    ("num_layers true", set_meta(["model", "num_layers"], True), "num_layers=True: expected a value of type int"),
    ("mlp_mult 1e308", set_meta(["model", "mlp_mult"], 1e308), "mlp_mult=1e+308 is more than 64.0"),
    ("unknown model key", set_meta(["model", "wormhole"], 1), "unknown keys ['wormhole']"),
    ("RoPE tables too large", lambda h: (h["meta"].update(train_seq_len=65536),  # each value within its limit
                                         h["meta"]["model"].update(num_layers=64, num_heads=1, num_kv_heads=1)),
     "bytes of RoPE tables"),
    ("model larger than its tensors", set_meta(["model", "model_dim"], 128),
     "the tensors do not match the model its header describes (168,780 weights stored, 509,580 in the model)"),
    ("same count, other shapes", lambda h: h["meta"]["model"].update(vocab_size=1280, bigram_buckets=0),
     "bigram.weight: [256, 64] (expected none), tok_emb.weight: [1024, 64] (expected [1280, 64])"),
]


@pytest.mark.parametrize("case, edit, message", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_crafted_model_header_is_refused_before_building(tmp_path, artifact, case, edit, message, capsys):
    path = tmp_path / ARTIFACT_NAME
    path.write_bytes(edit_header(artifact, edit))
    fails(["eval", str(path), "--data", str(tmp_path / "never-read")], message, capsys)


def test_artifact_whose_weights_overflow_gives_no_score(tmp_path, artifact, tiny, capsys):
    """Finite but huge weights: the forward overflows, val_bpb would be NaN; an error, never a result."""
    path = tmp_path / ARTIFACT_NAME
    path.write_bytes(fill_floats(artifact, 3e38))
    fails(["eval", str(path), "--data", str(tiny)], "the model evaluates to val_bpb nan", capsys)
    path.write_bytes(artifact)  # the valid one scores
    assert main(["eval", str(path), "--data", str(tiny)]) == 0
    assert np.isfinite(json.loads(capsys.readouterr().out)["val_bpb"])


def test_eval_and_size_given_a_folder_or_nothing(tmp_path, capsys):
    fails(["eval", str(tmp_path)], "is a folder, not an artifact file", capsys)
    fails(["size", "--artifact", str(tmp_path)], "is a folder, not an artifact file", capsys)
    fails(["eval", str(tmp_path / "nope.lzma")], "artifact file does not exist", capsys)


def test_file_larger_than_any_artifact_is_not_read(tmp_path, monkeypatch, capsys):
    path = tmp_path / ARTIFACT_NAME
    with open(path, "wb") as f:  # sparse: no disk used
        f.truncate(container.MAX_FILE_BYTES + 1)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("the file was read"))
    fails(["size", "--artifact", str(path)], "is larger than any artifact", capsys)


def test_size_refuses_a_bad_config_beside_the_artifact(tmp_path, artifact, capsys):
    (tmp_path / ARTIFACT_NAME).write_bytes(artifact)
    (tmp_path / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    fails(["size", "--artifact", str(tmp_path / ARTIFACT_NAME)], "JSON nested too deeply", capsys)
    (tmp_path / "config.json").write_text(json.dumps({"train": {"max_wallclock_seconds": "soon"}}))
    fails(["size", "--artifact", str(tmp_path / ARTIFACT_NAME)], "max_wallclock_seconds='soon'", capsys)


# ----------------------------------------------------------------------------- configuration


CONFIG_CASES = [
    (["--set", "max_wallclock_seconds=nan"], "max_wallclock_seconds=nan must be a finite number"),
    (["--set", "matrix_lr=1e400"], "matrix_lr=inf must be a finite number"),
    (["--set", "iterations=1e400"], "iterations='1e400': expected a value of type int"),
    (["--set", "iterations=2.5e0"], "iterations='2.5e0': expected a value of type int"),
    (["--set", "seed=1e30"], "seed=1000000000000000019884624838656 must be a finite number that fits 64 bits"),
    (["--set", "train_seq_len=1000000", "--set", "micro_batch_tokens=1000000", "--set", "train_batch_tokens=1000000",
      "--set", "val_batch_tokens=1000000"], "train_seq_len=1000000 must be in 1..65536"),
    (["--set", "model_dim=65536", "--set", "num_heads=256"], "cannot fit the 16,000,000-byte cap even at 1 bit"),
    (["--set", "rope_base=0"], "rope_base=0.0 must be > 0"),
    (["--set", "tied_embed_init_std=-1"], "tied_embed_init_std and bigram_init_std must be >= 0"),
]


@pytest.mark.parametrize("preset", ["smoke", "cpu-demo", "v3", "baseline"])
@pytest.mark.parametrize("sets", [{}, {"unet_skips": "false", "bigram_buckets": "0", "num_layers": "5"}])
def test_param_count_is_the_models(preset, sets):
    """The bound on parameters is computed without building the model: it must count what GPT builds."""
    from jepagolf.model.gpt import count_params

    cfg = build_config(preset, sets)
    with torch.device("meta"):
        assert cfg.model.param_count() == count_params(GPT(cfg.model, cfg.train.train_seq_len))


@pytest.mark.parametrize("sets, message", CONFIG_CASES, ids=[" ".join(c[0]) for c in CONFIG_CASES])
def test_bad_config_values(tmp_path, sets, message, capsys):
    fails(["train", "--preset", "smoke", "--out", str(tmp_path / "run"), *sets], message, capsys)
    assert not (tmp_path / "run").exists()


def test_cuda_requested_without_cuda(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("DEVICE", "cuda")
    fails(["train", "--preset", "smoke", "--out", str(tmp_path / "run")],
          "device=cuda requested but CUDA is not available; use --set device=cpu", capsys)
    monkeypatch.delenv("DEVICE")
    fails(["eval", str(tmp_path / "x.lzma"), "--device", "cuda"], "CUDA is not available", capsys)


# ----------------------------------------------------------------------------- files and folders


def test_out_is_a_file(tmp_path, capsys):
    out = tmp_path / "file"
    out.write_text("keep me")
    fails(["train", "--preset", "smoke", "--out", str(out)], "is a file, not a folder", capsys)
    assert out.read_text() == "keep me"


def test_cache_is_a_file(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    cache.write_text("keep me")
    monkeypatch.setenv("JEPAGOLF_CACHE", str(cache))
    fails(["train", "--preset", "smoke", "--out", str(tmp_path / "run")], "is a file, not a folder", capsys)
    fails(["data", "demo", "--if-missing"], "is a file, not a folder", capsys)
    assert cache.read_text() == "keep me"
    monkeypatch.setenv("JEPAGOLF_CACHE", str(cache / "below"))  # a file in the middle of the path
    fails(["data", "demo", "--if-missing"], f"{cache} is a file, not a folder", capsys)


def enospc_on(fragment: str, monkeypatch, module: Any) -> None:
    """Make every file ``module`` opens whose name contains ``fragment`` fail its writes with ENOSPC."""
    real_open = open

    class FullDisk:
        def __init__(self, f: Any) -> None:
            self._f = f

        def write(self, data: Any) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name: str) -> Any:
            return getattr(self._f, name)

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: Any) -> None:
            self._f.close()

    def fake_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        f = real_open(file, *args, **kwargs)
        return FullDisk(f) if fragment in str(file) else f

    monkeypatch.setattr(module, "open", fake_open, raising=False)


def test_disk_full_while_writing_the_logs(tmp_path, tiny, monkeypatch, capsys):
    from jepagolf.train import logger

    enospc_on("train.log", monkeypatch, logger)
    run = tmp_path / "run"
    fails(smoke_train_args(tiny, run), f"{run / 'train.log'}: No space left on device", capsys)


def test_disk_full_while_writing_the_artifact(tmp_path, tiny, monkeypatch, capsys):
    from jepagolf.data import shards

    enospc_on(ARTIFACT_NAME, monkeypatch, shards)
    run = tmp_path / "run"
    fails(smoke_train_args(tiny, run, "gptq=false", iterations=1), f"{run / ARTIFACT_NAME}: No space left on device",
          capsys)
    assert not (run / ARTIFACT_NAME).exists() and not list(run.glob(".*.tmp"))  # no partial or temp file
    assert not (run / "summary.json").exists()


# ----------------------------------------------------------------------------- checkpoints and resume


@pytest.fixture(scope="module")
def resumable(tmp_path_factory, tiny) -> Path:
    """A finished smoke run with checkpoints at steps 2 and 4 (the reference every resume must match). One thread,
    pinned in its config: a module fixture is set up before a test's one_torch_thread, so it would otherwise train
    at whatever count the tests before it left, and a resume at another count is another run in fp32 rounding."""
    run = tmp_path_factory.mktemp("resumable") / "run"
    assert main(smoke_train_args(tiny, run, "gptq=false", "checkpoint_every_steps=2", "threads=1", iterations=4)) == 0
    return run


@pytest.fixture(scope="module")
def restorable(resumable, tiny, tmp_path_factory):
    """(trainer built for the run's config, the run's valid step-4 checkpoint as read from disk)."""
    from jepagolf.data.dataset import resolve_dataset
    from jepagolf.train.checkpoint import read_checkpoint
    from jepagolf.train.loop import Trainer
    from jepagolf.train.resume import resume_config
    from jepagolf.train.runtime import Runtime

    cfg = resume_config(resumable, {}, environ={})
    trainer = Trainer(cfg, Runtime(torch.device("cpu")), tmp_path_factory.mktemp("scratch"),
                      resolve_dataset(str(tiny), None, announce=False))
    trainer.logger.close()
    return trainer, read_checkpoint(resumable / "checkpoints" / "step_00000004.ckpt")


def meta_case(path: str, value: Any) -> Callable[[dict, dict], None]:
    """Set (or, with value DELETE, remove) the meta entry at a dotted path; list items by index."""
    def edit(tensors: dict, meta: dict) -> None:
        *head, last = [int(k) if k.isdigit() else k for k in path.split(".")]
        d = meta
        for k in head:
            d = d[k]
        if value is DELETE:
            del d[last]
        else:
            d[last] = value
    return edit


def tensor_case(name: str, value: Callable[[torch.Tensor], torch.Tensor] | None) -> Callable[[dict, dict], None]:
    """Replace (or, with None, remove) a tensor; ``name`` may be a prefix (the first match is used)."""
    def edit(tensors: dict, meta: dict) -> None:
        key = next(k for k in sorted(tensors) if k.startswith(name)) if name not in tensors else name
        if value is None:
            del tensors[key]
        else:
            tensors[key] = value(tensors[key])
    return edit


DELETE = object()
# Checkpoints with a valid checksum but bad content (the kinds: wrong shapes, missing keys, wrong
# dtypes, bad meta types): each must be refused with CheckpointError, so that resuming falls back.
BAD_CONTENT: list[tuple[str, Callable[[dict, dict], None]]] = [
    ("step a string", meta_case("step", "4")),
    ("elapsed_s a string", meta_case("elapsed_s", "fast")),
    ("elapsed_s negative", meta_case("elapsed_s", -1.0)),
    ("tokens_seen missing", meta_case("tokens_seen", DELETE)),
    ("skipped_steps negative", meta_case("skipped_steps", -1)),
    ("training_done a string", meta_case("training_done", "no")),
    ("artifact_ema_updates a float", meta_case("artifact_ema_updates", 1.5)),
    ("world_size null", meta_case("world_size", None)),
    ("logs missing", meta_case("logs", DELETE)),
    ("metrics size a string", lambda t, m: m["logs"].update({"metrics.jsonl": "x"})),
    ("stream missing", meta_case("stream", DELETE)),
    ("stream shard out of range", meta_case("stream.shard_index", 5)),
    ("stream position past the shard", meta_case("stream.position", 10**12)),
    ("stream over other shards", meta_case("stream.num_shards", 2)),
    ("python RNG too short", meta_case("rng.python.1", [1, 2, 3])),
    ("python RNG version", meta_case("rng.python.0", 99)),
    ("numpy RNG kind", meta_case("rng.numpy.0", "PCG64")),
    ("numpy RNG position a string", meta_case("rng.numpy.1", "x")),
    ("CUDA RNG states missing", meta_case("rng.cuda_devices", 2)),
    ("no optimizers", meta_case("optimizers", [])),
    ("optimizer type", meta_case("optimizers.0.type", "SGD")),
    ("param group params", meta_case("optimizers.0.param_groups.0.params", [0])),
    ("param group lr a string", meta_case("optimizers.0.param_groups.0.lr", "fast")),
    ("param group betas changed", meta_case("optimizers.0.param_groups.0.betas", [0.5, 0.5])),
    ("param group key added", meta_case("optimizers.1.param_groups.0.evil", 1)),
    ("optimizer scalars", meta_case("optimizers.0.scalars", {"0": {"step": 1}})),
    ("config hash", meta_case("config_hash", "0" * 12)),
    ("config of wrong types", lambda t, m: m.update(config={"model": {"num_layers": "x"}}, config_hash="x")),
    ("data fingerprint missing", meta_case("data", {})),
    ("model tensor shape", tensor_case("model/gpt.tok_emb.weight", lambda t: t[:-1])),
    ("model tensor dtype", tensor_case("model/gpt.tok_emb.weight", lambda t: t.double())),
    ("model tensor missing", tensor_case("model/gpt.blocks.0.attn.c_q.weight", None)),
    ("target tensor NaN", tensor_case("target/", lambda t: torch.full_like(t, float("nan")))),
    ("artifact EMA tensor missing", tensor_case("artifact_ema/", None)),
    ("unknown tensor", lambda t, m: t.update({"evil/x": torch.zeros(1)})),
    ("optimizer state shape", tensor_case("optim/0/0/exp_avg", lambda t: t.flatten()[:3])),
    ("optimizer state partial", tensor_case("optim/0/0/exp_avg_sq", None)),
    ("optimizer step an int", tensor_case("optim/0/0/step", lambda t: t.long())),
    ("optimizer parameter out of range", lambda t, m: t.update({"optim/1/999/momentum_buffer": torch.zeros(1)})),
    ("optimizer state unknown", lambda t, m: t.update({"optim/0/0/evil": torch.zeros(1)})),
    ("torch RNG dtype", tensor_case("rng/torch", lambda t: t.float())),
    ("numpy RNG keys shape", tensor_case("rng/numpy_keys", lambda t: t[:10])),
]


@pytest.mark.parametrize("case, spoil", BAD_CONTENT, ids=[c[0] for c in BAD_CONTENT])
def test_bad_checkpoint_content_is_refused_before_anything_is_loaded(restorable, case, spoil):
    from jepagolf.train.checkpoint import CheckpointError, DataChanged, LoadedCheckpoint
    from jepagolf.train.resume import check_restorable

    trainer, (tensors, meta) = restorable
    tensors, meta = dict(tensors), json.loads(json.dumps(meta))  # JSON types, as read from a file
    spoil(tensors, meta)
    ckpt = LoadedCheckpoint(Path("step_00000004.ckpt"), 4, tensors, meta)
    with pytest.raises(CheckpointError) as info:
        check_restorable(trainer, ckpt, Path("RUN"))
    assert not isinstance(info.value, DataChanged)


def test_a_good_checkpoint_passes_and_restores(restorable):
    from jepagolf.train.checkpoint import LoadedCheckpoint
    from jepagolf.train.resume import check_restorable, restore_state

    trainer, (tensors, meta) = restorable
    ckpt = LoadedCheckpoint(Path("step_00000004.ckpt"), 4, tensors, meta)
    check_restorable(trainer, ckpt, Path("RUN"))
    restore_state(trainer, ckpt)
    assert trainer.step == 4 and torch.equal(trainer.model.gpt.tok_emb.weight, tensors["model/gpt.tok_emb.weight"])


def test_resume_falls_back_past_a_checkpoint_with_bad_content(tmp_path, resumable, capsys):
    from jepagolf.train.checkpoint import read_checkpoint, write_checkpoint

    run = tmp_path / "run"
    shutil.copytree(resumable, run)
    newest = run / "checkpoints" / "step_00000004.ckpt"
    tensors, meta = read_checkpoint(newest)
    tensors["model/gpt.tok_emb.weight"] = tensors["model/gpt.tok_emb.weight"][:-1]  # valid checksum, wrong shape
    meta["optimizers"][0]["type"] = "SGD"
    write_checkpoint(newest, tensors, meta)
    (run / ARTIFACT_NAME).unlink()
    assert main(["train", "--resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert "step_00000004.ckpt: does not fit this run: optimizer 0 is Adam, the checkpoint's is not" in err
    assert "falling back to the previous checkpoint step_00000002.ckpt" in err
    assert (run / ARTIFACT_NAME).read_bytes() == (resumable / ARTIFACT_NAME).read_bytes()  # the same run, exactly


@pytest.mark.parametrize("split", ["train", "val"])
def test_resume_refuses_other_data_of_the_same_names_and_sizes(tmp_path, resumable, tiny, split, capsys):
    from jepagolf.data.shards import load_shard, write_shard

    other = tmp_path / "other"
    shutil.copytree(tiny, other)
    shard = other / f"tiny_{split}_000000.bin"
    write_shard(shard, np.asarray(load_shard(shard))[::-1].copy())  # same tokens, other order
    assert shard.stat().st_size == (tiny / shard.name).stat().st_size
    run = tmp_path / "run"
    shutil.copytree(resumable, run)
    fails(["train", "--resume", str(run), "--data", str(other)],
          f"the training data changed since the checkpoint ({shard.name} has other content", capsys)


@pytest.mark.parametrize("content, message", [
    (None, "more than this file can be"),  # a 5 MiB sparse file: refused by its size, never read
    (b"\xff\xfe{}", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON (nested too deeply)"),
    (b"[1, 2]", "expected a JSON object, found list"),
])
def test_the_json_beside_outputs_is_read_bounded(tmp_path, content, message, capsys):
    """Every JSON file the tool reads back (summaries, calibrations, manifests, stamps) goes through
    jsonfile.read_json_object; a crafted one gets one line naming it, whichever command reads it."""
    from jepagolf.jsonfile import JsonFileError, read_json_object

    path = tmp_path / "summary.json"
    if content is None:
        with open(path, "wb") as f:
            f.truncate(5 << 20)
    else:
        path.write_bytes(content)
    with pytest.raises(JsonFileError, match=re.escape(message)):
        read_json_object(path)
    # A run folder whose summary.json is crafted: `report` says so in one line.
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"kind": "train", "step": 1, "train_loss": 1.0}) + "\n")
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "plots")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message.split(" (")[0] in err[0] and "summary.json" in err[0]


# ----------------------------------------------------------------------------- issue 22: sizes and file types


def sparse(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that costs no disk (a hole)."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def test_a_huge_tokenizer_is_refused_unread(tmp_path, tiny, capsys):
    """A 2 GB tokenizer file made `train --tokenizer` die with SIGSEGV at 4 GB; now its size refuses it."""
    from jepagolf.data.tokenizer import MAX_TOKENIZER_BYTES, TokenizerError, load_tokenizer

    big = sparse(tmp_path / "big.model", 2 << 30)
    fails(smoke_train_args(tiny, tmp_path / "run") + ["--tokenizer", str(big)],
          "more than a SentencePiece model of at most 65,536 pieces can be", capsys)
    padded = tmp_path / "padded.model"  # a real model padded with zeros past the bound
    padded.write_bytes((tiny / "tokenizer.model").read_bytes() + bytes(MAX_TOKENIZER_BYTES))
    with pytest.raises(TokenizerError, match="not reading it"):
        load_tokenizer(padded)


def test_a_huge_file_named_like_a_checkpoint_is_passed_over_unread(tmp_path, resumable, capsys, monkeypatch):
    """Bounded by what this run's checkpoint can be (resume.max_checkpoint_bytes), checked before reading."""
    from jepagolf.train import checkpoint

    run = tmp_path / "run"
    shutil.copytree(resumable, run)
    (run / ARTIFACT_NAME).unlink()
    # 256 MiB, over this smoke run's bound (~70 MB) and far under the 2.6 GB of the largest model's: the
    # run's own bound is what refuses it. (Any size is refused alike; a 5 GiB one is read whole without it.)
    sparse(run / "checkpoints" / "step_00000099.ckpt", 256 << 20)
    monkeypatch.setattr(checkpoint, "MAX_CHECKPOINT_BYTES", 1)  # the run's bound must be the one in use
    assert main(["train", "--resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert "step_00000099.ckpt: 268,435,456 bytes, more than this run's checkpoint can be" in err
    assert "falling back to the previous checkpoint step_00000004.ckpt" in err
    assert (run / ARTIFACT_NAME).read_bytes() == (resumable / ARTIFACT_NAME).read_bytes()


def test_special_files_are_refused_by_type_never_opened(tmp_path, tiny, capsys):
    """A FIFO among `data build` inputs hung it forever; every bounded read refuses one by its type."""
    import os

    from jepagolf.data.tokenizer import TokenizerError, load_tokenizer
    from jepagolf.jsonfile import JsonFileError, read_json_object

    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "a.txt").write_text("a document long enough to count. " * 20)
    os.mkfifo(inp / "b.txt")
    fails(["data", "build", "--input", str(inp), "--out", str(tmp_path / "o"), "--quiet"],
          "b.txt: a FIFO (named pipe), not a regular file", capsys)
    fails(["data", "build", "--input", str(inp / "b.txt"), "--out", str(tmp_path / "o"), "--quiet"],
          "b.txt: a FIFO (named pipe), not a regular file", capsys)
    with pytest.raises(JsonFileError, match="is a FIFO"):
        read_json_object(inp / "b.txt")
    with pytest.raises(TokenizerError, match="is a FIFO"):
        load_tokenizer(inp / "b.txt")
    data = tmp_path / "data"
    shutil.copytree(tiny, data)
    os.mkfifo(data / "manifest.json")  # read by the fingerprint and by `data check`: refused, not waited on
    from jepagolf.data.fingerprint import manifest_hashes

    assert manifest_hashes(data) == {}
    # `data check` reports it (an unreadable manifest is a problem, issue 22 item 3), without waiting on it.
    assert main(["data", "check", str(data), "--quiet"]) == 1
    assert "is a FIFO (named pipe), not a regular file" in capsys.readouterr().err


def test_metrics_lines_are_bounded(tmp_path):
    from jepagolf.research.ablate import AblationError
    from jepagolf.research.ablate_report import last_diagnostics

    sparse(tmp_path / "metrics.jsonl", 300 << 20)  # one 300 MB line of zero bytes
    with pytest.raises(AblationError, match="line 1 is longer than 1,048,576 bytes"):
        last_diagnostics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text('{"kind": "train", "pred_erank": 3.0}\n{garbled\n')
    with pytest.raises(AblationError, match="line 2 is not a JSON row"):
        last_diagnostics(tmp_path)


def test_a_rendezvous_without_the_other_ranks_times_out_in_one_line(tmp_path, tiny, monkeypatch, capsys):
    import socket

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    fails(smoke_train_args(tiny, tmp_path / "run"), "MASTER_ADDR and MASTER_PORT are not set", capsys)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    monkeypatch.setenv("JEPAGOLF_RENDEZVOUS_TIMEOUT", "1")
    line = fails(smoke_train_args(tiny, tmp_path / "run"), "rank 0 waited 1 s at 127.0.0.1", capsys)
    assert "did not join" in line and "torchrun" in line


def test_resume_counts_a_huge_metrics_tail_in_blocks(tmp_path):
    """The rows written after a checkpoint are dropped on resume; a metrics.jsonl grown to hundreds of MB
    (or a sparse one) is counted in 1 MiB blocks, never read whole."""
    import tracemalloc

    from jepagolf.train.resume import truncate_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"kind": "train"}\n')
    keep = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(256 << 20)
        f.seek(-1, 2)
        f.write(b"\n")
    tracemalloc.start()
    try:
        assert truncate_metrics(tmp_path, {"logs": {"metrics.jsonl": keep}}) == 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20 and path.stat().st_size == keep
# ----------------------------------------------------------------------------- issue 22: wrong data, bad files

@pytest.mark.parametrize("case, edit, message", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_size_refuses_an_artifact_that_eval_refuses(tmp_path, artifact, case, edit, message, capsys):
    path = tmp_path / ARTIFACT_NAME
    path.write_bytes(edit_header(artifact, edit))
    line = fails(["size", "--artifact", str(path)], message, capsys)
    assert line.endswith("; jepagolf eval refuses this artifact"), line


def _run_with_metrics(folder: Path, content: bytes) -> Path:
    folder.mkdir()
    (folder / "metrics.jsonl").write_bytes(content)
    return folder


@pytest.mark.parametrize("case, content, message", [
    ("garbage", bytes(range(256)) * 8, "metrics.jsonl:1: not JSON"),
    ("a 2 MB line", b'{"kind": "val", "x": "' + b"x" * (2 << 20) + b'"}\n', "metrics.jsonl:1: a line longer than"),
    ("100k deep", b"[" * 100_000 + b"]" * 100_000 + b"\n", "metrics.jsonl:1: nested too deeply"),
    ("not an object", b'{"kind": "val", "step": 1, "val_bpb": 3.0}\n[1, 2]\n', "metrics.jsonl:2: a list, not a JSON"),
])
def test_report_refuses_a_bad_metrics_file_in_one_line(tmp_path, case, content, message, capsys):
    pytest.importorskip("matplotlib")
    run = _run_with_metrics(tmp_path / "run", content)
    fails(["report", str(run), "--out", str(tmp_path / "plots")], message, capsys)


def test_report_leaves_out_non_finite_and_wrongly_typed_values(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    rows = [b'{"kind": "val", "step": 1, "val_bpb": NaN}', b'{"kind": "val", "step": 2, "val_bpb": Infinity}',
            b'{"kind": "val", "step": "3", "val_bpb": "x"}', b'{"kind": ["val"], "step": {}, "val_bpb": [1]}',
            b'{"kind": "train", "step": true, "ce_loss": -Infinity, "jepa_grad_share_x": "a"}']
    run = _run_with_metrics(tmp_path / "run", b"\n".join(rows) + b"\n")
    (run / "summary.json").write_text('{"seed": [1], "roundtrip_val_bpb": "x", "steps": NaN}')
    assert main(["report", str(run), "--out", str(tmp_path / "plots")]) == 0
    assert (tmp_path / "plots" / "val_bpb.png").is_file()


@pytest.mark.parametrize("content", [bytes(range(256)) * 20, b"rung,arm\x00,seed\n1,2\x00,3\n"])
def test_ladder_add_points_refuses_a_binary_file_in_one_line(tmp_path, content, capsys):
    points = tmp_path / "runs.csv"
    points.write_bytes(content)
    fails(["ladder", "--smoke", "--add-points", str(points), "--out", str(tmp_path / "ladder")],
          f"--add-points {points}: not a ladder runs.csv", capsys)
    assert not (tmp_path / "ladder").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_ladder_add_points_refuses_a_fifo_without_waiting_on_it(tmp_path, capsys):
    points = tmp_path / "runs.csv"
    os.mkfifo(points)  # opened for reading the usual way, this would wait for a writer forever
    fails(["ladder", "--smoke", "--add-points", str(points), "--out", str(tmp_path / "ladder")],
          f"--add-points {points} is a FIFO (named pipe), not a regular file", capsys)
    assert not (tmp_path / "ladder").exists()


@pytest.mark.parametrize("case, manifest, message", [
    ("over 4 MiB", None, "more than this file can be"),
    ("100k deep", b"[" * 100_000 + b"]" * 100_000, "not valid JSON (nested too deeply)"),
    ("not JSON", b"\xff\xfe{", "not valid JSON"),
    ("files not a mapping", b'{"format": "jepagolf-corpus", "files": [1]}', "malformed jepagolf manifest"),
    ("an entry not an object", b'{"format": "jepagolf-corpus", "files": {"tokenizer.model": 5}}',
     "malformed jepagolf manifest"),
])
def test_data_check_reports_an_unreadable_manifest(tmp_path, tiny, case, manifest, message, capsys):
    data = tmp_path / "data"
    shutil.copytree(tiny, data)
    path = data / "manifest.json"
    if manifest is None:  # 100 MB, sparse: refused by its size, never read
        with open(path, "wb") as f:
            f.truncate(100 << 20)
    else:
        path.write_bytes(manifest)
    assert main(["data", "check", str(data), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "check: 1 problem(s)" in captured.out and "Traceback" not in captured.err
    assert f"problem: {path}" in captured.err and message in captured.err, captured.err


def test_resume_refuses_another_tokenizer_of_the_same_size(tmp_path, resumable, tiny, capsys):
    from helpers import other_tokenizer

    other = tmp_path / "other"
    shutil.copytree(tiny, other)
    other_tokenizer(tiny / "tokenizer.model", other / "tokenizer.model")
    run = tmp_path / "run"
    shutil.copytree(resumable, run)
    (run / ARTIFACT_NAME).unlink()  # unfinished, so that the resume gets as far as the data
    fails(["train", "--resume", str(run), "--data", str(other)],
          f"the tokenizer {other / 'tokenizer.model'} has other content", capsys)


def test_the_run_records_its_tokenizer_and_eval_checks_it(tmp_path, resumable, tiny, capsys):
    from helpers import other_tokenizer

    from jepagolf.data.fingerprint import tokenizer_sha256

    summary = json.loads((resumable / "summary.json").read_text())
    assert summary["tokenizer_sha256"] == tokenizer_sha256(tiny / "tokenizer.model")
    other = tmp_path / "other"
    shutil.copytree(tiny, other)
    other_tokenizer(tiny / "tokenizer.model", other / "tokenizer.model")
    fails(["eval", str(resumable / ARTIFACT_NAME), "--data", str(other), "--device", "cpu"],
          "is not the tokenizer", capsys)
    assert main(["eval", str(resumable / ARTIFACT_NAME), "--data", str(tiny), "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["tokenizer_check"].startswith("same as the run's")
    # Away from its run folder the artifact cannot say: eval says so, and scores.
    alone = tmp_path / "alone" / ARTIFACT_NAME
    alone.parent.mkdir()
    shutil.copy(resumable / ARTIFACT_NAME, alone)
    assert main(["eval", str(alone), "--data", str(other), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "warning: cannot check that" in captured.err
    assert json.loads(captured.out)["tokenizer_check"].startswith("unchecked")


def test_resume_of_a_finished_run_rewrites_nothing(tmp_path, resumable, capsys):
    run = tmp_path / "run"
    shutil.copytree(resumable, run)
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.iterdir() if p.is_file()}
    assert main(["train", "--resume", str(run)]) == 0
    assert "is a finished run" in capsys.readouterr().err
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.iterdir() if p.is_file()
            and p.name != ".jepagolf.lock"} == {k: v for k, v in before.items() if k != ".jepagolf.lock"}


def test_output_paths_that_are_files_are_refused_before_the_long_work(tmp_path, tiny, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    run = tmp_path / "run"
    fails([*smoke_train_args(tiny, run), "--dump-rank-state", str(a_file)], f"--dump-rank-state {a_file}: ", capsys)
    assert not run.exists()
    fails(["ladder", "--smoke", "--out", str(a_file / "x")], "is a file, not a folder", capsys)
    fails(["ablate", "--arm", "a:", "--out", str(a_file)], "is a file, not a folder", capsys)
    assert a_file.read_text() == "mine"


def test_a_failed_build_write_names_the_output_folder_not_the_hidden_one(tmp_path, demo_data, capsys):
    """A write cut short while `data build` fills its hidden build folder (disk full; here the file-size limit,
    which fails writes the same way) names the file by its place in --out, one line, nothing left behind."""
    import resource
    import signal

    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.txt").write_text("A sentence of some words, repeated for a while. " * 4000)
    out = tmp_path / "out"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (32 << 10, hard))
    try:
        line = fails(["data", "build", "--input", str(inputs), "--out", str(out), "--tokenizer",
                      str(demo_data.tokenizer), "--workers", "1", "--val-docs", "1", "--blank-line-docs", "--quiet"],
                     f"{out}/", capsys)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert "File too large" in line and f"/.{out.name}" not in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
