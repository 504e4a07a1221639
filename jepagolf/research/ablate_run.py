"""Running an ablation plan: every (seed, arm) pair trained or resumed in its run folder, one row per run."""


from __future__ import annotations

import csv
import io
import json
import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jepagolf.config import Config
from jepagolf.jsonfile import read_json_object
from jepagolf.outputs import MARKER, claim_dir, is_locked, owns, unfinished_run_removable
from jepagolf.research.ablate_plan import AblationError, AblationPlan
from jepagolf.research.progress import Progress
from jepagolf.research.runs_csv import read_runs_table
from jepagolf.summary import read_scores, score_kind
from jepagolf.train.logger import atomic_write_text

CSV_COLUMNS = ("arm", "seed", "val_bpb", "prequant_val_bpb", "val_loss", "steps", "tokens", "seconds",
               "artifact_bytes", "config_hash", "run_dir", "score_kind", "prequant_val_loss",
               "init_seed", "mask_seed", "data_offset")

TrainFn = Callable[[Config, Any, Path], dict[str, Any]]

def refuse_foreign_folder(out: Path) -> None:
    """An ablation resumes, and deletes unfinished runs, only in its own folder: one carrying the marker it
    wrote there (outputs.owns), not merely an ablation.json, which anyone can write. Any other non-empty
    --out is refused before anything is calibrated or trained."""
    if out.exists() and not out.is_dir():
        raise AblationError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(p.name != MARKER for p in out.iterdir()) and not owns(out, ABLATE_COMMAND):
        raise AblationError(f"--out {out} is not empty and is not an ablation folder created by jepagolf ablate (no "
                            f"valid marker {MARKER}; an ablation.json alone does not count); ablate writes only into a "
                            "new folder or resumes its own: choose another --out")


def run_dir_for(out: Path, arm: str, seed: int) -> Path:
    return out / "runs" / f"{arm}-seed{seed}"


def finished_summary(run_dir: Path, cfg: Config) -> dict[str, Any] | None:
    """The run's summary when it finished with this configuration; None when it must (re)run.

    Raises when the folder holds a *finished* run of another configuration: that is someone's result.
    """
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        return None
    summary = read_json_object(summary_path)
    config_path = run_dir / "config.json"
    data = read_json_object(config_path).get("data") if config_path.is_file() else None
    if summary.get("config_hash") != cfg.hash() or data != cfg.to_dict()["data"]:
        raise AblationError(
            f"{run_dir} holds a finished run with another configuration (config hash "
            f"{summary.get('config_hash')} vs planned {cfg.hash()}, or another dataset); use another --out, "
            "or delete that folder to rerun it"
        )
    got, want = read_scores(summary, cfg.train.train_seq_len, summary_path).kind, score_kind(cfg)
    if got != want:
        raise AblationError(
            f"{run_dir} holds a finished run scored by {got.describe()}, but this ablation scores by "
            f"{want.describe()}; use another --out, or delete that folder to rerun it"
        )
    return summary


def run_ablation(
    plan: AblationPlan,
    out: Path,
    rt: Any,
    train_fn: TrainFn | None = None,
    log: Callable[[str], None] = print,
    progress: Progress | None = None,
    first: int = 0,
) -> list[dict[str, Any]]:
    """Run (or resume) every (seed, arm) pair; returns one row per run in plan order.

    Runs go seed by seed, all arms within a seed, so an ablation cut short still holds complete pairs.
    Each run's line says how far the whole job is and the time left (``progress``: runs ``first``.. of a
    longer job, such as a ladder; default this ablation alone, estimated by ``run_estimates``).
    """
    progress = progress or Progress(run_estimates(plan), seconds=_estimates_in_seconds(plan))
    if train_fn is None:
        from jepagolf.train.run import train as train_fn
    if rt.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if not owns(out, ABLATE_COMMAND):
            claim_dir(out, ABLATE_COMMAND, complete=False)  # new or empty (refuse_foreign_folder), or a ladder rung
        atomic_write_text(out / "ablation.json", json.dumps(plan.to_dict(), indent=2, sort_keys=True) + "\n")
    rows: list[dict[str, Any]] = []
    check_unfinished_runs(plan, out)  # before anything trains
    for seed in plan.seeds:
        for arm in plan.arms:
            cfg = plan.config(arm, seed)
            run_dir = run_dir_for(out, arm.name, seed)
            summary = finished_summary(run_dir, cfg)
            k = first + len(rows)
            label = f"{progress.line(k)} arm:{arm.name} seed:{seed}"
            if summary is not None and _cut_short(plan, summary, cfg):
                log(f"{label} stopped at step {summary.get('steps')} of {cfg.train.iterations} by the guard "
                    "earlier (a busy machine): rerunning it")
                summary = None
            if summary is not None:
                log(f"{label} finished earlier, skipped ({run_dir})")
                progress.skip(k)
            else:
                progress.begin(k)
            for attempt in range(2 if summary is None else 0):
                if run_dir.exists():
                    refuse_unremovable(run_dir)
                    log(f"{label} unfinished run folder {run_dir} removed, restarting")
                    if rt.is_main:
                        shutil.rmtree(run_dir)
                if rt.is_main:  # marked as this ablation's before the run writes there (outputs.claim_dir)
                    run_dir.mkdir(parents=True)
                    claim_dir(run_dir, ABLATE_COMMAND, complete=False)
                _barrier(rt)
                log(f"{label} training -> {run_dir}")
                summary = train_fn(cfg, rt, run_dir)
                if not _cut_short(plan, summary, cfg):
                    break
                log(f"{label} the guard cap stopped it at step {summary.get('steps')} of {cfg.train.iterations} "
                    f"(a busy machine){': once more' if attempt == 0 else '; kept, and flagged in the report'}")
            assert summary is not None
            if k not in progress.skipped:
                progress.end(k)
            rows.append({**row_from_summary(arm.name, seed, summary, run_dir, cfg.train.train_seq_len),
                         **factor_columns(cfg)})
    return rows


