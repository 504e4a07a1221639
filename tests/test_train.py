"""End to end on the smoke preset: run outputs, diagnostics, export, plain-CE path, CLI."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from jepagolf.cli import main
from jepagolf.config import build_config
from jepagolf.data.bytes import build_byte_tables
from jepagolf.data.shards import list_shards, load_shard, load_tokens, write_shard
from jepagolf.data.tokenizer import load_tokenizer
from jepagolf.export.artifact import ARTIFACT_NAME
from jepagolf.export.container import load_artifact
from jepagolf.model.eval import evaluate
from jepagolf.model.gpt import GPT
from jepagolf.train.run import train
from jepagolf.train.runtime import Runtime

SUMMARY_KEYS = {"val_loss", "val_bpb", "roundtrip_val_bpb", "artifact_bytes", "code_bytes", "total_bytes",
                "params", "steps", "tokens_seen", "train_seconds", "jepa", "seed", "preset", "device", "threads",
                "interop_threads", "malloc_retained", "step_compiled"}
DIAGNOSTICS = {"ce_loss", "jepa_loss", "jepa_mse", "jepa_var", "jepa_cov", "target_var", "target_cov", "pred_std",
               "target_std", "mask_frac", "jepa_lambda", "ema_momentum", "lr_scale", "step_ms", "tokens_per_s"}


def run_smoke(out: Path, **over) -> dict:
    cfg = build_config("smoke", over, environ={})
    return train(cfg, Runtime(device=torch.device("cpu")), out)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, demo_data):
    out = tmp_path_factory.mktemp("smoke")
    return out, run_smoke(out)


def log_lines(out: Path) -> list[str]:
    return (out / "train.log").read_text().splitlines()


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_run_outputs_follow_the_contract(smoke_run):
    out, summary = smoke_run
    for name in ("config.json", "train.log", "metrics.jsonl", "summary.json", ARTIFACT_NAME):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(on_disk)
    assert on_disk["artifact_bytes"] == (out / ARTIFACT_NAME).stat().st_size
    assert on_disk["jepa"] is True and on_disk["steps"] == 12 and on_disk["preset"] == "smoke"
    assert on_disk["tokens_seen"] == 12 * 1024
    assert abs(on_disk["roundtrip_val_bpb"] - on_disk["prequant_val_bpb"]) < 0.05
    # The score leads: smoke scores the round trip by non-overlapping windows, and says so.
    assert next(iter(on_disk)) == "score_val_bpb" and on_disk["score_kind"] == "roundtrip"
    assert on_disk["score_val_bpb"] == on_disk["val_bpb"] == on_disk["roundtrip_val_bpb"]
    final = [ln for ln in log_lines(out) if ln.startswith("final ")]
    assert len(final) == 1 and final[0].startswith(f"final score_val_bpb:{on_disk['score_val_bpb']:.4f} "
                                                   "score_kind:roundtrip eval_seq_len:64 eval_stride:64 ")
    # ...and that such a score does not compare with the leaderboard's sliding-window ones (issue 23).
    assert on_disk["comparable_to_sliding_leaderboard"] is False and "not comparable" in on_disk["score_note"]
    lines = log_lines(out)
    assert lines[lines.index(final[0]) + 1] == f"note: the score uses {on_disk['score_note']}"
    assert json.loads((out / "config.json").read_text())["model"]["num_layers"] == 3
    log = (out / "train.log").read_text()
    assert "step:12/12" in log and "train_loss:" in log and "source:" in log


def test_every_logged_step_has_the_jepa_diagnostics(smoke_run):
    out, _ = smoke_run
    train_rows = [r for r in read_metrics(out) if r["kind"] == "train"]
    assert [r["step"] for r in train_rows] == [1, 3, 6, 9, 12]
    for r in train_rows:
        assert DIAGNOSTICS <= set(r), DIAGNOSTICS - set(r)
        assert all(math.isfinite(r[k]) for k in DIAGNOSTICS)
        assert 0 < r["mask_frac"] < 1 and r["target_std"] > 0.1
    assert train_rows[-1]["jepa_lambda"] == pytest.approx(0.12)
    assert train_rows[0]["jepa_lambda"] == pytest.approx(0.12 / 4)
    assert 0.9 < train_rows[-1]["ema_momentum"] <= 0.999
    assert any(r["kind"] == "val" for r in read_metrics(out))


def test_artifact_ships_only_the_gpt(smoke_run):
    out, summary = smoke_run
    qm, meta = load_artifact(out / ARTIFACT_NAME)
    names = qm.names()
    assert names and not [n for n in names if "predictor" in n or "mask_emb" in n]
    cfg = build_config("smoke", {}, environ={})
    assert set(names) == set(GPT(cfg.model, 64).state_dict())
    assert meta["model"]["model_dim"] == 64


def test_eval_command_reproduces_the_roundtrip_score(smoke_run, demo_data, capsys):
    out, summary = smoke_run
    rc = main(["eval", str(out / ARTIFACT_NAME), "--data", str(demo_data.data_dir), "--device", "cpu",
               "--batch-tokens", "4096"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["val_bpb"] == pytest.approx(summary["roundtrip_val_bpb"], abs=1e-9)
    assert res["comparable_to_sliding_leaderboard"] is False and "not comparable with sliding-window" in res["note"]


@pytest.fixture(scope="module")
def small_val(demo_data, tmp_path_factory) -> Path:
    """The demo corpus with its validation split cut to 8193 tokens: cheap whole-split evaluations."""
    out = tmp_path_factory.mktemp("small_val")
    for split, n in (("train", 20_000), ("val", 8193)):
        name = f"demo_{split}_000000.bin"
        write_shard(out / name, np.asarray(load_shard(demo_data.data_dir / name)[:n]))
    shutil.copy(demo_data.tokenizer, out / "tokenizer.model")
    return out


@pytest.mark.parametrize("factor", [2, 4])
def test_eval_command_at_longer_lengths_and_by_sliding_windows(smoke_run, small_val, capsys, factor):
    out, summary = smoke_run
    T = 64 * factor  # the smoke model trained at 64: its RoPE tables grow on demand
    args = ["eval", str(out / ARTIFACT_NAME), "--data", str(small_val), "--device", "cpu",
            "--batch-tokens", "8192", "--seq-len", str(T)]
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*args, "--stride", str(T // 2)]) == 0
    slide = json.loads(capsys.readouterr().out)
    assert (plain["seq_len"], plain["stride"], slide["stride"]) == (T, T, T // 2)
    assert (slide["tokens"], slide["bytes"]) == (plain["tokens"], plain["bytes"]) and plain["tokens"] % T == 0
    assert math.isfinite(slide["val_bpb"]) and slide["val_bpb"] != plain["val_bpb"]
    assert slide["windows"] == f"round-trip artifact, sliding windows, stride {T // 2} at seq {T}"
    assert slide["comparable_to_sliding_leaderboard"] is True and "note" not in slide


def test_eval_val_slice_scores_exactly_those_tokens(smoke_run, small_val, capsys):
    """Two adjacent slices of 64 windows each score, together, what the slice covering both does (the
    smoke model's windows are 64 tokens: slice A's last token is slice B's first input)."""
    out, _ = smoke_run
    base = ["eval", str(out / ARTIFACT_NAME), "--data", str(small_val), "--device", "cpu", "--batch-tokens", "4096"]
    n = 64 * 64
    res = {}
    for name, sl in (("a", f"0:{n + 1}"), ("b", f"{n}:{2 * n + 1}"), ("ab", f"0:{2 * n + 1}")):
        assert main([*base, "--val-slice", sl]) == 0
        res[name] = json.loads(capsys.readouterr().out)
    assert (res["a"]["tokens"], res["b"]["tokens"], res["ab"]["tokens"]) == (n, n, 2 * n)
    assert res["a"]["val_slice"] == [0, n + 1] and res["a"]["val_loss"] != res["b"]["val_loss"]
    assert res["ab"]["val_loss"] == pytest.approx((res["a"]["val_loss"] + res["b"]["val_loss"]) / 2, rel=1e-6)
    assert res["ab"]["bytes"] == res["a"]["bytes"] + res["b"]["bytes"]
    # the unigram reference is scored on the same tokens as the model
    assert res["a"]["unigram_val_bpb"] != res["b"]["unigram_val_bpb"]
    for bad, message in (("5:5", "with 0 <= START < END"), ("x:9", "is not START:END"), ("0:8194", "has 8,193 tokens"),
                         ("100:120", "at least one window")):
        assert main([*base, "--val-slice", bad]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--stride", "65"], {}, "eval_stride=65 is longer than the evaluation window eval_seq_len=64"),
    (["--seq-len", "32", "--stride", "33"], {}, "eval_stride=33 is longer than the evaluation window eval_seq_len=32"),
    ([], {"EVAL_STRIDE": "100"}, "eval_stride=100 is longer than the evaluation window eval_seq_len=64"),
    (["--stride", "-1"], {}, "eval_seq_len=0 and eval_stride=-1 must be >= 0"),
    (["--seq-len", "10000"], {}, "has 8193 tokens, fewer than one sequence (eval_seq_len + 1 = 10001)"),
])
def test_eval_command_refuses_bad_windows(smoke_run, small_val, capsys, monkeypatch, args, env, message):
    out, _ = smoke_run
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    rc = main(["eval", str(out / ARTIFACT_NAME), "--data", str(small_val), "--device", "cpu", *args])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1, err


