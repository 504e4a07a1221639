"""The seed's factors apart: init_seed (initial weights), mask_seed (span masks, SIGReg directions) and
data_offset (where the training stream starts), each changing only its own factor, with the defaults
(and any spelling of them) leaving the config hash and the run as they were."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import jepagolf.train.batches as batches
import jepagolf.train.loop as loop
import jepagolf.train.run as run_module
from jepagolf.cli import main
from jepagolf.config import ConfigError, build_config, config_dict_hash
from jepagolf.data.corpus import DatasetPaths
from jepagolf.data.shards import TokenStream, list_shards
from jepagolf.research import ladder_plan
from jepagolf.research.ablate_plan import VARY_MODES, AblationError, Arm, plan_ablation
from jepagolf.research.ablate_report import finalize
from jepagolf.research.ablate_run import run_ablation
from jepagolf.train.batches import step_tokens
from jepagolf.train.runtime import Runtime

# Config.hash() of the presets as they were before init_seed, mask_seed and data_offset existed (main at
# 80d37e1): adding the keys, at their defaults, must leave every existing run's hash (and resume) alone.
PRESET_HASHES = {"v3": "3d364f84a600", "baseline": "be0b9a9dca0c", "baseline-plus": "f5466137139a",
                 "cpu-demo": "8615e8ddb39e", "smoke": "79bef6c86f8d"}
REAL_SAMPLE, REAL_NOISE = batches.sample_mask, loop.noise_seed


def cfg_of(data: Path | None = None, **over):
    return build_config("smoke", {**({"data_path": str(data)} if data else {}), **over}, environ={})


def test_preset_hashes_are_unchanged_by_the_new_keys():
    for preset, want in PRESET_HASHES.items():
        cfg = build_config(preset, {}, environ={})
        assert cfg.hash() == want
        seed = cfg.train.seed
        for same in ({"init_seed": -1, "mask_seed": -1, "data_offset": 0}, {"init_seed": seed, "mask_seed": seed}):
            assert build_config(preset, same, environ={}).hash() == want
        old = cfg.to_dict()  # a config.json written before the keys existed
        for key in ("init_seed", "mask_seed", "data_offset"):
            del old["train"][key]
        assert config_dict_hash(old) == want
    base = cfg_of()
    changed = [cfg_of(init_seed=7).hash(), cfg_of(mask_seed=7).hash(), cfg_of(data_offset=64).hash()]
    assert len({base.hash(), *changed}) == 4  # each factor, once set, is a different run
    # the same run spelled two ways has one hash: seed 7 with masks pinned to 1337 == init 7 under seed 1337
    assert cfg_of(seed=7, mask_seed=1337).hash() != cfg_of(init_seed=7).hash()  # the seed itself is hashed
    assert cfg_of(seed=7, init_seed=7).hash() == cfg_of(seed=7).hash()


@pytest.mark.parametrize("over", [{"init_seed": -2}, {"mask_seed": -5}, {"data_offset": -1},
                                  {"data_offset": 1 << 60}])
def test_bad_factor_values_are_one_line_errors(over):
    with pytest.raises(ConfigError, match=next(iter(over))):
        cfg_of(**over)


def _record(data: Path, out: Path, monkeypatch, **over) -> dict:
    """The initial GPT weights, the span masks, the SIGReg seeds and the chunks of a 2-step trainer."""
    rt = Runtime(device=torch.device("cpu"))
    masks: list[torch.Tensor] = []
    sig: list[int] = []
    monkeypatch.setattr(batches, "sample_mask", lambda *a, **k: masks.append(REAL_SAMPLE(*a, **k)) or masks[-1])
    monkeypatch.setattr(loop, "noise_seed", lambda *a: sig.append(REAL_NOISE(*a)) or sig[-1])
    tr = loop.Trainer(cfg_of(data, **over), rt, out, DatasetPaths(data, data / "tokenizer.model"))
    init = {k: v.clone() for k, v in tr.model.gpt.state_dict().items()}
    chunks: list[np.ndarray] = []
    real_fb = tr.forward_backward
    tr.forward_backward = lambda chunk, diag=False: chunks.append(chunk.copy()) or real_fb(chunk, diag)
    for _ in range(2):
        tr.train_step()
        tr.apply_update()
        tr.step += 1
    tr.logger.close()
    return {"init": init, "masks": masks, "sig": sig, "chunks": chunks, "cfg": tr.cfg}


def _same_init(a: dict, b: dict) -> bool:
    return all(torch.equal(a["init"][k], b["init"][k]) for k in a["init"])


def _same_masks(a: dict, b: dict) -> bool:
    return len(a["masks"]) == len(b["masks"]) > 0 and all(
        torch.equal(x, y) for x, y in zip(a["masks"], b["masks"], strict=True))


def _same_chunks(a: dict, b: dict) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a["chunks"], b["chunks"], strict=True))


def test_each_factor_changes_only_itself(tiny_data, tmp_path, monkeypatch, one_torch_thread):
    sig = {"jepa_reg": "sigreg"}
    base = _record(tiny_data, tmp_path / "base", monkeypatch, **sig)
    spelled = _record(tiny_data, tmp_path / "spelled", monkeypatch, init_seed=1337, mask_seed=1337, data_offset=0,
                      **sig)
    init = _record(tiny_data, tmp_path / "init", monkeypatch, init_seed=7, **sig)
    mask = _record(tiny_data, tmp_path / "mask", monkeypatch, mask_seed=7, **sig)
    seed = _record(tiny_data, tmp_path / "seed", monkeypatch, seed=7, **sig)
    assert len(base["masks"]) == 4 and len(base["sig"]) == 4  # 2 steps x 2 micro-batches
    assert _same_init(base, spelled) and _same_masks(base, spelled) and base["sig"] == spelled["sig"]
    # init_seed: other weights, the same masks, SIGReg directions and data
    assert not torch.equal(base["init"]["tok_emb.weight"], init["init"]["tok_emb.weight"])
    assert _same_masks(base, init) and base["sig"] == init["sig"] and _same_chunks(base, init)
    # mask_seed: the same weights and data, other masks and SIGReg directions
    assert _same_init(base, mask) and _same_chunks(base, mask)
    assert not _same_masks(base, mask) and not set(base["sig"]) & set(mask["sig"])
    # seed alone still moves both, as it always did; and init_seed=7 + mask_seed=7 is seed 7's run
    assert not _same_init(base, seed) and not _same_masks(base, seed)
    both = _record(tiny_data, tmp_path / "both", monkeypatch, init_seed=7, mask_seed=7, **sig)
    assert _same_init(seed, both) and _same_masks(seed, both) and seed["sig"] == both["sig"]


def test_data_offset_shifts_the_stream_exactly(tiny_data, tmp_path, monkeypatch, one_torch_thread):
    base = _record(tiny_data, tmp_path / "base", monkeypatch)
    offset = 1000
    moved = _record(tiny_data, tmp_path / "moved", monkeypatch, data_offset=offset)
    n = step_tokens(base["cfg"])
    stream = TokenStream(list_shards(tiny_data, "train"))
    whole = stream.take(offset + 2 * n)
    np.testing.assert_array_equal(base["chunks"][0], whole[:n])
    np.testing.assert_array_equal(moved["chunks"][0], whole[offset:offset + n])
    np.testing.assert_array_equal(moved["chunks"][1], whole[offset + n:offset + 2 * n])
    assert _same_init(base, moved) and _same_masks(base, moved)  # only the data moved
    # an offset past the end wraps, as the stream does: a whole lap later is the same data
    lap = 60_000  # tiny_data's training tokens
    wrapped = _record(tiny_data, tmp_path / "wrapped", monkeypatch, data_offset=offset + lap)
    assert _same_chunks(moved, wrapped)


def test_spelled_defaults_reproduce_the_run_bitwise(tiny_data, tmp_path, one_torch_thread):
    """init_seed = mask_seed = seed and data_offset = 0 are the run of the defaults, loss for loss."""
    rt = Runtime(device=torch.device("cpu"))

    def run(name: str, **over) -> list:
        cfg = cfg_of(tiny_data, iterations=3, train_log_every=1, val_loss_every=0, **over)
        s = run_module.train(cfg, rt, tmp_path / name)
        rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        return [[r["train_loss"], r.get("jepa_loss")] for r in rows if r["kind"] == "train"] + \
            [s["prequant_val_loss"], s["roundtrip_val_loss"], s["config_hash"]]

    assert run("default") == run("spelled", init_seed=1337, mask_seed=1337, data_offset=0)


# ----- ablate / ladder designs that vary one factor ----------------------------------------------


def _factors(plan, arm, seed) -> tuple[int, int, int]:
    t = plan.config(arm, seed).train
    return t.resolved_init_seed, t.resolved_mask_seed, t.data_offset


def test_vary_designs_move_one_factor_and_pair_the_arms():
    arms = [Arm("ce", {"jepa": "false"}), Arm("v3")]
    seeds = [5, 6, 7]
    common = {"iterations": "10"}
    plans = {v: plan_ablation("smoke", arms, seeds, "steps", common, vary=v) for v in VARY_MODES}
    stride = 10 * step_tokens(plans["data"].config(arms[0], 5))
    want = {"all": [(5, 5, 0), (6, 6, 0), (7, 7, 0)], "init": [(5, 5, 0), (6, 5, 0), (7, 5, 0)],
            "masks": [(5, 5, 0), (5, 6, 0), (5, 7, 0)], "data": [(5, 5, 0), (5, 5, stride), (5, 5, 2 * stride)],
            "all+data": [(5, 5, 0), (6, 6, stride), (7, 7, 2 * stride)]}
    for v, plan in plans.items():
        for arm in arms:  # every arm of a seed gets the same factors: the pairing holds in every design
            assert [_factors(plan, arm, s) for s in seeds] == want[v], v
        assert plan.to_dict()["vary"] == v
    # all is today's ablation: the same configs (and hashes) as a plan that knows nothing of --vary
    for s in seeds:
        assert plans["all"].config(arms[1], s).hash() == build_config("smoke", {**common, "seed": s}, environ={}).hash()
    # the first seed's run is the same run in every design (one hash, however the seeds are spelled)
    assert len({p.config(arms[1], 5).hash() for p in plans.values()}) == 1
    # at equal wall-clock an arm may run more steps than the control: the stride is the longest run's tokens
    fl = plan_ablation("smoke", arms, seeds, "flops", common, vary="data")
    longest = max(fl.config(a, 5).train.iterations * step_tokens(fl.config(a, 5)) for a in arms)
    assert fl.data_stride() == longest and _factors(fl, arms[1], 6)[2] == longest


@pytest.mark.parametrize(("vary", "common", "arm_over", "match"), [
    ("data", {}, {}, "--vary"),
    ("all", {"init_seed": "3"}, {}, "--seeds"),
    ("init", {}, {"mask_seed": "3"}, "--seeds"),
    ("all", {}, {"data_offset": "64"}, "data_offset"),
    ("data", {"data_offset": "64"}, {}, "data_offset"),
    ("all+data", {"data_offset": "64"}, {}, "data_offset"),
])
def test_vary_refuses_what_would_break_the_design(vary, common, arm_over, match):
    arms = [Arm("ce", {"jepa": "false"}), Arm("v3", arm_over)]
    with pytest.raises(AblationError, match=match):
        plan_ablation("smoke", arms, [1, 2], "steps", common, vary="sideways" if match == "--vary" else vary)


def test_vary_is_recorded_in_runs_csv_ablation_json_and_the_report(tmp_path):
    arms = [Arm("ce", {"jepa": "false"}), Arm("v3")]
    plan = plan_ablation("smoke", arms, [1, 2, 3], "steps", {"iterations": "6"}, vary="masks")

    def fake_train(cfg, _rt, run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
        seq = cfg.train.train_seq_len
        loss = 2.0 + 0.01 * cfg.train.resolved_mask_seed + 0.001 * cfg.jepa.active
        summary = {"summary_version": 2, "steps": 6, "config_hash": cfg.hash(), "train_seconds": 1.0,
                   "tokens_seen": 1, "params": 1, "artifact_bytes": 1, "score_seq_len": seq, "score_stride": seq,
                   "val_tokens": 10, "val_bytes": 20, "seed": cfg.train.seed,
                   **{f"{k}_val_{m}": loss for k in ("score", "roundtrip", "prequant") for m in ("bpb", "loss")}}
        (run_dir / "summary.json").write_text(json.dumps(summary))
        (run_dir / "config.json").write_text(json.dumps(cfg.to_dict()))
        return summary

    out = tmp_path / "abl"
    rows = run_ablation(plan, out, Runtime(device=torch.device("cpu")), train_fn=fake_train, log=lambda _m: None)
    finalize(rows, plan, out, plots_wanted=False)
    with open(out / "runs.csv") as f:
        back = list(csv.DictReader(f))
    assert [(r["arm"], r["init_seed"], r["mask_seed"], r["data_offset"]) for r in back] == [
        (a, "1", str(s), "0") for s in (1, 2, 3) for a in ("ce", "v3")]
    assert json.loads((out / "ablation.json").read_text())["vary"] == "masks"
    setting = next(line for line in (out / "ablation.md").read_text().splitlines() if line.startswith("- control:"))
    assert "seeds vary: **masks** (the JEPA span masks" in setting


def test_ladder_plan_only_varies_the_data(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(ladder_plan, "plan_calibrated", lambda *a, **k: plan_ablation(
        *a[:5], step_timer=lambda cfgs, _s: [0.02 if c.jepa.active else 0.01 for c in cfgs],
        calib_steps=k["calib_steps"], warmdown_fraction=k["warmdown_fraction"],
        wallclock_slack=k["wallclock_slack"], vary=k["vary"]))
    args = ["ladder", "--smoke", "--data", str(tiny_data), "--arm", "ce:jepa=false", "--arm", "v3:", "--match",
            "steps", "--rung", "e:num_layers=2,model_dim=32,steps=20,seeds=2", "--out", str(tmp_path / "l"),
            "--calib-steps", "1", "--plan-only", "--vary", "data"]
    assert main(args) == 0
    plan = (tmp_path / "l" / "plan.md").read_text()
    spread = 2 * 20 * 1025  # 2 seeds x 20 steps x the smoke step's 1,024 + 1 tokens
    assert "seeds vary: data (the training tokens only" in plan
    assert f"e: --vary data spreads its seeds over {spread:,} tokens ({spread / 60_000:.3f} epochs)" in plan
    assert main([*args[:-1], "sideways"]) == 2  # argparse's choices: one line, status 2
