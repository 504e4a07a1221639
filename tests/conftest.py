"""Shared fixtures: an isolated cache, and one demo corpus built per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Tests never read or write the user's cache; ensure_demo_corpus builds here on first use.
    cache = tmp_path_factory.mktemp("jepagolf-cache")
    old = os.environ.get("JEPAGOLF_CACHE")
    os.environ["JEPAGOLF_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("JEPAGOLF_CACHE", None)
    else:
        os.environ["JEPAGOLF_CACHE"] = old


def _torch_threads(n: int):
    """torch's CPU threads set to ``n`` for a test, and put back after it, whatever the test set meanwhile."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: CLI runs use the same kernels in-process and in subprocesses,
    and leave the shared cores to the others."""
    yield from _torch_threads(1)


@pytest.fixture
def two_torch_threads():
    """Two torch threads for the test: what a race between threads (the compiled embedding backward's) needs."""
    yield from _torch_threads(2)


@pytest.fixture(scope="session")
def demo_data(_isolated_cache: Path):
    from jepagolf.data.corpus import ensure_demo_corpus

    return ensure_demo_corpus(progress=False)


@pytest.fixture(scope="session")
def tiny_data(demo_data, tmp_path_factory) -> Path:
    """The demo corpus cut down (60k train, 4k validation tokens) so that each smoke run's three exact
    evaluations take a fraction of a second (the ablation and ladder tests)."""
    import shutil

    import numpy as np

    from jepagolf.data.shards import list_shards, load_tokens, write_shard

    out = tmp_path_factory.mktemp("tiny_data")
    train = load_tokens(list_shards(demo_data.data_dir, "train"), 1024)
    val = load_tokens(list_shards(demo_data.data_dir, "val"), 1024)
    write_shard(out / "tiny_train_000000.bin", np.asarray(train[:60_000]))
    write_shard(out / "tiny_val_000000.bin", np.asarray(val[: 64 * 64 + 1]))
    shutil.copy(demo_data.tokenizer, out / "tokenizer.model")
    return out
