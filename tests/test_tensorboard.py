"""Live curves: `train --tensorboard` (the operational `tensorboard` key) writes the metrics.jsonl scalars as
TensorBoard event files in the run folder; ablate and ladder hand it to every run; without the optional
extra the flag fails at once with one line naming it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from jepagolf.cli import main
from jepagolf.config import build_config
from jepagolf.train.logger import TENSORBOARD_MISSING, RunLogger


def read_events(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the event files in ``folder``: tag -> [(step, value)], read by the tensorboard package."""
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0})  # 0: keep every point
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_logger_writes_every_number_of_every_record_as_a_scalar(tmp_path):
    pytest.importorskip("tensorboard")
    log = RunLogger(tmp_path, interactive=False, tensorboard=True)
    log.metrics("train", {"step": 1, "train_loss": 6.5, "lr_scale": 1.0, "tokens_per_s": 1234.0, "jepa_loss": 0.25})
    log.metrics("train", {"step": 3, "train_loss": 5.5, "lr_scale": 0.5, "tokens_per_s": 1300.0, "jepa_loss": 0.2})
    log.metrics("val", {"step": 3, "val_loss": 5.75, "val_bpb": 3.25})
    log.metrics("final_score", {"step": 3, "val_bpb": 3.0, "score_kind": "roundtrip", "score_stride": 64,
                                "comparable_to_sliding_leaderboard": False})
    log.close()
    events = read_events(tmp_path)  # stored as float32
    assert events["train/train_loss"] == [(1, 6.5), (3, 5.5)]
    assert events["train/lr_scale"] == [(1, 1.0), (3, 0.5)]
    assert events["train/jepa_loss"] == [(1, 0.25), (3, pytest.approx(0.2, rel=1e-6))]
    assert events["val/val_bpb"] == [(3, 3.25)] and events["final_score/val_bpb"] == [(3, 3.0)]
    assert "final_score/score_kind" not in events and "final_score/comparable_to_sliding_leaderboard" not in events
    assert (tmp_path / "metrics.jsonl").is_file()  # beside it, not instead of it


def test_a_run_with_tensorboard_writes_the_metrics_scalars(tmp_path, tiny_data, one_torch_thread):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    rc = main(["train", "--preset", "smoke", "--data", str(tiny_data), "--out", str(out), "--tensorboard",
               "--set", "iterations=6", "--set", "val_loss_every=3", "--set", "train_log_every=3"])
    assert rc == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = read_events(out)
    train_rows = [r for r in records if r["kind"] == "train"]
    for key in ("train_loss", "jepa_loss", "lr_scale", "tokens_per_s", "pred_std", "target_std"):  # JEPA ones too
        assert events[f"train/{key}"] == [(r["step"], pytest.approx(r[key], rel=1e-6)) for r in train_rows], key
    vals = [r for r in records if r["kind"] == "val"]
    assert vals and events["val/val_bpb"] == [(r["step"], pytest.approx(r["val_bpb"], rel=1e-6)) for r in vals]
    summary = json.loads((out / "summary.json").read_text())
    assert events["final_score/val_bpb"] == [(6, pytest.approx(summary["score_val_bpb"], rel=1e-6))]
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["tensorboard"] is True
    # Operational: the same model as without the flag.
    assert summary["config_hash"] == build_config("smoke", {"data_path": str(tiny_data), "iterations": "6",
                                                            "val_loss_every": "3", "train_log_every": "3"}).hash()


def test_without_the_extra_the_flag_fails_at_once_naming_it(tmp_path, monkeypatch, capsys, tiny_data):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import raises ImportError
    out = tmp_path / "run"
    assert main(["train", "--preset", "smoke", "--data", str(tiny_data), "--out", str(out), "--tensorboard"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {TENSORBOARD_MISSING}\n" and "pip install 'jepagolf[tensorboard]'" in err
    assert not out.exists()
    for command in (["ablate", "--arm", "a:", "--preset", "smoke"], ["ladder", "--smoke"]):
        assert main([*command, "--out", str(tmp_path / command[0]), "--tensorboard"]) == 2
        assert capsys.readouterr().err == f"error: {TENSORBOARD_MISSING}\n"
        assert not (tmp_path / command[0]).exists()
    with pytest.raises(Exception, match="jepagolf\\[tensorboard\\]"):
        RunLogger(tmp_path / "direct", tensorboard=True)  # programmatic use: the same one line
    assert not (tmp_path / "direct").exists()


@pytest.mark.parametrize("command", ["ablate", "ladder"])
def test_ablate_and_ladder_hand_the_flag_to_every_run(monkeypatch, tmp_path, command):
    from jepagolf.research import ablate, ladder

    seen: dict[str, dict[str, str]] = {}

    def fake(*args, **kwargs):
        seen["common"] = next(dict(a) for a in args if isinstance(a, dict))  # the overrides every run gets
        return ""

    monkeypatch.setattr(ablate, "main_ablate", fake)
    monkeypatch.setattr(ladder, "main_ladder", fake)
    args = ["ablate", "--arm", "a:", "--preset", "smoke"] if command == "ablate" else ["ladder", "--smoke"]
    assert main([*args, "--out", str(tmp_path / "x"), "--tensorboard"]) == 0
    assert seen["common"]["tensorboard"] == "true"
    assert main([*args, "--out", str(tmp_path / "x")]) == 0
    assert "tensorboard" not in seen["common"]


def test_an_unfinished_run_with_event_files_is_still_a_runs_own_folder(tmp_path):
    """An ablation rerun deletes an unfinished run folder of its own that holds only what a run writes: the
    event files of a --tensorboard run are among those."""
    from jepagolf.outputs import claim_dir, unfinished_run_removable

    run = tmp_path / "run"
    run.mkdir()
    claim_dir(run, "jepagolf ablate", complete=False)
    for name in ("train.log", "metrics.jsonl", "config.json", "events.out.tfevents.1796491245.host.23983.0"):
        (run / name).write_text("x")
    assert unfinished_run_removable(run, "jepagolf ablate") is None
    (run / "notes.txt").write_text("mine")
    assert "notes.txt" in unfinished_run_removable(run, "jepagolf ablate")
