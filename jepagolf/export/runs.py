"""Finished run folders as an export reads them: ``RunRecord`` (config, summary, artifact, log), read and
cross-checked (:func:`load_run`), their scores checked against the log and, when asked, a fresh
evaluation (:func:`verify_scores`), and the check that several runs are one configuration.

:mod:`jepagolf.export.records` turns them into a records folder.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jepagolf.config import ConfigError, config_dict_hash, config_from_dict
from jepagolf.export.artifact import ARTIFACT_NAME, ARTIFACT_NAMES, artifact_file_scheme, artifact_meta
from jepagolf.jsonfile import MAX_JSON_BYTES, JsonFileError, read_json_object

# Config keys that may differ between the runs of one submission: the seed is what varies, and
# where the data sits or which device string was asked for does not change the model.
SEED_FREE_KEYS = frozenset({"train.seed", "train.device", "train.compile", "data.data_path", "data.tokenizer_path"})


class ExportError(ValueError):
    """Run folders that cannot become a submission: missing files, mixed configs, over the cap."""


# A fresh evaluation of a run's artifact and the tolerance to compare the stored score with.
Rescore = Callable[["RunRecord"], tuple["FreshScore", float]]


@dataclass
class FreshScore:
    """A fresh evaluation of a run's artifact: the round trip (non-overlapping windows of train_seq_len)
    and the score (the run's scoring windows; the same figures when it has none of its own)."""

    roundtrip_loss: float
    roundtrip_bpb: float
    score_loss: float
    score_bpb: float


@dataclass
class RunRecord:
    dir: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    artifact: Path
    log: Path

    @property
    def seed(self) -> int:
        return int(self.config["train"]["seed"])

    @property
    def artifact_bytes(self) -> int:
        return self.artifact.stat().st_size

    @property
    def shipped_artifact(self) -> str:
        """The artifact's name in a records folder: by seed, named for the scheme its file holds (so a run
        folder from before the names told the scheme apart ships its artifact under the true one)."""
        name = ARTIFACT_NAMES[artifact_file_scheme(self.artifact)]
        return name.replace("final_model", f"final_model_seed{self.seed}", 1)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return read_json_object(path)
    except JsonFileError as e:
        raise ExportError(str(e)) from None


def load_run(run_dir: str | os.PathLike[str]) -> RunRecord:
    """Read and cross-check one finished run folder (files, config, artifact)."""
    run = read_run(run_dir)
    verify_artifact(run)
    return run


def read_run(run_dir: str | os.PathLike[str]) -> RunRecord:
    """Read one finished run folder: its files exist and its config is valid."""
    d = Path(run_dir)
    if not d.is_dir():
        raise ExportError(f"run folder {d} does not exist")
    missing = [n for n in ("config.json", "summary.json", "train.log") if not (d / n).is_file()]
    if missing:
        hint = " (did the run finish?)" if "summary.json" in missing else ""
        raise ExportError(f"run folder {d} lacks {', '.join(missing)}{hint}")
    for name in ("config.json", "summary.json", "train.log", "metrics.jsonl"):
        _inside_run(d, name)
    config, summary = _read_json(d / "config.json"), _read_json(d / "summary.json")
    artifact = _inside_run(d, str(summary.get("artifact", ARTIFACT_NAME)))
    if not artifact.is_file():
        raise ExportError(f"run folder {d} lacks its artifact {artifact.name}")
    try:
        config_from_dict(config)
    except (ConfigError, TypeError) as e:
        raise ExportError(f"{d / 'config.json'}: {e}") from e
    run = RunRecord(d, config, summary, artifact, d / "train.log")
    if int(summary.get("seed", run.seed)) != run.seed:
        raise ExportError(f"{d}: summary.json seed {summary.get('seed')} differs from config.json seed {run.seed}")
    return run


def _inside_run(run_dir: Path, name: str) -> Path:
    """``run_dir / name``, refused unless it stays inside the run folder once symlinks are resolved:
    a run folder's files say where its artifact is, and export must never publish a file from elsewhere."""
    path = run_dir / name
    if not path.resolve().is_relative_to(run_dir.resolve()):
        raise ExportError(f"{path} points outside the run folder {run_dir} (a path or symlink leading to "
                          f"{path.resolve()}); export takes a run's files only from its own folder")
    return path


def _finite(summary: dict[str, Any], key: str, where: Path) -> float:
    value = summary.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ExportError(f"{where}/summary.json: {key} is {value!r}, not a finite number; a run without a "
                          "finite score cannot be exported")
    return float(value)


def logged_final(run: RunRecord, kind: str) -> dict[str, Any] | None:
    """The last ``kind`` record (e.g. ``final_pre_quant``) of the run's metrics.jsonl, or None."""
    path = run.dir / "metrics.jsonl"
    if not path.is_file():
        return None
    found = None
    needle = f'"kind": "{kind}"'
    with open(path, encoding="utf-8", errors="replace") as f:
        # The trainer's lines are short; a longer one is read in bounded pieces and skipped, and only the
        # final records are parsed.
        in_long_line = False
        while line := f.readline(MAX_JSON_BYTES):
            whole = not in_long_line and (line.endswith("\n") or len(line) < MAX_JSON_BYTES)
            in_long_line = not line.endswith("\n")
            if whole and needle in line:
                try:
                    record = json.loads(line)
                except (ValueError, RecursionError):
                    continue
                found = record if isinstance(record, dict) else found
    return found


def _score_keys(summary: dict[str, Any]) -> tuple[dict[str, str], tuple[str, str]]:
    """({published key: what a fresh evaluation must reproduce, "roundtrip" or "score"}, pre-quant keys),
    for both summary layouts: version 2 (``summary_version``: ``score_*`` leads, ``val_*`` repeat it,
    ``prequant_*``) and version 1 (``roundtrip_*`` is the score, ``val_*`` the pre-quant figures)."""
    fresh = {"roundtrip_val_bpb": "roundtrip", "roundtrip_val_loss": "roundtrip"}
    if "summary_version" in summary:
        fresh.update({k: "score" for k in ("score_val_bpb", "score_val_loss", "val_bpb", "val_loss")})
        return fresh, ("prequant_val_bpb", "prequant_val_loss")
    return fresh, ("val_bpb", "val_loss")


def check_summary_numbers(run: RunRecord) -> dict[str, float]:
    """The scores export publishes from ``run``'s summary.json, each checked to be a finite number; the
    pre-quant ones, whose weights are not kept, must also equal what the run logged in metrics.jsonl."""
    d, s = run.dir, run.summary
    fresh_keys, pre_keys = _score_keys(s)
    values = {k: _finite(s, k, d) for k in (*fresh_keys, *pre_keys, "train_seconds")}
    pre = logged_final(run, "final_pre_quant")
    if pre is None:
        # Without it an edited pre-quant figure would be published unchecked.
        raise ExportError(f"{d}/metrics.jsonl is missing or holds no readable final_pre_quant record, so the "
                          f"pre-quant {pre_keys[0]} in summary.json cannot be checked; export needs the run's own "
                          "metrics.jsonl")
    if (pre.get("val_bpb"), pre.get("val_loss")) != (values[pre_keys[0]], values[pre_keys[1]]):
        raise ExportError(f"{d}/summary.json: pre-quant {pre_keys[0]} {values[pre_keys[0]]!r} / {pre_keys[1]} "
                          f"{values[pre_keys[1]]!r} differ from the run's metrics.jsonl ({pre.get('val_bpb')!r} / "
                          f"{pre.get('val_loss')!r}); summary.json was edited after the run")
    return values


def verify_scores(run: RunRecord, rescore: Rescore | None) -> list[str]:
    """Check the summary's numbers (``check_summary_numbers``) and that the round-trip figures and the
    score agree with ``rescore(run)``, a fresh evaluation of the artifact, within its tolerance; return
    notes for the README (the scores were not re-evaluated when ``rescore`` is None)."""
    d = run.dir
    values = check_summary_numbers(run)
    fresh_keys, _ = _score_keys(run.summary)
    if rescore is None:
        return [f"seed {run.seed}: the score was taken from summary.json without re-evaluating the artifact "
                "(--no-verify-score)"]
    fresh, tolerance = rescore(run)
    got = {"roundtrip": (fresh.roundtrip_bpb, fresh.roundtrip_loss), "score": (fresh.score_bpb, fresh.score_loss)}
    for key, which in fresh_keys.items():
        value = got[which][0 if key.endswith("bpb") else 1]
        if not math.isfinite(value) or abs(values[key] - value) > tolerance:
            raise ExportError(f"{d}/summary.json: {key} is {values[key]!r}, but evaluating the artifact gives "
                              f"{value!r} (tolerance {tolerance:g}); the summary does not describe this artifact")
    return []


def verify_artifact(run: RunRecord) -> None:
    """The artifact is intact (checksum), unchanged since the run, and written by the run's config."""
    d, summary, artifact = run.dir, run.summary, run.artifact
    if "artifact_bytes" in summary and run.artifact_bytes != summary["artifact_bytes"]:
        raise ExportError(
            f"{artifact}: {run.artifact_bytes} bytes on disk but the run wrote {summary['artifact_bytes']}; "
            "the artifact was replaced after the run"
        )
    meta = artifact_meta(artifact)  # verifies magic, lengths and checksum
    expected = config_from_dict(run.config).hash()
    # A config field added to the package after the run changes the re-parsed hash; the hash of the
    # config as it was written is what the trainer put in the artifact.
    if meta.get("config_hash") not in (expected, config_dict_hash(run.config)):
        raise ExportError(f"{artifact} was written by config {meta.get('config_hash')}, the folder's config.json "
                          f"is {expected}; {d} mixes files of different runs")


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for section, values in config.items():
        if isinstance(values, dict):
            out.update({f"{section}.{k}": v for k, v in values.items()})
        else:
            out[section] = values
    return out


def config_differences(a: dict[str, Any], b: dict[str, Any], ignore: frozenset[str] = SEED_FREE_KEYS) -> list[str]:
    """Flat keys (``section.name``) whose values differ between two config dicts, ignored keys aside."""
    fa, fb = _flat(a), _flat(b)
    return sorted(k for k in set(fa) | set(fb) if k not in ignore and fa.get(k, "<absent>") != fb.get(k, "<absent>"))


def check_same_config(runs: Sequence[RunRecord]) -> None:
    """Refuse runs that are not seeds of one configuration, naming the keys that differ."""
    seeds = [r.seed for r in runs]
    dupes = sorted({s for s in seeds if seeds.count(s) > 1})
    if dupes:
        raise ExportError(f"several run folders have seed {', '.join(map(str, dupes))}; a submission needs "
                          "one run per seed")
    ref = runs[0]
    for run in runs[1:]:
        diff = config_differences(ref.config, run.config)
        if diff:
            fa, fb = _flat(ref.config), _flat(run.config)
            detail = "; ".join(f"{k}: {fa.get(k, '<absent>')!r} vs {fb.get(k, '<absent>')!r}" for k in diff)
            raise ExportError(f"runs {ref.dir} and {run.dir} differ in config keys other than the seed: {detail}")


# ----------------------------------------------------------------------------- content
