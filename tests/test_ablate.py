"""The ablation harness end to end (smoke preset, 2 arms x 3 seeds), its pairing, matching and resume,
the collapse diagnostics in a real run, and the report plots."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats as sps

import jepagolf.train.batches as batches
import jepagolf.train.budget as budget
import jepagolf.train.loop as loop
import jepagolf.train.run as run_module
from jepagolf.cli import main
from jepagolf.config import ConfigError, build_config
from jepagolf.data.corpus import DatasetPaths
from jepagolf.research.ablate import (
    AblationError,
    Arm,
    interleaved_step_seconds,
    measure_step_seconds,
    parse_arm,
    plan_ablation,
    run_ablation,
)
from jepagolf.research.flops import train_flops_per_token
from jepagolf.train.runtime import Runtime

SEEDS = "1337,42,2025"
DIAG_KEYS = {"pred_std_min", "target_std_min", "pred_erank", "target_erank", "pred_target_cos",
             "ce_grad_norm", "jepa_grad_norm", "jepa_grad_share", "grad_cos_ce_jepa", "r2_pred", "r2_const",
             "r2_identity", "jepa_share_mse", "jepa_share_var", "jepa_share_cov", "jepa_grad_share_embed",
             "jepa_grad_share_block0", "jepa_grad_share_block1", "jepa_grad_share_block2"}


def smoke_cfg(data: Path, **over):
    return build_config("smoke", {"data_path": str(data), **over}, environ={})


# ----- arms and plans -------------------------------------------------------------------------


def test_parse_arm():
    assert parse_arm("jepa:") == Arm("jepa", {})
    assert parse_arm("ce:jepa=false, MATRIX_LR=0.02").overrides == {"jepa": "false", "MATRIX_LR": "0.02"}
    with pytest.raises(AblationError, match="NAME:KEY=VAL"):
        parse_arm("jepa")
    with pytest.raises(ConfigError, match="did you mean 'jepa_lambda'"):
        parse_arm("x:jepa_lambd=0")
    with pytest.raises(AblationError, match="name"):
        parse_arm("a/b:jepa=false")


def test_plan_rejects_unmatched_compute():
    arms = [Arm("ce", {"jepa": "false"}), Arm("jepa")]
    with pytest.raises(AblationError, match="max_wallclock_seconds"):
        plan_ablation("smoke", arms, [1], "steps", {"max_wallclock_seconds": "60"})
    with pytest.raises(AblationError, match="iterations"):
        plan_ablation("smoke", [Arm("ce", {"jepa": "false"}), Arm("long", {"iterations": "20"})], [1], "flops")
    with pytest.raises(AblationError, match="max_wallclock_seconds > 0"):
        plan_ablation("smoke", arms, [1], "wallclock")
    with pytest.raises(AblationError, match="distinct"):
        plan_ablation("smoke", [Arm("a"), Arm("a")], [1])
    with pytest.raises(AblationError, match="--seeds"):
        plan_ablation("smoke", [Arm("a", {"seed": "3"}), Arm("b")], [1])


def test_flops_matching_gives_jepa_fewer_steps_and_equal_flops():
    arms = [Arm("ce", {"jepa": "false"}), Arm("jepa")]
    plan = plan_ablation("smoke", arms, [1, 2], "flops", {"iterations": "300", "warmdown_iters": "60"})
    ce, jepa = plan.config(arms[0], 1), plan.config(arms[1], 2)
    f_ce, f_j = train_flops_per_token(ce), train_flops_per_token(jepa)
    assert f_j > 1.5 * f_ce  # context pass + target pass + predictor
    assert ce.train.iterations == 300 and ce.optim.warmdown_iters == 60
    assert jepa.train.iterations == round(300 * f_ce / f_j) < 300
    assert jepa.optim.warmdown_iters == round(60 * f_ce / f_j)
    total = lambda c: train_flops_per_token(c) * c.train.train_batch_tokens * c.train.iterations
    assert abs(total(jepa) - total(ce)) <= train_flops_per_token(jepa) * jepa.train.train_batch_tokens / 2
    assert jepa.train.seed == 2 and jepa.jepa.active


def test_wallclock_matching_calibrates_once_and_warms_down_by_steps():
    arms = [Arm("ce", {"jepa": "false"}), Arm("jepa")]
    calls = []

    def timer(cfgs, steps):
        calls.extend(c.jepa.active for c in cfgs)
        return [0.25 if c.jepa.active else 0.125 for c in cfgs]

    common = {"max_wallclock_seconds": "3", "iterations": "1000"}
    plan = plan_ablation("smoke", arms, [1], "wallclock", common, step_timer=timer, calib_steps=5)
    ce, jepa = plan.config(arms[0], 1), plan.config(arms[1], 1)
    assert (ce.train.iterations, jepa.train.iterations) == (24, 12)  # 3 s / step time
    for c in (ce, jepa):
        assert c.optim.warmdown_mode == "steps" and c.train.guard_seconds == pytest.approx(3.75)
        assert c.train.max_wallclock_seconds == 0.0  # the guard is not the challenge's cap
        assert c.optim.warmdown_iters == 4  # the preset's, in steps
    assert calls == [False, True]
    # Resuming with the saved calibration measures nothing; a changed arm is measured again.
    again = plan_ablation("smoke", arms, [1], "wallclock", common, step_timer=timer, calib_steps=5,
                          saved_calibration=plan.calibration["arms"])
    assert again.derived == plan.derived and calls == [False, True]
    plan_ablation("smoke", [arms[0], Arm("jepa", {"jepa_lambda": "0.2"})], [1], "wallclock", common,
                  step_timer=timer, calib_steps=5, saved_calibration=plan.calibration["arms"])
    assert calls == [False, True, True]
    # The preset's iteration limit still caps the count.
    short = plan_ablation("smoke", arms, [1], "wallclock", {"max_wallclock_seconds": "3"}, step_timer=timer)
    assert short.config(arms[0], 1).train.iterations == 12


def test_measure_step_seconds(tiny_data):
    cfgs = [smoke_cfg(tiny_data, iterations=4), smoke_cfg(tiny_data, iterations=4, jepa=True)]
    times = measure_step_seconds(cfgs, 2, Runtime(device=torch.device("cpu")))
    assert len(times) == 2 and all(0 < t < 60 for t in times)


def test_interleaved_calibration_charges_a_busy_spell_to_no_arm():
    """Two arms take 1 and 2 time units per step; the machine turns 10x slower for the last 40% of the
    calibration's 30 steps. The arms take turns inside each of 5 rounds, so the spell falls on the last
    two rounds of both and the median over rounds drops it: both figures come out exact. Timing the arms
    one after the other (the old calibration) put the spell on 4 of the second arm's 5 rounds."""
    now, calls = [0.0], [0]

    def arm(cost: float):
        def step() -> None:
            now[0] += cost * (10 if calls[0] >= 18 else 1)
            calls[0] += 1
        return step

    assert interleaved_step_seconds([arm(1.0), arm(2.0)], 15, rounds=5, clock=lambda: now[0]) == [1.0, 2.0]
    now[0], calls[0] = 0.0, 0
    assert interleaved_step_seconds([arm(1.0)], 2, rounds=5, clock=lambda: now[0]) == [1.0]  # 2 rounds of 1


