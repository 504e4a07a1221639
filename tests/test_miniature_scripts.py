"""The miniature challenge's analysis scripts. Stage 3's arm rule (scripts/miniature_stage3_arms.py): an arm is
dropped only when its m1 Δ against ce is positive with paired-t p < 0.05, and an incomplete m1 decides nothing.
The price curve's prediction for stage 3 (scripts/miniature_price.py): P(r) through the measured points, along the
slope beyond them, and the predicted equal-time Δ = equal-steps Δ + P(r) set against stage 3's CI."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from jepagolf.research.ablate_run import write_runs_csv

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def arms_script():
    return _load("miniature_stage3_arms")


@pytest.fixture(scope="module")
def price_script():
    return _load("miniature_price")


def _runs(shift: dict[str, float], seeds: int = 24) -> list[dict]:
    rows = []
    for i in range(seeds):
        base = 3.6 + 0.02 * ((i * 7) % 5)  # seed-to-seed spread the pairing removes
        wobble = 0.001 * ((i * 3) % 4 - 1.5)  # paired noise, so every t-test has a finite p
        for arm in ("ce", "v3", "fast", "multi-horizon", "nextlat"):
            rows.append({"arm": arm, "seed": 1001 + i,
                         "val_loss": base + shift.get(arm, 0.0) + (wobble if arm != "ce" else 0.0)})
    return rows


def test_drops_only_an_arm_worse_at_p_below_005(arms_script, tmp_path, capsys):
    # v3 clearly worse (dropped); nextlat clearly better (kept: only "worse" drops); fast and multi-horizon level.
    path = tmp_path / "runs.csv"
    write_runs_csv(_runs({"v3": 0.02, "nextlat": -0.02}), path, columns=("arm", "seed", "val_loss"))
    assert arms_script.main([str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("v3: Δ +0.02") and out[0].endswith("dropped")
    assert out[3].startswith("nextlat: Δ -0.02") and out[3].endswith("kept")
    arms_line = out[-1]
    assert arms_line.startswith("ARMS=(--arm ce:jepa=false ")
    assert "--arm v3:" not in arms_line
    for spec in ("fast:jepa_target=online", "multi-horizon:jepa_recipe=multi-horizon", "nextlat:jepa_recipe=nextlat"):
        assert f"--arm {spec}" in arms_line


def test_incomplete_m1_decides_nothing(arms_script, tmp_path, capsys):
    path = tmp_path / "runs.csv"
    rows = _runs({"v3": 0.02})
    write_runs_csv(rows[:-1], path, columns=("arm", "seed", "val_loss"))  # the last seed's nextlat missing
    assert arms_script.main([str(path)]) == 2
    assert "1 runs missing" in capsys.readouterr().err
    write_runs_csv(_runs({}, seeds=23), path, columns=("arm", "seed", "val_loss"))
    assert arms_script.main([str(path)]) == 2
    assert "23 control seeds of 24" in capsys.readouterr().err


PRICES = {"1.25": {"steps": 3200, "mean": 0.05}, "1.5": {"steps": 2667, "mean": 0.09},
          "2": {"steps": 2000, "mean": 0.16}}


def test_price_passes_through_its_points_and_follows_the_slope_beyond(price_script):
    slope = -0.23
    assert price_script.price_at(1.0, PRICES, slope) == (0.0, False)
    assert price_script.price_at(4000 / 3200, PRICES, slope)[0] == pytest.approx(0.05)
    assert price_script.price_at(2.0, PRICES, slope) == (pytest.approx(0.16), False)
    mid, beyond = price_script.price_at(1.37, PRICES, slope)  # between two measured points
    assert 0.05 < mid < 0.09 and not beyond
    far, beyond = price_script.price_at(4.0, PRICES, slope)
    assert beyond and far == pytest.approx(0.16 + 0.23 * math.log(2))
    grid = [1.0 + 0.05 * i for i in range(40)]
    values = [price_script.price_at(r, PRICES, slope)[0] for r in grid]
    assert values == sorted(values)  # a costlier step never costs less


def test_stage3_prediction_is_equal_steps_delta_plus_price(price_script):
    stage2 = {"nextlat": {"delta": -0.01}}
    stage3 = []
    for i, seed in enumerate((2001, 2002, 2003, 2004)):
        stage3.append({"arm": "ce", "seed": seed, "steps": 4000, "val_loss": 3.6 + 0.01 * i})
        stage3.append({"arm": "nextlat", "seed": seed, "steps": 3200, "val_loss": 3.64 + 0.01 * i + 0.001 * (i % 2)})
    res = price_script.check_prediction(stage2, stage3, PRICES, -0.23)["nextlat"]
    assert res["cost_ratio"] == pytest.approx(1.25) and res["price"] == pytest.approx(0.05)
    assert res["predicted"] == pytest.approx(0.04)
    assert res["measured"] == pytest.approx(0.0405) and res["inside_ci"]
    stage2 = {"nextlat": {"delta": -0.05}}  # predicts 0.0, far below what stage 3 measured
    assert not price_script.check_prediction(stage2, stage3, PRICES, -0.23)["nextlat"]["inside_ci"]


def test_price_redone_from_its_committed_csv_matches_the_committed_report(price_script, tmp_path):
    committed = SCRIPTS.parent / "docs" / "results" / "miniature" / "price"
    res = price_script.analyse(price_script.read_runs(committed / "price-runs.csv"), None)
    expected = json.loads((committed / "price.json").read_text())
    assert res["price"] == expected["price"] and res["slope"] == expected["slope"] and res["loss"] == expected["loss"]
    lines = (committed / "price-runs.csv").read_text().splitlines()
    (tmp_path / "short.csv").write_text("\n".join(lines[:-1]) + "\n")  # one run missing
    with pytest.raises(SystemExit, match="no finished"):
        price_script.read_runs(tmp_path / "short.csv")
