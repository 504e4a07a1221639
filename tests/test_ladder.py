"""The compute ladder: rung specs, budgets, the epoch guard, the per-rung analysis and fit, --add-points,
and a two-rung smoke ladder end to end (with its resume)."""

from __future__ import annotations

import csv
import difflib
import json
import math
from pathlib import Path

import pytest
import torch

from jepagolf.cli import main
from jepagolf.config import ConfigError
from jepagolf.research import ladder, ladder_plan, stats
from jepagolf.research.ablate import Arm
from jepagolf.research.ablate_plan import FAILURE_NATS
from jepagolf.research.ladder import LadderError, Rung, parse_rung
from jepagolf.train.runtime import Runtime


def test_parse_rung():
    r = parse_rung("big:num_layers=6,model_dim=256,seconds=90,seeds=4")
    assert r == Rung("big", {"num_layers": "6", "model_dim": "256"}, 90.0, 4)
    assert parse_rung(r.spec()) == r
    f = parse_rung("g:num_layers=2,flops=3e13,seeds=2")
    assert f.flops == 3e13 and parse_rung(f.spec()) == f
    for bad in ("r:num_layers=2,seeds=3", "r:seconds=5,flops=1e9,seeds=3", "r:seconds=5,seeds=1",
                "r:seconds=x,seeds=3", "r:seconds=5"):
        with pytest.raises(LadderError):
            parse_rung(bad)
    with pytest.raises(ConfigError, match="did you mean"):
        parse_rung("r:num_layer=2,seconds=5,seeds=3")


def _fake_timer(cfgs, steps):
    return [0.02 if c.jepa.active else 0.01 for c in cfgs]


def _plan(rung: Rung, tmp_path: Path, monkeypatch, match: str = "wallclock") -> ladder.RungPlan:
    monkeypatch.setattr(ladder_plan, "plan_calibrated", lambda *a, **k: ladder.plan_ablation(
        *a[:5], step_timer=_fake_timer, calib_steps=k["calib_steps"], warmdown_fraction=k["warmdown_fraction"],
        wallclock_slack=k["wallclock_slack"]))
    arms = [Arm("ce", {"jepa": "false"}), Arm("v3")]
    return ladder.plan_rung("smoke", arms, rung, [1, 2, 3], {}, match, tmp_path, None, print, 3, 1.0)


def test_rung_budgets_wallclock_flops_and_matching(tmp_path, monkeypatch):
    rp = _plan(Rung("a", {"num_layers": "2"}, 2.0, 2), tmp_path, monkeypatch)
    assert (rp.steps("ce"), rp.steps("v3")) == (200, 100)  # 2 s / step time
    assert rp.config("v3").optim.warmdown_iters == 25 and rp.config("ce").optim.warmdown_mode == "steps"
    assert rp.plan.seeds == [1, 2] and rp.seconds == 2.0
    assert rp.config("ce").train.guard_seconds == 4.0  # a guard at twice the budget, not the budget
    assert rp.config("ce").train.max_wallclock_seconds == 0.0  # ... and not the challenge's cap
    # A FLOP budget: the control gets the steps holding those FLOPs, every arm the time they take.
    per_step = rp.plan.flops_per_step["ce"]
    fr = _plan(Rung("b", {"num_layers": "2"}, 1.0, 2, flops=150 * per_step), tmp_path, monkeypatch)
    assert fr.steps("ce") == 150 and fr.steps("v3") == 75
    assert fr.control_flops() == pytest.approx(150 * per_step)
    # Matching by FLOPs: the control keeps its calibrated steps, JEPA gets fewer of its costlier steps.
    mf = _plan(Rung("c", {"num_layers": "2"}, 2.0, 2), tmp_path, monkeypatch, match="flops")
    ratio = mf.plan.flops_per_step["ce"] / mf.plan.flops_per_step["v3"]
    assert mf.steps("ce") == 200 and mf.steps("v3") == round(200 * ratio)
    with pytest.raises(LadderError, match="seeds"):
        _plan(Rung("d", {}, 2.0, 5), tmp_path, monkeypatch)