def test_plain_ce_path(tmp_path, demo_data):
    summary = run_smoke(tmp_path, jepa_lambda=0, iterations=4)
    assert summary["jepa"] is False
    rows = [r for r in read_metrics(tmp_path) if r["kind"] == "train"]
    assert rows and all("jepa_loss" not in r for r in rows)


def test_a_run_over_the_size_cap_says_so_at_its_end(tmp_path, demo_data, monkeypatch):
    import jepagolf.train.finish as finish

    monkeypatch.setattr(finish, "CAP_BYTES", 50_000)  # the smoke artifact alone is ~100 kB
    summary = run_smoke(tmp_path, iterations=2, val_loss_every=0)
    log = (tmp_path / "train.log").read_text()
    over = summary["total_bytes"] - 50_000
    assert f"warning: code + artifact = {summary['total_bytes']:,} bytes, {over:,} over the 50,000-byte cap" in log
    assert f"jepagolf size --artifact {tmp_path / ARTIFACT_NAME}" in log
    monkeypatch.setattr(finish, "CAP_BYTES", 10**9)
    run_smoke(tmp_path / "fits", iterations=2, val_loss_every=0)
    assert "warning" not in (tmp_path / "fits" / "train.log").read_text()


def test_same_seed_same_result(tmp_path, demo_data):
    a = run_smoke(tmp_path / "a", iterations=3, val_loss_every=0)
    b = run_smoke(tmp_path / "b", iterations=3, val_loss_every=0)
    assert a["val_bpb"] == b["val_bpb"] and a["roundtrip_val_bpb"] == b["roundtrip_val_bpb"]
    assert (tmp_path / "a" / ARTIFACT_NAME).read_bytes() == (tmp_path / "b" / ARTIFACT_NAME).read_bytes()


