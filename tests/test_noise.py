"""The noise study's arithmetic (issue 19, item 5): each component recovered from simulated designs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jepagolf.research.noise import DesignDeltas, decompose, seeds_for_mde


def test_seeds_for_an_mde_of_0_005_match_the_plans_table():
    # docs/results/noise-plan.md: paired sd 0.003 -> 6 seeds, 0.005 -> 10, 0.010 -> 34.
    assert [seeds_for_mde(sd) for sd in (0.003, 0.005, 0.010)] == [6, 10, 34]
    assert seeds_for_mde(0.0) == 2 and seeds_for_mde(1.0) is None


def test_decompose_recovers_simulated_components():
    rng = np.random.default_rng(0)
    n = 20_000
    s_init, s_mask, s_rt, s_val = 0.010, 0.004, 0.006, 0.003  # sds of one Δ's parts

    def design(init: bool, mask: bool) -> DesignDeltas:
        pre = 0.002 + (rng.normal(0, s_init, n) if init else 0) + (rng.normal(0, s_mask, n) if mask else 0)
        rt = pre + rng.normal(0, s_rt, n)
        a, b = rng.normal(0, s_val, n), rng.normal(0, s_val, n) + 0.001  # slice B scores 0.001 lower Δ
        return DesignDeltas(pre=(pre + a).tolist(), rt=(rt + a).tolist(), rt_b=(rt + b - 0.001).tolist())

    dec = decompose({"init": design(True, False), "masks": design(False, True), "all": design(True, True)},
                    scored_tokens=262_144, split_tokens=800_302)
    assert dec.sd_pre["init"] == pytest.approx(math.hypot(s_init, s_val), rel=0.03)
    assert dec.sd_pre["masks"] == pytest.approx(math.hypot(s_mask, s_val), rel=0.03)
    assert dec.var_roundtrip["all"] == pytest.approx(s_rt**2, rel=0.1)
    assert dec.sd_roundtrip_own["masks"] == pytest.approx(s_rt, rel=0.03)
    assert dec.var_val == pytest.approx(s_val**2, rel=0.05) and dec.val_df == 3 * (n - 1)
    assert dec.val_shift == pytest.approx(0.0, abs=2e-4)
    # Net of the validation part each design carries: the factors' own variances, and init and masks add.
    assert dec.var_factor["init"] == pytest.approx(s_init**2, rel=0.05)
    assert dec.var_factor["masks"] == pytest.approx(s_mask**2, rel=0.05)
    assert dec.interaction == pytest.approx(0.0, abs=4e-6)
    assert dec.sd_before == pytest.approx(math.sqrt(s_init**2 + s_mask**2 + s_rt**2 + s_val**2), rel=0.03)
    expected_after = math.sqrt(s_init**2 + s_mask**2 + s_val**2 * 262_144 / 800_302)
    assert dec.sd_after == pytest.approx(expected_after, rel=0.03)
    assert dec.seeds_after is not None and dec.seeds_before is not None and dec.seeds_after < dec.seeds_before


def test_decompose_needs_the_all_design_and_a_sane_slice():
    d = DesignDeltas(pre=[0.0, 0.01], rt=[0.0, 0.02])
    with pytest.raises(ValueError, match="'all' design"):
        decompose({"init": d}, 1, 2)
    with pytest.raises(ValueError, match="scored_tokens"):
        decompose({"all": d}, 3, 2)
    dec = decompose({"all": d}, 1, 2)  # no slice B: no validation component, nothing subtracted
    assert math.isnan(dec.var_val) and dec.sd_after == pytest.approx(dec.sd_pre["all"])
