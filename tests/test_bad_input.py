"""Bad input through the CLI: exit status 2, one clear line on stderr, no traceback.

The table in docs/errors.md lists the same cases; the checkpoint and resume cases are in
test_reliability.py.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers import smoke_train_args

from jepagolf.cli import main
from jepagolf.data.shards import load_shard, write_shard

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def dataset(root: Path, demo, train: np.ndarray | None = None, val: np.ndarray | None = None) -> Path:
    """A tiny dataset folder (a slice of the demo corpus), with optional replacement shards."""
    root.mkdir(parents=True)
    if train is None:
        train = np.asarray(load_shard(demo.data_dir / "demo_train_000000.bin")[:20_000])
    if val is None:
        val = np.asarray(load_shard(demo.data_dir / "demo_val_000000.bin")[:4097])
    write_shard(root / "tiny_train_000000.bin", train)
    write_shard(root / "tiny_val_000000.bin", val)
    shutil.copy(demo.tokenizer, root / "tokenizer.model")
    return root


def patch_word(path: Path, index: int, value: int) -> None:
    data = bytearray(path.read_bytes())
    data[4 * index : 4 * index + 4] = int(value).to_bytes(4, "little", signed=True)
    path.write_bytes(bytes(data))


def run_fails(args: list[str], message: str, capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err and err.startswith("error: "), err
    return err


train_args = smoke_train_args


# (case, how to spoil the dataset, expected message)
DATA_CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("wrong magic", lambda d: patch_word(d / "tiny_val_000000.bin", 0, 12345),
     "wrong magic number 12345 (expected 20240520); not a parameter-golf token shard"),
    ("wrong version", lambda d: patch_word(d / "tiny_train_000000.bin", 1, 7),
     "unsupported shard version 7 (expected 1)"),
    ("truncated shard", lambda d: (d / "tiny_train_000000.bin").write_bytes(
        (d / "tiny_train_000000.bin").read_bytes()[:-100]),
     "truncated: expected 41024 bytes for 20000 tokens, found 40924; re-download or rebuild this shard"),
    ("header only", lambda d: (d / "tiny_val_000000.bin").write_bytes(b"\0" * 100),
     "shorter than the 1024-byte shard header"),
    ("no val shards", lambda d: (d / "tiny_val_000000.bin").unlink(),
     "no shards for split 'val'"),
    ("no tokenizer", lambda d: (d / "tokenizer.model").unlink(),
     "no tokenizer found for"),
]


@pytest.mark.parametrize("case, spoil, message", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_bad_dataset(tmp_path, demo_data, capsys, case, spoil, message):
    data = dataset(tmp_path / "data", demo_data)
    spoil(data)
    err = run_fails(train_args(data, tmp_path / "run"), message, capsys)
    assert str(data) in err  # the message names the file or folder


def test_missing_or_empty_dataset_folder(tmp_path, capsys):
    run_fails(train_args(tmp_path / "nope", tmp_path / "run"), f"dataset folder {tmp_path / 'nope'} does not exist",
              capsys)
    (tmp_path / "empty").mkdir()
    run_fails(train_args(tmp_path / "empty", tmp_path / "run"),
              f"{tmp_path / 'empty'}: no shards for split 'train' (expected files named <prefix>_train_NNNNNN.bin)",
              capsys)


def test_token_id_beyond_the_vocab(tmp_path, demo_data, capsys):
    train = np.asarray(load_shard(demo_data.data_dir / "demo_train_000000.bin")[:20_000]).copy()
    train[777] = 2000
    data = dataset(tmp_path / "data", demo_data, train=train)
    run_fails(train_args(data, tmp_path / "run"),
              f"{data / 'tiny_train_000000.bin'}: token id 2000 at position 777 is >= vocab size 1024", capsys)


def test_tokenizer_vocab_differs_from_the_model(tmp_path, demo_data, capsys):
    data = dataset(tmp_path / "data", demo_data)
    run_fails(train_args(data, tmp_path / "run", "vocab_size=512"),
              "tokenizer vocab size is 1024 but 512 was expected", capsys)
    run_fails(train_args(data, tmp_path / "run") + ["--tokenizer", str(tmp_path / "none.model")],
              f"tokenizer {tmp_path / 'none.model'} does not exist", capsys)
    (tmp_path / "junk.model").write_bytes(b"not a model")
    run_fails(train_args(data, tmp_path / "run") + ["--tokenizer", str(tmp_path / "junk.model")],
              "not a valid SentencePiece model", capsys)


def test_validation_split_shorter_than_one_sequence(tmp_path, demo_data, capsys):
    val = np.asarray(load_shard(demo_data.data_dir / "demo_val_000000.bin")[:40])
    data = dataset(tmp_path / "data", demo_data, val=val)
    run_fails(train_args(data, tmp_path / "run"),
              "has 40 tokens, fewer than one sequence (train_seq_len + 1 = 65)", capsys)
    data = dataset(tmp_path / "data2", demo_data)  # 4097 validation tokens
    run_fails(train_args(data, tmp_path / "run2", "eval_seq_len=8192"),
              "has 4097 tokens, fewer than one sequence (eval_seq_len + 1 = 8193); add validation documents or "
              "lower eval_seq_len", capsys)


CONFIG_CASES = [
    (["train_seq_len=16", "jepa_mask_frac=0", "jepa_num_spans=4"],
     "train_seq_len=16 is too short for jepa_num_spans=4 spans of up to 4 tokens with gaps"),
    (["model_dim=66"], "model_dim=66 is not divisible by num_heads=4"),
    (["num_kv_heads=3"], "num_heads=4 is not divisible by num_kv_heads=3"),
    (["model_dim=36"], "head dim model_dim/num_heads=9 is odd"),
    (["num_layer=2"], "unknown config key 'num_layer'; did you mean 'num_layers'?"),
    (["train_batch_tokens=0"], "train_batch_tokens=0 must be > 0"),
    (["micro_batch_tokens=-512"], "micro_batch_tokens=-512 must be > 0"),
    (["train_batch_tokens=1000"], "train_batch_tokens=1000 is not a multiple of micro_batch_tokens=512"),
    (["iterations=ten"], "iterations='ten': expected a value of type int"),
    (["checkpoint_keep=0"], "checkpoint_keep=0 must be >= 1"),
    (["export_scheme=int4"], "export_scheme='int4': use int6-lzma or int8-zlib"),
    (["export_scheme=int8-zlib"], "gptq=true rounds the int6-lzma export; export_scheme=int8-zlib rounds to nearest"),
    (["batch_slicing=x"], "batch_slicing='x': use shared or reference"),
    (["checkpoint_every_steps=-1"], "checkpoint_every_steps, checkpoint_every_seconds and skip_nonfinite_steps "
                                    "must be >= 0"),
    (["eval_stride=65"], "eval_stride=65 is longer than the evaluation window eval_seq_len=64: use 1..64"),
    (["eval_seq_len=128", "eval_stride=129"], "eval_stride=129 is longer than the evaluation window "
                                              "eval_seq_len=128"),
    (["eval_stride=-64"], "eval_seq_len=0 and eval_stride=-64 must be >= 0"),
]


@pytest.mark.parametrize("sets, message", CONFIG_CASES, ids=[c[0][0] for c in CONFIG_CASES])
def test_bad_config(tmp_path, sets, message, capsys):
    run_fails(train_args(tmp_path / "unused", tmp_path / "run", *sets), message, capsys)
    assert not (tmp_path / "run").exists()  # rejected before anything is written


def test_bad_config_from_the_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NUM_HEADS", "5")
    run_fails(train_args(tmp_path / "unused", tmp_path / "run"), "model_dim=64 is not divisible by num_heads=5",
              capsys)


def test_cap_too_short_for_the_gptq_calibration(tmp_path, demo_data, capsys):
    data = dataset(tmp_path / "d", demo_data)
    run_fails(train_args(data, tmp_path / "run", "max_wallclock_seconds=0.0001"),
              "max_wallclock_seconds=0.0001 leaves no training time: GPTQ calibration on 8192 training tokens "
              "needs a measured", capsys)


# ----------------------------------------------------------------------------- bad flags (issue 22)
# Checked as the flags are parsed: one `error: argument --FLAG: ...` line, status 2, nothing created.
BAD_FLAGS: list[tuple[list[str], str]] = [
    (["data", "demo", "--vocab-size", "0"], "argument --vocab-size: 0 must be in 260..65536"),
    (["data", "demo", "--vocab-size", "3"], "argument --vocab-size: 3 must be in 260..65536"),
    (["data", "demo", "--vocab-size", "1000000"], "argument --vocab-size: 1000000 must be in 260..65536"),
    (["export", "RUN", "--out", "OUT", "--device", "tpu:3"], "argument --device: 'tpu:3': use auto, cpu, cuda"),
    (["eval", "ART", "--device", "tpu:7"], "argument --device: 'tpu:7': use auto, cpu, cuda"),
    (["bench", "--threads", "-4"], "argument --threads: -4 must be in 0..4096"),
    (["eval", "ART", "--batch-tokens", "-1"], "argument --batch-tokens: -1 must be in 1..134,217,728"),
    (["eval", "ART", "--batch-tokens", str(-(2**40))], "argument --batch-tokens: -1099511627776 must be"),
    (["eval", "ART", "--batch-tokens", "1e3"], "argument --batch-tokens: '1e3' is not an integer"),
    (["data", "build", "--input", "IN", "--out", "OUT", "--workers", "-1"], "argument --workers: -1 must be in 1.."),
    (["data", "research", "--workers", "0"], "argument --workers: 0 must be in 1.."),
    (["size", "--cap-bytes", "-1"], "argument --cap-bytes: -1 must be a positive integer"),
    (["export", "RUN", "--out", "OUT", "--cap-bytes", "-5"], "argument --cap-bytes: -5 must be a positive integer"),
    (["ladder", "--smoke", "--calib-steps", "0"], "argument --calib-steps: 0 must be a positive integer"),
    (["ablate", "--arm", "a:", "--wallclock-slack", "nan"], "argument --wallclock-slack: nan must be a finite"),
    (["ladder", "--smoke", "--max-epochs", "0"], "argument --max-epochs: 0 must be > 0"),
]


@pytest.mark.parametrize("args, message", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flags_are_refused_as_they_are_parsed(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    err = run_fails(args, message, capsys)
    assert err.count("\n") == 1 and "usage:" not in err, err
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_cuda_device_flags_without_cuda(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for args in (["export", "RUN", "--out", "OUT", "--device", "cuda"], ["eval", "ART", "--device", "cuda:0"]):
        run_fails(args, "requested but CUDA is not available; use --device cpu", capsys)


@pytest.mark.parametrize("name, value, message", [
    ("WORLD_SIZE", "two", "WORLD_SIZE='two' is not an integer"),
    ("WORLD_SIZE", "0", "WORLD_SIZE=0 must be in 1.."),
    ("RANK", "-1", "RANK=-1 must be in 0.."),
    ("RANK", "3", "RANK=3 must be < WORLD_SIZE=1"),
])
def test_bad_torchrun_variables_are_one_line(tmp_path, monkeypatch, capsys, name, value, message):
    monkeypatch.setenv(name, value)
    run_fails(["eval", str(tmp_path / "never.lzma"), "--device", "cpu"], message, capsys)


def test_ctrl_c_while_importing_is_one_line(monkeypatch, capsys):
    """A Ctrl-C before the CLI is even imported (torch takes seconds to import) ends in `interrupted`."""
    import sys

    from jepagolf.__main__ import run

    class Interrupting:
        def find_spec(self, name, path=None, target=None):
            if name == "jepagolf.cli":
                raise KeyboardInterrupt
            return None

    monkeypatch.delitem(sys.modules, "jepagolf.cli")
    monkeypatch.setattr(sys, "meta_path", [Interrupting(), *sys.meta_path])
    assert run() == 130
    assert capsys.readouterr().err == "interrupted\n"