ABLATE_COMMAND = "jepagolf ablate"  # names the ownership marker of the run folders it creates


def refuse_unremovable(run_dir: Path) -> None:
    """A rerun deletes an unfinished run folder only when this ablation made it and it holds nothing but
    what a run writes (outputs.unfinished_run_removable), and no running process holds it."""
    if is_locked(run_dir):
        raise AblationError(f"{run_dir} is being trained by another running process (is the same "
                            "ablation running twice?); wait for it, or use another --out")
    why = unfinished_run_removable(run_dir, ABLATE_COMMAND)
    if why is not None:
        raise AblationError(f"{run_dir} holds an unfinished run that a rerun would delete, but {why}; move what "
                            "you want to keep out of it and delete the folder to rerun it, or use another --out")


def check_unfinished_runs(plan: AblationPlan, out: Path) -> None:
    for seed in plan.seeds:
        for arm in plan.arms:
            run_dir = run_dir_for(out, arm.name, seed)
            cfg = plan.config(arm, seed)
            summary = finished_summary(run_dir, cfg) if run_dir.exists() else None
            if run_dir.exists() and (summary is None or _cut_short(plan, summary, cfg)):
                refuse_unremovable(run_dir)


def run_estimates(plan: AblationPlan) -> list[float]:
    """Estimated wall time of each run in the order they run: the budget under --match wallclock, else the
    run's training FLOPs (relative units: the progress lines scale them by the time the runs take)."""
    budget = (plan.calibration or {}).get("budget_seconds") if plan.match == "wallclock" else None
    per_arm = [float(budget) if budget else plan.flops_per_step[a.name] * plan.config(a, plan.seeds[0]).train.iterations
               for a in plan.arms]
    return per_arm * len(plan.seeds)


def _estimates_in_seconds(plan: AblationPlan) -> bool:
    return plan.match == "wallclock" and bool((plan.calibration or {}).get("budget_seconds"))


def _cut_short(plan: AblationPlan, summary: Mapping[str, Any], cfg: Config) -> bool:
    """A wall-clock-matched run that the guard cap stopped before its calibrated steps: not at equal time
    (its warmdown never ran), so a resume trains it again rather than keep it."""
    return plan.match == "wallclock" and int(summary.get("steps", 0)) < cfg.train.iterations


def _barrier(rt: Any) -> None:
    if getattr(rt, "distributed", False):
        import torch.distributed as dist

        dist.barrier()


def factor_columns(cfg: Config) -> dict[str, int]:
    """What a run's seed came to: the seeds of its init and masks and its data offset (runs.csv)."""
    t = cfg.train
    return {"init_seed": t.resolved_init_seed, "mask_seed": t.resolved_mask_seed, "data_offset": t.data_offset}


def row_from_summary(
    arm: str, seed: int, s: Mapping[str, Any], run_dir: Path, train_seq_len: int = 0
) -> dict[str, Any]:
    scores = read_scores(s, train_seq_len, run_dir / "summary.json")
    for name in ("val_bpb", "val_loss", "prequant_val_bpb", "prequant_val_loss"):
        value = getattr(scores, name)
        if not math.isfinite(value):
            raise AblationError(f"run {arm}-seed{seed} scored {name}={value} (not finite), which no paired test "
                                f"can use; nothing was written to runs.csv: look into {run_dir}, and delete that "
                                "folder to train the run again")
    return {
        "arm": arm,
        "seed": seed,
        "val_bpb": scores.val_bpb,
        "prequant_val_bpb": scores.prequant_val_bpb,
        "val_loss": scores.val_loss,
        "prequant_val_loss": scores.prequant_val_loss,
        "steps": int(s["steps"]),
        "tokens": int(s["tokens_seen"]),
        "seconds": float(s["train_seconds"]),
        "artifact_bytes": int(s["artifact_bytes"]),
        "config_hash": s["config_hash"],
        "run_dir": str(run_dir),
        "score_kind": scores.kind.describe(),
        # Not in the CSV; used for the nats conversion, the guard check and the ladder.
        "params": int(s["params"]),
        "val_tokens": scores.val_tokens,
        "val_bytes": scores.val_bytes,
    }


# How write_runs_csv's numeric columns read back; any other column stays text.
_CSV_TYPES: dict[str, type] = {"seed": int, "val_bpb": float, "prequant_val_bpb": float, "val_loss": float,
                               "prequant_val_loss": float, "steps": int, "tokens": int, "seconds": float,
                               "artifact_bytes": int}


def read_runs_csv(path: Path, required: Sequence[str] = ("arm", "seed", "val_loss")) -> list[dict[str, Any]]:
    """The rows of an ablation's (or a ladder rung's) runs.csv as write_runs_csv wrote them, its numeric columns
    typed and finite; AblationError in one line for a missing or oversized file, a missing ``required`` column,
    or a value that does not read as its column's number."""
    return read_runs_table(path, types=_CSV_TYPES, required=required, error=AblationError)


def write_runs_csv(rows: Sequence[Mapping[str, Any]], path: Path, columns: Sequence[str] = CSV_COLUMNS) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())