def test_a_steps_rung_keeps_the_time_its_step_times_were_measured(tmp_path, monkeypatch):
    """A steps= rung re-plans at the budget its calibrated step times give, reusing those times: its calibration
    says when they were measured (a resumed ladder's files then stay as they were), not when the plan was made."""
    stamps = iter(f"T{i}" for i in range(1, 100))
    monkeypatch.setattr(ladder_plan.plan_ablation.__globals__["time"], "strftime", lambda *_a: next(stamps))
    rp = _plan(Rung("a", {"num_layers": "2"}, 2.0, 2, steps=40), tmp_path, monkeypatch, match="steps")
    arms = rp.plan.calibration["arms"]
    assert {a["measured_at"] for a in arms.values()} == {"T1", "T2"}  # the first calibration's stamps (ce, v3)
    assert rp.steps("ce") == rp.steps("v3") == 40


def test_long_runs_take_the_compiled_step_unless_the_path_was_chosen(tmp_path, monkeypatch):
    """Rungs (and step-matched ablations) of >= FAST_PATH_MIN_STEPS steps train with step_compile=auto (on for a
    single-process CPU run) unless --set, an arm, the rung or the preset chose the path; shorter ones stay as set."""
    from jepagolf.research.ablate_plan import FAST_PATH_MIN_STEPS, with_fast_path

    arms = [Arm("ce", {"jepa": "false"}), Arm("v3")]
    n = FAST_PATH_MIN_STEPS
    assert with_fast_path("cpu-demo", {"model_dim": "64"}, arms, n) == {"model_dim": "64", "step_compile": "auto"}
    assert "step_compile" not in with_fast_path("cpu-demo", {}, arms, n - 1)
    assert "step_compile" not in with_fast_path("cpu-demo", {}, arms, None)  # a seconds budget: steps unknown
    assert with_fast_path("cpu-demo", {"STEP_COMPILE": "off"}, arms, n) == {"STEP_COMPILE": "off"}
    assert "step_compile" not in with_fast_path("cpu-demo", {}, [*arms, Arm("x", {"step_compile": "off"})], n)
    assert "step_compile" not in with_fast_path("smoke", {}, arms, n)  # the preset pins it off
    # Through a rung's plan: the smoke preset keeps its pin; a rung of the same steps on cpu-demo gets auto.
    rp = _plan(Rung("a", {"num_layers": "2"}, 2.0, 2, steps=n), tmp_path, monkeypatch, match="steps")
    assert rp.config("v3").train.step_compile == "off"
    monkeypatch.setattr(ladder_plan, "plan_calibrated", lambda *a, **k: ladder.plan_ablation(
        *a[:5], step_timer=_fake_timer, calib_steps=k["calib_steps"], warmdown_fraction=k["warmdown_fraction"],
        wallclock_slack=k["wallclock_slack"]))
    demo = ladder.plan_rung("cpu-demo", arms, Rung("b", {"num_layers": "2"}, 2.0, 2, steps=n), [1, 2], {}, "steps",
                            tmp_path, None, print, 3, 1.0)
    assert demo.config("v3").train.step_compile == "auto" and demo.steps("v3") == n
    short = ladder.plan_rung("cpu-demo", arms, Rung("c", {"num_layers": "2"}, 2.0, 2, steps=n - 1), [1, 2], {},
                             "steps", tmp_path, None, print, 3, 1.0)
    assert short.config("v3").train.step_compile == "off"


def test_epoch_guard_refuses_a_rung_longer_than_the_corpus(tmp_path, monkeypatch):
    rp = _plan(Rung("a", {"num_layers": "2"}, 2.0, 2), tmp_path, monkeypatch)
    tokens = rp.tokens("ce")  # the control reads the most
    assert "0.500 epochs" in ladder.check_epochs([rp], 2 * tokens, 1.0)[0]
    with pytest.raises(LadderError, match="epochs of the corpus"):
        ladder.check_epochs([rp], tokens - 1, 1.0)


def _rows(deltas_by_rung: dict[str, tuple[float, list[float]]], sd_noise: float = 0.0) -> list[dict]:
    rows = []
    for rung, (flops, deltas) in deltas_by_rung.items():
        for seed, d in enumerate(deltas):
            base = 3.0 - 0.1 * math.log10(flops) + 0.01 * seed
            for arm, loss in (("ce", base), ("v3", base + d)):
                rows.append({"rung": rung, "arm": arm, "seed": seed, "val_loss": loss, "val_bpb": loss / 1.7,
                             "prequant_val_bpb": loss / 1.7, "steps": 100, "tokens": int(flops / 1e6),
                             "seconds": 1.0, "params": 1000, "train_flops": flops, "artifact_bytes": 1,
                             "config_hash": "x", "run_dir": "-"})
    return rows