# ----- pairing ----------------------------------------------------------------------------------


def test_a_run_the_guard_cap_cut_short_is_trained_again(tmp_path):
    """Under --match wallclock a run that the guard cap stopped before its calibrated steps (the machine
    was busy) is not at equal time: it is trained once more at once, and a resume retrains one left over
    from before; a second short attempt is kept (and flagged by compare)."""
    arms = [Arm("ce", {"jepa": "false"}), Arm("v3")]
    plan = plan_ablation("smoke", arms, [1], "wallclock", {"max_wallclock_seconds": "2", "iterations": "1000"},
                         step_timer=lambda cfgs, _s: [0.1 for _ in cfgs], calib_steps=2)
    steps = {"ce": 20, "v3": 20}
    calls: list[tuple[str, int]] = []
    short_left = {"v3": 1}

    def fake_train(cfg, _rt, run_dir):
        arm = "v3" if cfg.jepa.active else "ce"
        got = steps[arm] - 5 if short_left.get(arm, 0) > 0 else steps[arm]
        short_left[arm] = short_left.get(arm, 0) - 1
        calls.append((arm, got))
        run_dir.mkdir(parents=True, exist_ok=True)
        seq = cfg.train.train_seq_len
        summary = {"summary_version": 2, "steps": got, "config_hash": cfg.hash(), "train_seconds": 1.0,
                   "tokens_seen": 1, "params": 1, "artifact_bytes": 1, "score_seq_len": seq, "score_stride": seq,
                   "val_tokens": 10, "val_bytes": 20, **{f"{k}_val_{m}": 2.0 for k in ("score", "roundtrip",
                                                                                       "prequant")
                                                         for m in ("bpb", "loss")}}
        (run_dir / "summary.json").write_text(json.dumps(summary))
        (run_dir / "config.json").write_text(json.dumps(cfg.to_dict()))
        return summary

    rt = Runtime(device=torch.device("cpu"))
    rows = run_ablation(plan, tmp_path / "abl", rt, train_fn=fake_train, log=lambda _m: None)
    assert calls == [("ce", 20), ("v3", 15), ("v3", 20)] and [r["steps"] for r in rows] == [20, 20]
    # A short run left from before (e.g. an older version kept it) is trained again on resume.
    short_left["v3"] = 2
    (tmp_path / "abl" / "runs" / "v3-seed1" / "summary.json").unlink()
    calls.clear()
    rows = run_ablation(plan, tmp_path / "abl", rt, train_fn=fake_train, log=lambda _m: None)
    assert calls == [("v3", 15), ("v3", 15)] and rows[1]["steps"] == 15  # two short attempts: kept
    calls.clear()
    short_left["v3"] = 0
    rows = run_ablation(plan, tmp_path / "abl", rt, train_fn=fake_train, log=lambda _m: None)
    assert calls == [("v3", 20)] and rows[1]["steps"] == 20


