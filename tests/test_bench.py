"""`jepagolf bench` end to end on the smoke preset: the JSON contract, not the timings (which are
machine-dependent and belong to the command's output, not to assertions)."""

from __future__ import annotations

import json

import pytest
import torch

from jepagolf.cli import main
from jepagolf.config import build_config
from jepagolf.research.bench import MatmulProbe, bench_warnings, format_table, gemm_shapes, mfu_ceiling
from jepagolf.research.flops import flops_per_token


def test_bench_writes_every_figure(tmp_path, demo_data, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", "--preset", "smoke", "--data", str(demo_data.data_dir), "--variants", "v3,every4,online",
               "--repeats", "2", "--warmup", "1", "--export-repeats", "1", "--threads", "1", "--out", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert set(res["variants"]) == {"ce", "v3", "every4", "online"}  # ce is added: every ratio is to it
    for key in ("ratio_jepa_v3", "ratio_best_option", "mfu_ce", "eval_tokens_per_s", "export_s", "machine",
                "versions", "source_hash", "compiled", "eval_sliding_tokens_per_s"):
        assert key in res
    assert res["eval_sliding_stride"] == 64 // 16 and res["eval_sliding_tokens_per_s"] > 0
    assert res["compiled"] is False  # CPU: compile is off by default
    assert res["best_option"] in ("every4", "online")
    assert res["ratio_best_option"] == res["variants"][res["best_option"]]["ratio_to_ce"]
    assert res["variants"]["every4"]["cycle_steps"] == 4 and res["variants"]["v3"]["cycle_steps"] == 1
    for v in res["variants"].values():
        assert len(v["step_ms_all"]) == 2 and v["step_ms_min"] <= v["step_ms"] <= v["step_ms_max"]
        assert v["mfu"] == pytest.approx(v["achieved_flops_per_s"] / res["matmul"]["flops_per_s"])
    assert res["variants"]["ce"]["flops_ratio_to_ce"] == 1.0
    assert res["variants"]["v3"]["flops_ratio_to_ce"] > res["variants"]["online"]["flops_ratio_to_ce"] > 1.0
    assert res["artifact_bytes"] > 0 and res["export_s"] > 0
    assert isinstance(res["busy"], bool) and isinstance(res["warnings"], list)
    assert all(v["ratio_min"] <= v["ratio_to_ce"] <= v["ratio_max"] for v in res["variants"].values())
    assert len(res["machine"]["loadavg_start"]) == 3 and len(res["machine"]["loadavg_end"]) == 3
    c = res["mfu_ceiling_ce"]
    assert c["floor_step_ms"] == pytest.approx(c["gemm_ms"] + c["attention_ms"] + c["update_ms"])
    assert min(c["gemm_ms"], c["attention_ms"], c["update_ms"]) > 0
    ce_flops = res["variants"]["ce"]["flops_per_step"]
    assert c["mfu_ceiling"] == pytest.approx(ce_flops / (c["floor_step_ms"] / 1000) / res["matmul"]["flops_per_s"])
    printed = capsys.readouterr().out
    assert "ratio_jepa_v3:" in printed and "mfu_ce:" in printed and "mfu_ceiling_ce:" in printed
    assert "scored tokens/s sliding (stride 4" in printed
    assert str(out) in printed


def test_bench_rejects_unknown_variants_and_bad_counts(demo_data, capsys):
    assert main(["bench", "--preset", "smoke", "--variants", "v3,nope"]) == 2
    assert "unknown variants ['nope']" in capsys.readouterr().err
    assert main(["bench", "--preset", "smoke", "--export-repeats", "-1"]) == 2
    assert "--export-repeats: -1 must be an integer >= 0" in capsys.readouterr().err


def test_matmul_probe_counts_two_flops_per_multiply_add():
    cfg = build_config("smoke", {})
    shapes = gemm_shapes(cfg)
    assert (cfg.train.micro_batch_tokens, cfg.model.model_dim, cfg.model.mlp_hidden) in shapes
    assert len(shapes) == len(set(shapes))
    probe = MatmulProbe(shapes[:2], torch.float32, torch.device("cpu"), inner=2)
    probe.measure()
    assert set(probe.per_shape()) == {"x".join(map(str, s)) for s in shapes[:2]}
    assert probe.rate() > 0


def test_table_says_when_export_was_not_measured():
    res = {"variants": {"ce": {"step_ms": 10.0, "step_ms_min": 9.0, "step_ms_max": 11.0, "ratio_to_ce": 1.0,
                               "flops_ratio_to_ce": 1.0, "mfu": 0.5, "tokens_per_s": 100.0}},
           "matmul": {"dtype": "float32", "flops_per_s": 1e9, "per_shape_flops_per_s": {"1x2x3": 1e9}},
           "eval_tokens_per_s": 5.0, "export_s": None, "export_load_s": None, "artifact_bytes": None,
           "compiled": True, "machine": {"loadavg_start": None, "loadavg_end": None, "cpu_count": 2,
                                         "torch_threads": 2},
           "goals": {"mfu_ce": 0.7}, "mfu_ce": 0.5, "best_option": None}
    table = format_table(res)
    assert "export: not measured" in table and "compiled: True" in table and "mfu_ce: 0.500" in table
    assert "missed" in table


def test_mfu_ceiling_leaves_out_exactly_the_attention_flops_from_the_gemm_time():
    cfg = build_config("cpu-demo", {})
    f, micro = flops_per_token(cfg), cfg.train.micro_batch_tokens
    rate = 1e11
    c = mfu_ceiling(cfg, rate, attention_layer_s=0.0, update_s=0.0)
    # With free attention and optimizer, the floor is the non-attention FLOPs at the matmul rate.
    assert c["gemm_ms"] / 1000 == pytest.approx((f.ce_step - 3 * f.attention_fwd) * micro / rate)
    assert 1.0 < c["mfu_ceiling"] < 1.5  # > 1: the attention FLOPs were counted but cost nothing
    slow = mfu_ceiling(cfg, rate, attention_layer_s=0.01, update_s=0.05)
    assert slow["attention_ms"] == pytest.approx(cfg.model.num_layers * 10.0) and slow["update_ms"] == 50.0
    assert slow["mfu_ceiling"] < c["mfu_ceiling"]


def variant(ratio: float, flops: float, lo: float, hi: float) -> dict[str, float]:
    return {"ratio_to_ce": ratio, "flops_ratio_to_ce": flops, "ratio_min": lo, "ratio_max": hi}


def test_bench_warns_when_the_machine_is_busy():
    quiet = {"ce": variant(1.0, 1.0, 1.0, 1.0)}
    assert bench_warnings(quiet, [0.5, 0.4, 0.3], [2.4, 1.0, 0.5], cpu_count=2, own_threads=2) == ([], False)
    # Load 6 on 2 cores before the bench started (the case): busy.
    warnings, busy = bench_warnings(quiet, [6.0, 5.0, 4.0], [2.0, 2.0, 2.0], cpu_count=2, own_threads=2)
    assert busy and len(warnings) == 1 and "machine busy" in warnings[0] and "2 cores" in warnings[0]
    # At the end the bench's own threads are part of the load: 4.5 with 2 of them on 2 cores is busy,
    # 3.9 is not.
    assert bench_warnings(quiet, [1.0, 1, 1], [4.5, 1, 1], cpu_count=2, own_threads=2)[1]
    assert not bench_warnings(quiet, [1.0, 1, 1], [3.9, 1, 1], cpu_count=2, own_threads=2)[1]
    assert bench_warnings(quiet, None, None, cpu_count=None, own_threads=1) == ([], False)  # no getloadavg


def test_bench_warns_when_a_ratio_falls_below_its_flop_ratio():
    # The case: a best option at 1.06x against its FLOP ratio of 1.22x, repeats within 0.05.
    low = {"ce": variant(1.0, 1.0, 1.0, 1.0), "online+frac25": variant(1.06, 1.22, 1.04, 1.09)}
    warnings, busy = bench_warnings(low, [0.1, 0.1, 0.1], [1.0, 1.0, 1.0], cpu_count=2, own_threads=2)
    assert not busy and len(warnings) == 1
    assert warnings[0].startswith("online+frac25: ratio to CE 1.060 is below its FLOP ratio 1.220")
    # Within the spread of the repeats, or within the 5% tolerance (the idle H200's 1.231 vs 1.246): no warning.
    for ok in (variant(1.06, 1.22, 0.95, 1.25), variant(1.231, 1.246, 1.228, 1.241), variant(1.4, 1.3, 1.3, 1.5)):
        assert bench_warnings({"x": ok}, None, None, cpu_count=2, own_threads=2) == ([], False)


def test_ladder_shapes_writes_every_figure(demo_data, one_torch_thread):
    from jepagolf.research.bench_shapes import format_ladder_shapes, ladder_shape_groups, run_ladder_shapes
    from jepagolf.research.ladder import DEFAULT_RUNGS, SMOKE_RUNGS

    groups = ladder_shape_groups(DEFAULT_RUNGS)
    assert list(groups) == ["r0", "r2", "r3", "r4"] and groups["r0"][0] == ["r0", "r1"]  # r0 and r1: one shape
    res = run_ladder_shapes(SMOKE_RUNGS[:1], ["v3"], preset="smoke",
                            user_overrides={"data_path": str(demo_data.data_dir)}, repeats=2, steps_per_repeat=1,
                            profile_steps=1, log=lambda _: None,
                            fast={"step_compile": "off"})  # compiling is too slow for CI: test_step_compile
    assert list(res["ladder_shapes"]) == ["s1"]
    for shape in res["ladder_shapes"].values():
        assert set(shape["variants"]) == {"ce", "v3"}  # ce is added: the ceiling is plain CE's
        for key in ("step_ms", "eager_step_ms", "speedup_vs_eager", "mfu", "breakdown"):
            assert shape[key] == shape["variants"]["ce"][key]  # plain CE's figures at the top
        for v in shape["variants"].values():
            assert len(v["step_ms_all"]) == len(v["eager_step_ms_all"]) == 2
            assert v["speedup_min"] <= v["speedup_vs_eager"] <= v["speedup_max"]
            assert v["step_compiled"] is False  # both paths eager here (fast= above)
            b = v["breakdown"]
            assert b["forward_ms"] > 0 and b["backward_ms"] > 0 and b["adam_ms"] > 0 and b["ema_ms"] > 0
            assert b["muon_newton_schulz_ms"] > 0 and b["muon_other_ms"] >= 0
            parts = sum(b[k] for k in ("forward_ms", "backward_ms", "muon_newton_schulz_ms", "muon_other_ms",
                                       "adam_ms", "ema_ms", "rest_ms"))
            assert parts == pytest.approx(b["profiled_step_ms"])
        c = shape["ceiling"]
        assert c["floor_step_ms"] == pytest.approx(c["gemm_ms"] + c["attention_ms"] + c["update_ms"])
        assert c["speedup_ceiling_vs_eager"] == pytest.approx(shape["eager_step_ms"] / c["floor_step_ms"])
    assert "ceiling: CE cannot beat" in format_ladder_shapes(res)