def test_rung_results_pair_by_seed_and_the_fit_finds_the_trend():
    # Δ = 0.01 - 0.002 * log10(F) exactly in the mean, with paired noise of known sd.
    noise = [-0.002, 0.0, 0.002]
    spec = {f"r{k}": (10.0**x, [0.01 - 0.002 * x + e for e in noise]) for k, x in enumerate((10, 11, 12, 13))}
    results = ladder.rung_results(_rows(spec), "ce")
    assert [r.rung for r in results] == ["r0", "r1", "r2", "r3"] and all(r.n == 3 for r in results)
    r0 = results[0]
    assert r0.test.mean == pytest.approx(0.01 - 0.02) and r0.test.sd == pytest.approx(0.002)
    assert r0.tokens_per_param == pytest.approx(1e10 / 1e6 / 1000)
    assert r0.mde == pytest.approx(stats.paired_mde(0.002, 3))
    (e,) = ladder.extrapolate(results, x0=18.0)
    assert e.fit.slope == pytest.approx(-0.002, abs=1e-9) and e.prediction == pytest.approx(0.01 - 0.036)
    lo, hi = e.interval
    assert lo < e.prediction < hi
    assert "below −0.005" in ladder.verdict(e, "ce")


def test_a_wide_interval_is_called_too_wide_and_two_rungs_give_no_verdict():
    spec = {"a": (1e10, [0.01, -0.01, 0.03]), "b": (1e11, [-0.02, 0.01, 0.0]), "c": (1e12, [0.02, -0.01, 0.0])}
    (e,) = ladder.extrapolate(ladder.rung_results(_rows(spec), "ce"))
    assert "too wide to say anything" in ladder.verdict(e, "ce")
    # Two rungs with tight, opposite-looking points: a line through two points is no prediction.
    two = {"a": (1e10, [0.100, 0.101, 0.099]), "b": (1e11, [0.050, 0.051, 0.049])}
    (e2,) = ladder.extrapolate(ladder.rung_results(_rows(two), "ce"))
    text = ladder.verdict(e2, "ce")
    assert "two rungs" in e2.note and "not a prediction" in text and "beats" not in text and "hurts" not in text
    one = ladder.extrapolate(ladder.rung_results(_rows({"a": spec["a"]}), "ce"))[0]
    assert one.fit is None and "no prediction" in ladder.verdict(one, "ce")


def test_analyse_writes_the_report_and_add_points_reads_it_back(tmp_path):
    spec = {"r1": (1e11, [0.001, 0.003, 0.002]), "r2": (1e12, [0.0, 0.002, -0.001]),
            "r3": (1e13, [-0.001, 0.0, -0.003])}
    text = ladder.analyse(_rows(spec), "ce", tmp_path, arm_overrides={"ce": {"jepa": "false"}, "v3": {}})
    md = (tmp_path / "ladder.md").read_text()
    assert "## What it predicts" in md and "tokens/param" in md and "MDE" in md and "v3" in text
    assert (tmp_path / "ladder.png").stat().st_size > 10_000
    doc = json.loads((tmp_path / "ladder.json").read_text())
    assert doc["challenge"]["train_flops"] == pytest.approx(8 * 600 * 0.2292 * 989.4e12)
    tokens, params, tpp = doc["challenge"]["tokens_params_per_arm"]["ce"]
    assert 20e6 < params < 35e6 and 5e9 < tokens < 6e9 and 150 < tpp < 250  # v3: ~10,700 steps x 524,288
    assert doc["challenge"]["tokens_params_per_arm"]["v3"][0] < tokens / 2  # JEPA v3 costs > 2x the FLOPs
    back = ladder.load_points(tmp_path / "runs.csv")
    assert len(back) == 18 and back[0]["train_flops"] == 1e11 and back[0]["seed"] == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("rung,arm\nx,y\n")
    with pytest.raises(LadderError, match="missing columns"):
        ladder.load_points(bad)
    rows = list(csv.DictReader((tmp_path / "runs.csv").open()))
    rows[0]["val_loss"] = "nan"
    with bad.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(LadderError, match="line 2: val_loss is not finite"):
        ladder.load_points(bad)
    for col, cell, what in (("steps", "", "line 2: steps is empty"), ("seed", "x", "line 2: seed='x' is not a number")):
        broken = [{**rows[0], "val_loss": "3.5", col: cell}, *rows[1:]]
        with bad.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(broken)
        with pytest.raises(LadderError, match=f"--add-points {bad}: {what}"):
            ladder.load_points(bad)
    bad.write_text(",".join(rows[0]) + "\n")
    with pytest.raises(LadderError, match="no runs in it"):
        ladder.load_points(bad)


