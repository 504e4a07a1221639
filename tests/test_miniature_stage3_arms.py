"""Stage 3's arm rule (scripts/miniature_stage3_arms.py): an arm is dropped only when its m1 Δ against ce is
positive with paired-t p < 0.05, and an incomplete m1 decides nothing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from jepagolf.research.ablate_run import write_runs_csv

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "miniature_stage3_arms.py"


@pytest.fixture(scope="module")
def arms_script():
    spec = importlib.util.spec_from_file_location("miniature_stage3_arms", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