def test_arms_share_init_data_and_masks_for_a_seed(tiny_data, tmp_path, monkeypatch):
    paths = DatasetPaths(tiny_data, tiny_data / "tokenizer.model")
    rt = Runtime(device=torch.device("cpu"))
    masks: list[torch.Tensor] = []
    real_sample = batches.sample_mask
    monkeypatch.setattr(batches, "sample_mask", lambda *a, **k: masks.append(real_sample(*a, **k)) or masks[-1])

    def record(name, **over):
        tr = loop.Trainer(smoke_cfg(tiny_data, **over), rt, tmp_path / name, paths)
        init = {k: v.clone() for k, v in tr.model.gpt.state_dict().items()}
        start = len(masks)
        chunks = []
        for _ in range(2):
            pos = (tr.stream.shard_index, tr.stream.position)
            tr.train_step()
            tr.apply_update()
            tr.step += 1
            chunks.append(pos)
        tr.logger.close()
        return init, masks[start:], chunks

    ce_init, ce_masks, ce_chunks = record("ce", jepa="false")
    j_init, j_masks, j_chunks = record("jepa")
    lr_init, lr_masks, lr_chunks = record("jepa_lr", matrix_lr=0.02, jepa_lambda=0.3)
    other_init, other_masks, _ = record("seed2", seed=2)
    assert not ce_masks and len(j_masks) == 4  # 2 steps x 2 micro-batches
    for init in (j_init, lr_init):
        assert all(torch.equal(ce_init[k], init[k]) for k in ce_init)  # the JEPA modules do not shift the init
    assert ce_chunks == j_chunks == lr_chunks
    assert all(torch.equal(a, b) for a, b in zip(j_masks, lr_masks, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(j_masks, other_masks, strict=True))
    assert not torch.equal(ce_init["tok_emb.weight"], other_init["tok_emb.weight"])


# ----- a real run: diagnostics --------------------------------------------------------------------


def read_rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_diagnostics_are_logged_and_do_not_change_training(tiny_data, tmp_path):
    rt = Runtime(device=torch.device("cpu"))
    a = run_module.train(smoke_cfg(tiny_data, iterations=5, diag_every=2, val_loss_every=0), rt, tmp_path / "a")
    b = run_module.train(smoke_cfg(tiny_data, iterations=5, diag_every=-1, val_loss_every=0), rt, tmp_path / "b")
    assert a["roundtrip_val_bpb"] == b["roundtrip_val_bpb"]  # autograd.grad leaves .grad alone
    rows = [r for r in read_rows(tmp_path / "a") if r["kind"] == "train"]
    diag_steps = [r["step"] for r in rows if DIAG_KEYS <= set(r)]
    assert diag_steps == [1, 2, 4, 5]  # every 2 steps, plus the first and the last
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]  # diag steps are logged even off the log cadence
    for r in rows:
        if r["step"] in diag_steps:
            assert 0 < r["jepa_grad_share"] < 1 and -1 <= r["grad_cos_ce_jepa"] <= 1
            assert 1 <= r["pred_erank"] <= 64 and 1 <= r["target_erank"] <= 64
            assert -1 <= r["pred_target_cos"] <= 1 and r["target_std_min"] > 0
            assert r["r2_pred"] <= 1 and r["r2_identity"] <= 1 and r["r2_const"] <= 0
            assert sum(r[f"jepa_share_{k}"] for k in ("mse", "var", "cov")) == pytest.approx(1.0)
            assert all(0 <= r[f"jepa_grad_share_{g}"] <= 1 for g in ("embed", "block0", "block1", "block2"))
    assert not any(DIAG_KEYS & set(r) for r in read_rows(tmp_path / "b"))