def test_missing_research_corpus_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JEPAGOLF_CACHE", str(tmp_path))
    assert main(["ladder", "--out", str(tmp_path / "l")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "jepagolf data research" in err


def test_smoke_ladder_end_to_end_and_resume(tiny_data, tmp_path, capsys):
    out = tmp_path / "ladder"
    # A wide guard: on a busy machine a 2-s run's first step can take 4 s, the guard would stop it and the resume
    # below would (rightly) train it again. What the guard does is tested on its own.
    args = ["ladder", "--smoke", "--data", str(tiny_data), "--arm", "ce:jepa=false", "--arm", "v3:",
            "--out", str(out), "--calib-steps", "2", "--wallclock-slack", "100"]
    code = main(args)
    printed, err = capsys.readouterr()
    assert code == 0, err  # the messages say why, should it fail (it failed twice under heavy load, unexplained)
    assert "estimated wall time" in printed and "rung s2" in printed, printed
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert len(rows) == 8 and {r["rung"] for r in rows} == {"s1", "s2"}, rows
    flops = {r["rung"]: float(r["train_flops"]) for r in rows if r["arm"] == "ce"}
    assert flops["s2"] > flops["s1"] > 0
    md = (out / "ladder.md").read_text()
    assert "| s1 | v3 | 2 |" in md and "prediction interval" in md
    assert (out / "ladder.png").is_file() and (out / "rungs" / "s1" / "ablation.md").is_file()
    # each rung plots its arms: curves, diagnostics over steps (issue 19, item 6) and the paired final scores
    assert {"diagnostics.png", "final_val_bpb.png"} <= {p.name for p in (out / "rungs" / "s2" / "plots").iterdir()}
    # Rerunning the same command trains nothing and gives the same numbers.
    before = (out / "ladder.json").read_text()
    code = main(args)
    again, err = capsys.readouterr()
    assert code == 0, err
    assert again.count("finished earlier, skipped") == 8 and "calibrating" not in again, again
    after = (out / "ladder.json").read_text()
    assert after == before, "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True)))


def test_plan_only_trains_nothing(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(ladder_plan, "plan_calibrated", lambda *a, **k: ladder.plan_ablation(
        *a[:5], step_timer=_fake_timer, calib_steps=k["calib_steps"], warmdown_fraction=k["warmdown_fraction"],
        wallclock_slack=k["wallclock_slack"]))
    text = ladder.main_ladder(["ce:jepa=false", "v3:"], ["s1:num_layers=2,model_dim=32,seconds=0.5,seeds=2"],
                              "1,2", {}, tmp_path, data=str(tiny_data), smoke=True, calib_steps=1, plan_only=True,
                              rt=Runtime(device=torch.device("cpu")))
    assert "| s1 |" in text and (tmp_path / "plan.md").is_file() and not (tmp_path / "runs.csv").exists()


def test_a_rung_whose_arms_trained_unequal_seconds_is_flagged():
    rows = _rows({"a": (1e10, [0.0, 0.0]), "b": (1e11, [0.0, 0.0])})
    for r in rows:
        if r["rung"] == "b" and r["arm"] == "v3":
            r["seconds"] = 1.35  # the calibration missed: 35% more time than the control
        if r["rung"] == "a" and r["arm"] == "v3":
            r["seconds"] = 1.05  # within tolerance
    (w,) = ladder.unequal_time_warnings(rows, "ce")
    assert w.startswith("rung b, arm v3:") and "+35%" in w and "not an equal-wall-clock comparison" in w


def test_effective_compute_recovers_a_constant_multiplier():
    """The control follows ln L = 2 - 0.05 log10 C exactly; the arm is worth half the control's compute at
    every rung (its loss is the control's at C/2), with paired noise that cancels in the mean. The second
    model finds m = 0.5 at every rung, a flat line, and Δ* = L*(exp(β log10 0.5) - 1) at the challenge: a
    cost that does not change sign, where the first model's line through these Δ (which shrink as the
    loss falls) runs on unbounded."""
    alpha, beta = 2.0, -0.05

    def loss(logc: float) -> float:
        return math.exp(alpha + beta * logc)

    rows = []
    for k, x in enumerate((11.0, 12.0, 13.0, 14.0)):
        for seed, e in enumerate((-0.002, 0.0, 0.002)):
            for arm, value in (("ce", loss(x) + e), ("v3", loss(x + math.log10(0.5)) + e + (0.001 if seed == 1 else
                                                                                              -0.0005))):
                rows.append({"rung": f"r{k}", "arm": arm, "seed": seed, "val_loss": value, "tokens": 1000,
                             "params": 10, "train_flops": 10.0**x})
    results = ladder.rung_results(rows, "ce")
    (m,) = ladder.compute_models(results, x0=18.0)
    assert m.curve.slope == pytest.approx(beta, rel=1e-6) and m.curve.intercept == pytest.approx(alpha, rel=1e-6)
    for _, lm, lo, hi in m.points:
        assert lm == pytest.approx(math.log10(0.5), abs=1e-6) and lo < lm < hi
    assert m.fit.slope == pytest.approx(0.0, abs=1e-6)
    lm, lo, hi = m.prediction
    assert 10**lm == pytest.approx(0.5, rel=1e-5) and lo < lm < hi
    d, dlo, dhi = m.delta
    assert d == pytest.approx(loss(18.0) * math.expm1(beta * math.log10(0.5)), rel=1e-5) and dlo < d < dhi and d > 0
    md = "\n".join(ladder.compute_model_markdown([m], "ce"))
    assert "0.500 [" in md and "effective compute" in md


def test_the_default_ladder_is_sized_for_its_promises():
    """At least 4 rungs, seeds enough in DEFAULT_SEEDS for each, and at r2 (the rung that carries the MDE)
    an MDE below the 0.005-nat bar for the paired sds the first ladder measured there (<= 0.006 nats;
    docs/results/ladder)."""
    rungs = ladder.DEFAULT_RUNGS
    seeds = ladder.parse_seeds(ladder.DEFAULT_SEEDS)
    assert len(rungs) >= 4 and len({r.name for r in rungs}) == len(rungs)
    assert all(r.seeds <= len(seeds) for r in rungs) and all(r.seeds >= 3 for r in rungs)
    r2 = next(r for r in rungs if r.name == "r2")
    assert stats.paired_mde(0.006, r2.seeds) < ladder.BAR_NATS


def test_rungs_by_steps_and_by_tokens_per_parameter(tmp_path, monkeypatch):
    """A rung's budget may be steps=N or tpp=K; --match steps gives every arm the control's steps, and
    --match wallclock with a steps budget gives every arm the time the control takes for them."""
    r = parse_rung("s:num_layers=2,steps=300,seeds=2")
    assert (r.steps, r.budget_kind) == (300, "steps") and parse_rung(r.spec()) == r
    t = parse_rung("t:num_layers=2,tpp=50,seeds=2")
    assert (t.tpp, t.budget_kind) == (50.0, "tpp") and parse_rung(t.spec()) == t
    for bad in ("r:steps=100,tpp=5,seeds=2", "r:steps=0,seeds=2", "r:tpp=-1,seeds=2", "r:steps=1.5,seeds=2",
                "r:tpp=inf,seeds=2"):
        with pytest.raises(LadderError):
            parse_rung(bad)
    eq = _plan(Rung("e", {"num_layers": "2"}, seeds=2, steps=300), tmp_path, monkeypatch, match="steps")
    assert eq.steps("ce") == eq.steps("v3") == 300 and eq.plan.match == "steps"
    assert eq.config("v3").train.max_wallclock_seconds == 0 and eq.config("v3").optim.schedule_scale == "run"
    wc = _plan(Rung("w", {"num_layers": "2"}, seeds=2, steps=300), tmp_path, monkeypatch)
    assert (wc.steps("ce"), wc.steps("v3")) == (300, 150)  # the fake timer: v3's steps cost twice
    tp = _plan(Rung("p", {"num_layers": "2"}, seeds=2, tpp=50.0), tmp_path, monkeypatch, match="steps")
    ctrl = tp.config("ce")
    n = ladder_plan.count_params(ctrl)
    assert tp.steps("ce") == tp.steps("v3") == math.ceil(50 * n / ctrl.train.train_batch_tokens)
    assert tp.tokens("ce") / n == pytest.approx(50, rel=0.05)
    # Tokens per non-embedding parameter leave out the token embedding and the bigram table.
    m = ctrl.model
    assert ladder_plan.count_non_embedding_params(ctrl) == n - m.vocab_size * m.model_dim - \
        m.bigram_buckets * m.model_dim
    table, _ = ladder_plan.plan_table([eq, tp], 10**9, 4096)
    assert "tokens/non-embedding param" in table


def test_the_report_says_which_comparison_and_where_the_effect_lives(tmp_path):
    spec = {"r1": (1e11, [0.001, 0.003, 0.002]), "r2": (1e12, [0.0, 0.002, -0.001])}
    rows = _rows(spec)
    for r in rows:
        r["prequant_val_loss"] = r["val_loss"] - (0.01 if r["arm"] == "v3" else 0.0)  # v3 better before quantisation
        r["non_embed_params"], r["match"] = 250, "steps"
    text = ladder.analyse(rows, "ce", tmp_path)
    md = (tmp_path / "ladder.md").read_text()
    assert "Comparison: **equal steps**" in md and "Comparison: equal steps" in text
    assert "| r1 | v3 | before quantisation | -0.0080 |" in md
    assert "| r1 | v3 | round trip (the score) | +0.0020 |" in md
    assert "tokens/non-embedding param" in md
    doc = json.loads((tmp_path / "ladder.json").read_text())
    r1 = next(r for r in doc["rungs"] if r["rung"] == "r1")
    assert r1["prequant"]["mean"] == pytest.approx(0.002 - 0.01) and r1["non_embed_params"] == 250
    assert doc["verdict_rests_on"].startswith("round trip")
    # A runs.csv from before these columns: read back without them, the table says n/a.
    back = ladder.load_points(tmp_path / "runs.csv")
    assert back[0]["prequant_val_loss"] == rows[0]["prequant_val_loss"] and back[0]["match"] == "steps"
    old = [{k: v for k, v in r.items() if k not in ("prequant_val_loss", "non_embed_params", "match")} for r in rows]
    ladder.analyse(old, "ce", tmp_path / "old")
    assert "| r1 | v3 | before quantisation | n/a |" in (tmp_path / "old" / "ladder.md").read_text()


def test_plan_only_at_equal_steps_says_which_comparison(tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ladder_plan, "plan_calibrated", lambda *a, **k: ladder.plan_ablation(
        *a[:5], step_timer=_fake_timer, calib_steps=k["calib_steps"], warmdown_fraction=k["warmdown_fraction"],
        wallclock_slack=k["wallclock_slack"]))
    args = ["ladder", "--smoke", "--data", str(tiny_data), "--arm", "ce:jepa=false", "--arm", "v3:", "--match",
            "steps", "--rung", "e:num_layers=2,model_dim=32,steps=40,seeds=2", "--out", str(tmp_path / "l"),
            "--calib-steps", "1", "--plan-only"]
    assert main(args) == 0
    plan = (tmp_path / "l" / "plan.md").read_text()
    assert "| e |" in plan and "ce 40, v3 40" in plan and "Comparison: equal steps" in plan
    assert "export (the round trip scored): int8-zlib" in plan and "by the run's length (40 steps)" in plan


def test_the_report_gives_the_signed_rank_p_and_counts_failed_runs(tmp_path):
    """Seven seeds where v3 is slightly better and one where it fails by 0.15 nats: the tables and ladder.json give
    the Wilcoxon p beside the t-test's and say that 1 of 8 runs is worse by more than FAILURE_NATS."""
    spec = {"r1": (1e11, [-0.004, -0.006, -0.003, -0.005, -0.007, -0.002, -0.004, 0.15])}
    rows = _rows(spec)
    for r in rows:
        r["prequant_val_loss"], r["match"] = r["val_loss"], "steps"
    text = ladder.analyse(rows, "ce", tmp_path)
    md = (tmp_path / "ladder.md").read_text()
    (res,) = ladder.rung_results(rows, "ce")
    w = f"{res.test.p_wilcoxon:.3g}"
    assert f"| Wilcoxon p (2-sided) | runs worse by > {FAILURE_NATS} nats |" in md
    assert f" | {w} | 1 of 8 |" in md and f"Wilcoxon p {w}, 1 of 8 runs worse by > {FAILURE_NATS}" in text
    (r1,) = json.loads((tmp_path / "ladder.json").read_text())["rungs"]
    assert r1["failures"] == 1 and r1["p_wilcoxon"] == pytest.approx(res.test.p_wilcoxon)
    assert r1["prequant"]["failures"] == 1 and r1["p"] == pytest.approx(res.test.p_two_sided)