def test_eval_is_exact_for_a_uniform_model(demo_data):
    # Zero embeddings give zero logits: CE is exactly ln(V) per token, so val_bpb is fixed by the byte
    # count alone, which we recompute here with numpy from the tokenizer's pieces.
    cfg = build_config("smoke", {}, environ={})
    gpt = GPT(cfg.model, 64)
    with torch.no_grad():
        gpt.tok_emb.weight.zero_()
    sp = load_tokenizer(demo_data.tokenizer, 1024)
    tables = build_byte_tables(sp, 1024)
    val = load_tokens(list_shards(demo_data.data_dir, "val"), 1024)
    res = evaluate(gpt, val, tuple(tables.to_torch("cpu")), 64, 4096, torch.device("cpu"))
    n_seq = (len(val) - 1) // 64
    x = np.asarray(val[: n_seq * 64], dtype=np.int64)
    y = np.asarray(val[1 : n_seq * 64 + 1], dtype=np.int64)
    nbytes = int((tables.base_bytes[y] + (tables.leading_space[y] & ~tables.is_boundary[x])).sum())
    assert res.tokens == n_seq * 64 and res.bytes == nbytes
    assert res.bpb == pytest.approx(n_seq * 64 * math.log(1024) / math.log(2) / nbytes, rel=1e-6)  # CE of fp32 logits


def test_cli_rejects_bad_input_cleanly(tmp_path, capsys):
    assert main(["train", "--preset", "smoke", "--set", "num_layer=2", "--out", str(tmp_path)]) == 2
    assert "did you mean 'num_layers'" in capsys.readouterr().err
    assert main(["train", "--preset", "smoke", "--data", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_train_config_starts_a_new_run_from_a_saved_config(tmp_path, capsys):
    """`train --config RUN/config.json` rebuilds what the run trained (the same config hash, whatever the preset's
    defaults are), with --set and --seed on top; with --preset or --resume, or on a file that is not a config, it
    stops with one line."""
    from jepagolf.cli.flags import config_from_args
    from jepagolf.cli.parser import build_parser

    saved = build_config("smoke", {"model_dim": "48", "jepa_recipe": "nextlat", "data_offset": "4100", "seed": "9"},
                         environ={})
    path = tmp_path / "config.json"
    path.write_text(json.dumps(saved.to_dict()))
    parse = build_parser().parse_args
    cfg = config_from_args(parse(["train", "--config", str(path)]))
    assert cfg.hash() == saved.hash() and cfg.preset == "smoke" and cfg.train.data_offset == 4100
    again = config_from_args(parse(["train", "--config", str(path), "--seed", "10", "--set", "iterations=7"]))
    assert (again.train.seed, again.train.iterations, again.model.model_dim) == (10, 7, 48)
    assert again.jepa == cfg.jepa  # the saved recipe's values stay: nothing is re-expanded
    assert main(["train", "--config", str(path), "--preset", "smoke", "--out", str(tmp_path / "r")]) == 2
    assert "give one" in capsys.readouterr().err
    assert main(["train", "--config", str(path), "--resume", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "a resumed run uses its own config.json" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"model": {"model_dim": "wide"}}')
    assert main(["train", "--config", str(tmp_path / "bad.json"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "not a valid run configuration" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