# ----- end to end -------------------------------------------------------------------------------


def ablate_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["ablate", "--preset", "smoke", "--arm", "ce:jepa=false", "--arm", "jepa:", "--seeds", SEEDS,
            "--set", "iterations=4", "--set", "val_loss_every=2", "--data", str(data), "--out", str(out), *extra]


def test_ablation_end_to_end_with_resume(tiny_data, tmp_path, monkeypatch, capsys):
    trained: list[str] = []
    real_train = run_module.train

    def counting_train(cfg, rt, out_dir=None):
        trained.append(Path(out_dir).name)
        return real_train(cfg, rt, out_dir)

    monkeypatch.setattr(run_module, "train", counting_train)
    out = tmp_path / "abl"
    assert main(ablate_args(tiny_data, out)) == 0
    printed = capsys.readouterr().out
    assert sorted(trained) == sorted(f"{a}-seed{s}" for a in ("ce", "jepa") for s in SEEDS.split(","))
    assert trained[:2] == ["ce-seed1337", "jepa-seed1337"]  # seed by seed: complete pairs first

    with open(out / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6
    assert set(rows[0]) >= {"arm", "seed", "val_bpb", "prequant_val_bpb", "steps", "tokens", "seconds",
                            "artifact_bytes", "config_hash"}
    for r in rows:
        summary = json.loads((out / "runs" / f"{r['arm']}-seed{r['seed']}" / "summary.json").read_text())
        assert float(r["val_bpb"]) == summary["score_val_bpb"] == summary["roundtrip_val_bpb"]  # the round trip
        assert float(r["prequant_val_bpb"]) == summary["prequant_val_bpb"]
        assert r["score_kind"] == "round-trip artifact, non-overlapping windows of 64"
        assert int(r["steps"]) == 4 and int(r["tokens"]) == 4 * 1024 and r["config_hash"] == summary["config_hash"]
        assert summary["jepa"] == (r["arm"] == "jepa") and summary["seed"] == int(r["seed"])

    # Recompute the statistics from runs.csv with scipy and find them in ablation.md.
    seeds = [int(s) for s in SEEDS.split(",")]
    val = {(r["arm"], int(r["seed"])): float(r["val_bpb"]) for r in rows}
    ce = np.array([val[("ce", s)] for s in seeds])
    jp = np.array([val[("jepa", s)] for s in seeds])
    md = (out / "ablation.md").read_text()
    paired = sps.ttest_rel(jp, ce)
    welch = sps.ttest_ind(jp, ce, equal_var=False, alternative="less")
    summary = json.loads((out / "runs" / "ce-seed1337" / "summary.json").read_text())
    nats = math.log(2) * summary["val_bytes"] / summary["val_tokens"]
    bar = sps.ttest_ind(jp + 0.005 / nats, ce, equal_var=False, alternative="less")
    d = jp - ce
    lo, hi = sps.t.interval(0.95, 2, loc=d.mean(), scale=sps.sem(d))
    assert f"p (two-sided) = {paired.pvalue:.3g}" in md
    assert f"p = {welch.pvalue:.3g}" in md
    assert f"p = {bar.pvalue:.3g}" in md
    assert f"95% CI [{lo:+.5f}, {hi:+.5f}] bpb" in md
    assert f"{ce.mean():.4f} ± {ce.std(ddof=1):.4f}" in md and f"{jp.mean():.4f} ± {jp.std(ddof=1):.4f}" in md
    assert f"{d.mean() * nats:+.4f}" in md
    met = -d.mean() * nats >= 0.005 and bar.pvalue < 0.01
    assert ("**MET**" in md) == met and ("**NOT met**" in md) == (not met)
    assert "## Collapse diagnostics" in md and "\n| jepa | 4 |" in md and "\n| ce | 4 |" not in md
    assert "jepa − ce" in printed and "Challenge bar" in printed and "val_bpb (score, round-trip)" in printed
    assert "r2_identity" in md and "jepa_share_var" in md and "jepa_grad_share by group" in md
    for name in ("val_bpb", "jepa_terms", "diagnostics", "grad_share_blocks", "final_val_bpb"):
        png = out / "plots" / f"{name}.png"
        assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG", name

    # Resume: nothing left to train, the same table. (Plots were checked above; skip redrawing them.)
    monkeypatch.setattr("jepagolf.research.report.plot_ablation", lambda groups, out: [])
    trained.clear()
    assert main(ablate_args(tiny_data, out)) == 0
    assert trained == []
    with open(out / "runs.csv") as f:
        assert list(csv.DictReader(f)) == rows

    # A run killed before its summary: restarted from a clean folder, the others kept.
    killed = out / "runs" / "jepa-seed42"
    (killed / "summary.json").unlink()
    assert main(ablate_args(tiny_data, out)) == 0
    assert trained == ["jepa-seed42"]
    assert sum(r["kind"] == "final_roundtrip" for r in read_rows(killed)) == 1  # no rows of the first attempt

    # A summary written before the score was named (version 1: val_bpb was the pre-quant figure, the round
    # trip the score) is read as such on resume: the same rows.
    old = out / "runs" / "ce-seed42" / "summary.json"
    s = json.loads(old.read_text())
    for key in [k for k in s if k.startswith(("score_", "prequant_")) or k == "summary_version"]:
        del s[key]
    s["val_bpb"], s["val_loss"] = 9.0, 9.0  # pre-quant figures there: must not become the score
    old.write_text(json.dumps(s))
    trained.clear()
    assert main(ablate_args(tiny_data, out)) == 0
    assert trained == []
    with open(out / "runs.csv") as f:
        again = list(csv.DictReader(f))
    assert [r["val_bpb"] for r in again] == [r["val_bpb"] for r in rows]
    assert next(r for r in again if r["arm"] == "ce" and r["seed"] == "42")["prequant_val_bpb"] == "9.0"

    # A summary that does not say what it scored: one clear line.
    broken = {k: v for k, v in s.items() if k != "roundtrip_val_bpb"}
    old.write_text(json.dumps(broken))
    capsys.readouterr()
    assert main(ablate_args(tiny_data, out)) == 2
    err = capsys.readouterr().err
    assert err == f"error: {old} lacks or garbles 'roundtrip_val_bpb' (summary_version 1): not a finished " \
                  "jepagolf run's summary\n"
    old.write_text(json.dumps(s))

    # Finished runs scored another way than the plan (here: non-overlapping, the plan sliding) are refused.
    capsys.readouterr()
    assert main(ablate_args(tiny_data, out, "--set", "eval_stride=16")) == 2
    err = capsys.readouterr().err
    assert "scored by round-trip artifact, non-overlapping windows of 64, but this ablation scores by " \
           "round-trip artifact, sliding windows, stride 16 at seq 64" in err and err.count("\n") == 1

    # A finished run of another configuration is never overwritten.
    capsys.readouterr()
    assert main(ablate_args(tiny_data, out, "--set", "matrix_lr=0.02")) == 2
    assert "holds a finished run with another configuration" in capsys.readouterr().err


# ----- report -----------------------------------------------------------------------------------


def test_report_overlays_runs_and_fails_clearly(tiny_data, tmp_path, monkeypatch, capsys):
    rt = Runtime(device=torch.device("cpu"))
    run_module.train(smoke_cfg(tiny_data, iterations=4, val_loss_every=2), rt, tmp_path / "jepa")
    run_module.train(smoke_cfg(tiny_data, iterations=4, val_loss_every=2, jepa="false"), rt, tmp_path / "ce")
    capsys.readouterr()
    assert main(["report", str(tmp_path / "jepa"), str(tmp_path / "ce"), "--out", str(tmp_path / "rep")]) == 0
    names = {Path(p).name for p in capsys.readouterr().out.split()}
    assert names == {"val_bpb.png", "jepa_terms.png", "diagnostics.png", "grad_share_blocks.png"}
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    assert main(["report", str(tmp_path / "ce"), "--out", str(tmp_path / "rep2")]) == 2
    assert "pip install 'jepagolf[plots]'" in capsys.readouterr().err


def test_report_by_arm_groups_an_ablations_runs(tiny_data, tmp_path, capsys):
    """--by-arm: folders named <arm>-seed<seed> (a ladder rung's runs/) plotted as arms, with the paired final
    scores; a folder not so named is refused in one line."""
    rt = Runtime(device=torch.device("cpu"))
    runs = tmp_path / "runs"
    for name, over in (("v3-seed1", {}), ("ce-seed1", {"jepa": "false"}), ("ce-seed2", {"jepa": "false"})):
        run_module.train(smoke_cfg(tiny_data, iterations=2, val_loss_every=0, **over), rt, runs / name)
    capsys.readouterr()
    dirs = [str(p) for p in sorted(runs.iterdir())]
    assert main(["report", "--by-arm", *dirs, "--out", str(tmp_path / "rep")]) == 0
    names = {Path(p).name for p in capsys.readouterr().out.split()}
    assert {"final_val_bpb.png", "diagnostics.png", "delta_by_step.png", "delta_by_step.md"} <= names
    table = (tmp_path / "rep" / "delta_by_step.md").read_text()
    assert "arm − ce" in table and "| v3 | 1-500 | 1 |" in table  # one seed pairs (1): no CI, no p
    assert "## Runs that spiked" in table and "The control's own largest rise above an arm's CE" in table
    assert main(["report", "--by-arm", *dirs, "--out", str(tmp_path / "rep")]) == 0  # a rerun replaces its own
    (tmp_path / "rep4").mkdir()
    (tmp_path / "rep4" / "delta_by_step.md").write_text("my notes\n")
    assert main(["report", "--by-arm", *dirs, "--out", str(tmp_path / "rep4")]) == 2
    assert "delta_by_step.md, not written by jepagolf report" in capsys.readouterr().err
    assert (tmp_path / "rep4" / "delta_by_step.md").read_text() == "my notes\n"
    assert main(["report", "--by-arm", *dirs, "--control", "nope", "--out", str(tmp_path / "rep5")]) == 2
    assert "--control nope: no such arm among" in capsys.readouterr().err
    assert main(["report", dirs[0], "--window", "100", "--out", str(tmp_path / "rep6")]) == 2
    assert "go with --by-arm" in capsys.readouterr().err
    (tmp_path / "odd").mkdir()
    assert main(["report", "--by-arm", *dirs, str(tmp_path / "odd"), "--out", str(tmp_path / "rep3")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "<arm>-seed<seed>" in err


def test_the_guard_is_not_the_challenges_cap(tiny_data, tmp_path, monkeypatch):
    """A wall-clock rung of 12 s with a guard at 24 s on a machine where GPTQ calibration takes a measured
    30.2 s: the guard is a stop of its own (guard_seconds), not max_wallclock_seconds, so the calibration
    reserve of the challenge's cap never applies to it and the run trains its calibrated steps."""
    monkeypatch.setattr(budget, "estimate_calibration_seconds", lambda *a, **k: 30.2)  # a slow calibration
    arms = [Arm("ce", {"jepa": "false"}), Arm("v3")]
    plan = plan_ablation("smoke", arms, [1], "wallclock",
                         {"max_wallclock_seconds": "12", "iterations": "1000", "data_path": str(tiny_data)},
                         step_timer=lambda cfgs, _s: [2.0 for _ in cfgs], calib_steps=2, wallclock_slack=1.0)
    cfg = plan.config(arms[0], 1)
    assert (cfg.train.iterations, cfg.train.guard_seconds, cfg.train.max_wallclock_seconds) == (6, 24.0, 0.0)
    rt = Runtime(device=torch.device("cpu"))
    summary = run_module.train(cfg, rt, tmp_path / "run")
    assert summary["steps"] == 6
    # The same 24 s as the challenge's cap: the reserve check fires (the simulation bites).
    with pytest.raises(ConfigError, match="leaves no training time"):
        run_module.train(smoke_cfg(tiny_data, max_wallclock_seconds=24.0, iterations=6), rt, tmp_path / "capped")


def test_the_guard_stops_training(tiny_data, tmp_path):
    """guard_seconds stops the loop once training seconds reach it, like a cap but with no reserve."""
    rt = Runtime(device=torch.device("cpu"))
    summary = run_module.train(smoke_cfg(tiny_data, iterations=6, guard_seconds=1e-9), rt, tmp_path / "run")
    assert summary["steps"] == 1
    cfg = build_config("smoke", {"guard_seconds": 5.0}, environ={})
    assert cfg.hash() == build_config("smoke", {}, environ={}).hash()  # operational: not in the hash
    with pytest.raises(ConfigError, match="guard_seconds"):
        build_config("smoke", {"guard_seconds": -1.0}, environ={})


def _fake_summary(cfg, run_dir: Path, steps: int, score: float = 2.0) -> dict:
    run_dir.mkdir(parents=True, exist_ok=True)
    seq = cfg.train.train_seq_len
    summary = {"summary_version": 2, "steps": steps, "config_hash": cfg.hash(), "train_seconds": 1.0,
               "tokens_seen": 1, "params": 1, "artifact_bytes": 1, "score_seq_len": seq, "score_stride": seq,
               "val_tokens": 10, "val_bytes": 20,
               **{f"{k}_val_{m}": score for k in ("score", "roundtrip", "prequant") for m in ("bpb", "loss")}}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict()))
    return summary


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_score_stops_the_ablation_naming_the_run(tiny_data, tmp_path, monkeypatch, capsys, bad):
    """A NaN or inf score is refused with one line naming the run (exit 2), never written to runs.csv
    or ablation.md as `nan`."""
    def fake_train(cfg, _rt, run_dir):
        nan_run = cfg.jepa.active and cfg.train.seed == 42
        return _fake_summary(cfg, Path(run_dir), cfg.train.iterations, bad if nan_run else 2.0)

    monkeypatch.setattr(run_module, "train", fake_train)
    monkeypatch.setattr("jepagolf.research.report.plot_ablation", lambda groups, out: [])
    out = tmp_path / "abl"
    assert main(ablate_args(tiny_data, out)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: run jepa-seed42 scored") and "not finite" in err and "\n" not in err
    assert not (out / "runs.csv").exists() and not (out / "ablation.md").exists()


def test_every_run_line_says_how_far_and_the_time_left(tmp_path):
    """One line per run, with the ablation's elapsed time and an estimate of the time left; runs found
    finished earlier are skipped without counting."""
    arms = [Arm("ce", {"jepa": "false"}), Arm("v3")]
    plan = plan_ablation("smoke", arms, [1, 2], "steps", {"iterations": "3"})
    lines: list[str] = []
    rt = Runtime(device=torch.device("cpu"))
    run_ablation(plan, tmp_path / "abl", rt, train_fn=lambda c, _rt, d: _fake_summary(c, Path(d), 3),
                 log=lines.append)
    trained = [m for m in lines if "training ->" in m]
    assert [m.split("]")[0] for m in trained] == ["[1/4", "[2/4", "[3/4", "[4/4"]
    # At equal steps the runs are estimated in FLOPs: no time until the first has trained.
    assert "time left known after the first run arm:" in trained[0]
    assert all(" in, ~" in m and " left arm:" in m for m in trained[1:])
    lines.clear()
    run_ablation(plan, tmp_path / "abl", rt, train_fn=lambda c, _rt, d: _fake_summary(c, Path(d), 3),
                 log=lines.append)
    assert len(lines) == 4 and all("finished earlier, skipped" in m for m in lines)


def test_the_ablation_table_gives_the_signed_rank_p_and_counts_failed_runs():
    """val_bpb in, nats out: a run 0.03 bpb worse is 0.06 nats worse at 2 nats per bpb, a failure by FAILURE_NATS;
    the pre-quantisation row (no failure there) says 0."""
    from jepagolf.research import stats
    from jepagolf.research.ablate_plan import FAILURE_NATS
    from jepagolf.research.ablate_report import Comparison, where_table

    control = [1.60, 1.61, 1.62, 1.63, 1.64]
    arm = [c + d for c, d in zip(control, [-0.002, -0.003, -0.001, -0.004, 0.03], strict=True)]
    pre = [c + d for c, d in zip(control, [-0.002, -0.003, -0.001, -0.004, 0.001], strict=True)]
    comp = Comparison("v3", [1, 2, 3, 4, 5], control, arm, stats.paired_t_test(control, arm),
                      stats.welch_t_test(control, arm), stats.welch_t_test(control, arm), 0.5, 2.0,
                      prequant=stats.paired_t_test(control, pre))
    table = where_table([comp], "ce")
    assert f"| Wilcoxon p (2-sided) | runs worse by > {FAILURE_NATS} nats |" in table
    rt, bq = (line for line in table.splitlines() if line.startswith("| v3 − ce"))
    assert rt.endswith(f"| {comp.paired.p_wilcoxon:.3g} | 1 of 5 |") and bq.endswith(" | 0 of 5 |")
    # The same data with the failure at 0.02 bpb (0.04 nats): not counted.
    arm2 = [*arm[:4], control[4] + 0.02]
    comp.paired = stats.paired_t_test(control, arm2)
    assert where_table([comp], "ce").splitlines()[2].endswith(" | 0 of 5 |")


def test_one_pair_gives_no_confidence_interval_rather_than_nan():
    """An ablation of one seed (a probe) has no paired spread: its tables say n/a, never "[+nan, +nan]"."""
    from jepagolf.research import stats
    from jepagolf.research.ablate_report import Comparison, summary_tables

    arms = [Arm("ce", {"jepa": "false"}), Arm("v3")]
    plan = plan_ablation("smoke", arms, [7], "steps", {"iterations": "4"})
    c, a = [2.0], [2.1]
    comp = Comparison("v3", [7], c, a, stats.paired_t_test(c, a), stats.welch_t_test(c, a),
                      stats.welch_t_test(c, a), math.nan, 1.0, prequant=stats.paired_t_test(c, a))
    rows = [{"arm": n, "seed": 7, "val_bpb": v, "prequant_val_bpb": v, "val_loss": v, "steps": 4, "seconds": 1.0,
             "artifact_bytes": 1} for n, v in (("ce", 2.0), ("v3", 2.1))]
    text = summary_tables(rows, plan, [comp])
    assert "nan" not in text and "| v3 − ce | 1 | +0.1000 | +0.1000 | n/a |" in text


def test_runs_csv_reads_back_what_write_runs_csv_wrote_and_refuses_what_it_did_not(tmp_path, monkeypatch):
    """read_runs_csv: write_runs_csv's rows back with their numbers typed; a missing column, a non-number, a
    non-finite value, bytes that are not text or an oversized file stop it in one line."""
    from jepagolf.research import runs_csv
    from jepagolf.research.ablate_run import read_runs_csv, write_runs_csv

    rows = [{"arm": "ce", "seed": 1001, "val_loss": 3.6107, "steps": 4000, "config_hash": "c9fc", "run_dir": "r"},
            {"arm": "v3", "seed": 1001, "val_loss": 3.6139, "steps": 4000, "config_hash": "eb2a", "run_dir": "s"}]
    path = tmp_path / "runs.csv"
    write_runs_csv(rows, path)
    back = read_runs_csv(path, ("arm", "seed", "val_loss", "config_hash"))
    assert [(r["arm"], r["seed"], r["val_loss"], r["steps"], r["config_hash"]) for r in back] == \
        [(r["arm"], r["seed"], r["val_loss"], r["steps"], r["config_hash"]) for r in rows]
    assert back[0]["val_bpb"] == ""  # a column the rows did not have stays empty text
    with pytest.raises(AblationError, match="missing columns nope"):
        read_runs_csv(path, ("arm", "nope"))
    for bad, what in (("x", "val_loss='x' is not a number"), ("nan", "val_loss is not finite"),
                      ("inf", "val_loss is not finite")):
        path.write_text(f"arm,seed,val_loss\nce,1,{bad}\n")
        with pytest.raises(AblationError, match=f"line 2: {what}"):
            read_runs_csv(path)
    path.write_bytes(b"arm,seed,val_loss\n\xff\xfe\n")
    with pytest.raises(AblationError, match="not UTF-8 CSV text"):
        read_runs_csv(path)
    with pytest.raises(AblationError, match="no such file"):
        read_runs_csv(tmp_path / "missing.csv")
    monkeypatch.setattr(runs_csv, "MAX_RUNS_CSV_BYTES", 10)
    with pytest.raises(AblationError, match="more than a runs.csv can be"):
        read_runs_csv(path)
