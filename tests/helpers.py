"""Helpers shared by several test files (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import random
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from jepagolf.data.shards import load_shard, write_shard
from jepagolf.jepa.objective import JepaLM


def tiny_dataset(root: Path, demo, train_tokens: int = 20_000, val_tokens: int = 4097) -> Path:
    """A dataset folder holding the first tokens of the demo corpus's splits and its tokenizer."""
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train_tokens), ("val", val_tokens)):
        tokens = np.asarray(load_shard(demo.data_dir / f"demo_{split}_000000.bin")[:n])
        write_shard(root / f"tiny_{split}_000000.bin", tokens)
    shutil.copy(demo.tokenizer, root / "tokenizer.model")
    return root


def smoke_train_args(data: Path, out: Path, *sets: str, iterations: int = 2) -> list[str]:
    """`jepagolf train` arguments for a short smoke run on ``data`` into ``out``; ``sets`` are extra
    KEY=VALUE overrides, applied after (so they win over) the defaults here."""
    args = ["train", "--preset", "smoke", "--data", str(data), "--out", str(out), "--set", f"iterations={iterations}",
            "--set", "val_loss_every=0"]
    for s in sets:
        args += ["--set", s]
    return args


def live_model(cfg) -> JepaLM:
    """A JepaLM whose zero-initialised weights are perturbed, so that every path carries signal."""
    torch.manual_seed(0)
    model = JepaLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


# ----- the fixed tiny dataset of the baseline parity test (docs/results/baseline-parity/README.md)
PARITY_SEED = 20240520
PARITY_VOCAB = 1024
PARITY_TRAIN_TOKENS = 32_768
PARITY_VAL_TOKENS = 4_096


def parity_tokens(n: int, seed: int) -> np.ndarray:
    """``n`` tokens of a random sparse Markov chain (each token has 4 possible successors), drawn with
    ``random.Random(seed).getrandbits`` only, so the stream is the same on every Python and NumPy."""
    rng = random.Random(seed)
    successors = [[rng.getrandbits(10) for _ in range(4)] for _ in range(PARITY_VOCAB)]
    out, tok = [], 1
    for _ in range(n):
        tok = successors[tok][rng.getrandbits(2)]
        out.append(tok)
    return np.asarray(out, dtype=np.int64)


def write_parity_shards(folder: Path, tokenizer: Path) -> Path:
    """The parity dataset in ``folder``: one train and one val shard (the first 32,768 and the next 4,096
    tokens of one chain) and a copy of ``tokenizer``
    (any 1024-piece model: it only enters val_bpb, never the training losses)."""
    folder.mkdir(parents=True, exist_ok=True)
    tokens = parity_tokens(PARITY_TRAIN_TOKENS + PARITY_VAL_TOKENS, PARITY_SEED)
    write_shard(folder / "fineweb_train_000000.bin", tokens[:PARITY_TRAIN_TOKENS])
    write_shard(folder / "fineweb_val_000000.bin", tokens[PARITY_TRAIN_TOKENS:])
    shutil.copyfile(tokenizer, folder / "tokenizer.model")
    return folder


def other_tokenizer(src: Path, dest: Path) -> Path:
    """A copy of the SentencePiece model ``src`` with the same vocab size but two pieces of different
    lengths swapped: the same token ids then stand for other bytes (another tokenizer of the same size)."""
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    proto = model_pb2.ModelProto()
    proto.ParseFromString(Path(src).read_bytes())
    normal = [p for p in proto.pieces if p.type == model_pb2.ModelProto.SentencePiece.NORMAL]
    short = next(p for p in normal if len(p.piece) == 1)
    long = next(p for p in normal if len(p.piece) >= 4)
    short.piece, long.piece = long.piece, short.piece
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(proto.SerializeToString())
    return dest


def finish_gloo_rank(rank: int, out_dir: str) -> None:
    """The end of a gloo test worker, once it has saved its result: a marker that it did, a barrier (neither rank
    tears gloo down while the other still talks), then the teardown."""
    Path(out_dir, f"rank{rank}.done").touch()
    dist.barrier()
    dist.destroy_process_group()


def spawn_gloo(worker: Callable[..., None], args: tuple, nprocs: int, out_dir: Path) -> None:
    """mp.spawn for the gloo tests. Gloo's teardown can abort a process that has finished its work ("terminate
    called without an active exception", SIGABRT, from a C++ thread left running at teardown; seen twice in this
    project's CI). Such an abort passes only when every rank had saved its result (finish_gloo_rank's marker);
    any other failure, or an abort before that, fails the test. The caller then checks the saved results as
    before, so a result cut short by the abort fails there."""
    try:
        mp.spawn(worker, args=args, nprocs=nprocs, join=True)
    except mp.ProcessExitedException as e:
        done = all((out_dir / f"rank{r}.done").is_file() for r in range(nprocs))
        if e.signal_name != "SIGABRT" or not done:
            raise
        print(f"gloo teardown aborted rank {e.error_index} after every rank had saved its result",
              file=sys.stderr)
