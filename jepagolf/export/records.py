"""Finished run folder(s) -> a challenge records folder (``jepagolf export``).

The folder holds ``train_gpt.py`` (generated from the package, see :mod:`jepagolf.sources`),
``submission.json``, a ``README.md`` written from the results, each seed's train log and artifact,
and ``requirements.txt``. Several runs of one configuration (differing only in seed) make one
submission with per-seed results, mean and standard deviation.

Accounting is by the files themselves: ``bytes_code`` is the size of the ``train_gpt.py`` written,
``bytes_model`` the size of the largest shipped artifact (every seed's artifact must fit), and the
export refuses -- writing nothing -- when their sum exceeds the cap, with a breakdown by tensor
group and the excess in bytes. The run folders are read and checked by :mod:`jepagolf.export.runs`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jepagolf.config import config_from_dict, jepa_variant_settings
from jepagolf.export.artifact import ARTIFACT_NAMES, artifact_file_scheme
from jepagolf.export.runs import (
    ExportError,
    Rescore,
    RunRecord,
    check_same_config,
    check_summary_numbers,
    read_run,
    verify_artifact,
    verify_scores,
)
from jepagolf.export.size import CAP_BYTES, SizeReport, artifact_size_report, over_cap_message
from jepagolf.outputs import check_output_dir, claim_dir, replace_dir, temp_sibling
from jepagolf.sources import SCRIPT_NAME, script_variants, source_hash
from jepagolf.summary import read_scores


class OverCapError(ExportError):
    """Code + model bytes exceed the cap; ``report`` has the breakdown."""

    def __init__(self, message: str, report: SizeReport) -> None:
        super().__init__(message)
        self.report = report


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n-1; 0 for a single run)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def technique_summary(config: dict[str, Any]) -> str:
    m, j, o, t = config["model"], config["jepa"], config["optim"], config["train"]
    slope = m["mlp_leaky_slope"]
    act = f"LeakyReLU({slope:g})^2" if slope else "relu^2"
    parts = [
        f"{m['num_layers']}L x {m['model_dim']}d GPT, {m['num_heads']} query / {m['num_kv_heads']} KV heads (GQA), "
        f"QK RMSNorm with learned q gain, RoPE, MLP x{m['mlp_mult']:g} {act}, vocab {m['vocab_size']}, "
        f"tied embeddings, logit soft-cap {m['logit_softcap']:g}"
        + (", U-Net skips" if m["unet_skips"] else "")
        + (f", BigramHash {m['bigram_buckets']}" if m["bigram_buckets"] else ""),
    ]
    variants = jepa_variant_settings(j)
    frac = j.get("jepa_mask_frac", 0)
    spans = f"spans masking ~{frac:.2%} of each sequence" if frac else f"{j['jepa_num_spans']} spans"
    if j["jepa"] and j["jepa_lambda"] > 0 and variants:
        parts.append(f"JEPA auxiliary loss, lambda {j['jepa_lambda']:g}, variant of v3: "
                     + ", ".join(f"{k}={v}" for k, v in variants.items()))
    elif j["jepa"] and j["jepa_lambda"] > 0:
        parts.append(
            f"span-masked I-JEPA auxiliary loss (lambda {j['jepa_lambda']:g}, {spans}, "
            f"EMA target {j['jepa_ema_start']:g}->{j['jepa_ema_end']:g}, residual predictor) regularised by VICReg "
            f"(var {j['jepa_var_weight']:g}, cov {j['jepa_cov_weight']:g})"
        )
    else:
        parts.append("plain next-token cross-entropy (no JEPA)")
    parts.append(
        f"Muon for matrices (lr {o['matrix_lr']:g}) + Adam for embeddings and scalars, warmdown {o['warmdown_iters']}, "
        + (f"artifact weight EMA {o['artifact_ema_decay']:g}" if o["artifact_ema_decay"] else "last weights exported")
    )
    cap = t["max_wallclock_seconds"]
    parts.append(f"{t['train_batch_tokens']:,} tokens/step x seq {t['train_seq_len']}, "
                 + (f"{cap:g} s wall-clock cap" if cap else f"{t['iterations']} steps"))
    e = config.get("export", {})
    if e.get("export_scheme") == "int8-zlib":
        parts.append("the reference's per-row int8 quantisation (clip at the 99.99984th percentile, tensors of "
                     "<= 65,536 elements kept in fp16/fp32), zlib, checksummed container")
        return "; ".join(parts)
    int5 = [x.strip() for x in str(e.get("int5_patterns", "")).split(",") if x.strip()]
    parts.append(
        "per-row int6 quantisation" + (f" (int5 for {', '.join(int5)})" if int5 else "")
        + (" with GPTQ rounding" if e.get("gptq") else "") + ", clip per row by reconstruction error, "
        "small and control tensors in float, LZMA, checksummed container"
    )
    return "; ".join(parts)


def default_blurb(run: RunRecord) -> str:
    m, jepa = run.config["model"], run.summary.get("jepa")
    objective = "with the span-masked JEPA + VICReg auxiliary objective" if jepa else "with plain cross-entropy"
    return (f"jepagolf `{run.config.get('preset')}`: a {m['num_layers']}-layer, {m['model_dim']}-wide GPT "
            f"({int(run.summary['params']):,} parameters) trained {objective}, shipped quantised and "
            "LZMA-compressed.")


def default_track(config: dict[str, Any]) -> str:
    cap = config["train"]["max_wallclock_seconds"]
    return "10min_16mb" if 0 < cap <= 600 else "non_record_16mb"


def _hardware(summary: dict[str, Any]) -> str:
    world = int(summary.get("world_size", 1))
    device = str(summary.get("device", "unknown"))
    return f"{world}x {device}" if world > 1 else device


def _joined(values: Sequence[str]) -> str:
    return ", ".join(dict.fromkeys(values))  # unique, in order


def _requirements(summary: dict[str, Any]) -> str:
    v = summary.get("versions", {})
    lines = []
    for pkg in ("torch", "numpy", "sentencepiece"):
        version = str(v.get(pkg, "")).split("+")[0]  # 2.13.0+cpu -> 2.13.0 (local build tags are not on PyPI)
        lines.append(f"{pkg}=={version}" if re.fullmatch(r"[0-9][0-9A-Za-z.]*", version) else pkg)
    return "\n".join(lines) + "\n"


def build_submission(
    runs: Sequence[RunRecord],
    *,
    code: dict[str, bytes],
    compressed: bool,
    name: str,
    author: str,
    github_id: str,
    blurb: str,
    track: str,
    date: str,
    cap_bytes: int,
    source_hash: str,
) -> dict[str, Any]:
    """submission.json contents, from the runs' summaries and the shipped files' sizes."""
    ref = runs[0]
    bytes_code = len(code["compressed" if compressed else "plain"])
    bytes_model = max(r.artifact_bytes for r in runs)
    seed_results: dict[str, dict[str, Any]] = {}
    for r in runs:
        s = r.summary
        sc = read_scores(s, int(r.config["train"]["train_seq_len"]), r.dir / "summary.json")
        steps = int(s["steps"])
        seed_results[str(r.seed)] = {
            "val_loss": sc.val_loss,  # the score: what the challenge evaluates (round trip, sliding when set)
            "val_bpb": sc.val_bpb,
            "score_kind": sc.kind.describe(),
            "roundtrip_val_bpb": sc.roundtrip_val_bpb,  # non-overlapping windows of train_seq_len
            "pre_quant_val_loss": sc.prequant_val_loss,
            "pre_quant_val_bpb": sc.prequant_val_bpb,
            "quant_gap_bpb": sc.roundtrip_val_bpb - sc.prequant_val_bpb,
            "steps": steps,
            "train_seconds": s["train_seconds"],
            # Runs from before the budget split have no calibration figure: their calibration ran after the cap.
            "calibration_seconds": s.get("calibration_seconds"),
            "budget_seconds": s.get("budget_seconds"),
            "ms_per_step": 1000 * s["train_seconds"] / max(steps, 1),
            "tokens_seen": s["tokens_seen"],
            "bytes_model": r.artifact_bytes,
            "bytes_total": r.artifact_bytes + bytes_code,
            "hardware": _hardware(s),
            "log": f"train_seed{r.seed}.log",
        }
    res = list(seed_results.values())
    val_loss, val_loss_std = _mean_std([x["val_loss"] for x in res])
    val_bpb, val_bpb_std = _mean_std([x["val_bpb"] for x in res])
    pre_loss, _ = _mean_std([x["pre_quant_val_loss"] for x in res])
    pre_bpb, pre_bpb_std = _mean_std([x["pre_quant_val_bpb"] for x in res])
    rt_bpb, _ = _mean_std([x["roundtrip_val_bpb"] for x in res])
    kinds = list(dict.fromkeys(x["score_kind"] for x in res))
    if len(kinds) > 1:
        raise ExportError(f"the runs were scored differently ({'; '.join(kinds)}); one submission needs one score")
    params = int(ref.summary["params"])
    return {
        "author": author,
        "github_id": github_id,
        "name": name,
        "blurb": blurb,
        "date": date,
        "track": track,
        "val_loss": val_loss,
        "val_bpb": val_bpb,
        "score_kind": kinds[0],
        "val_loss_std": val_loss_std,
        "val_bpb_std": val_bpb_std,
        "pre_quant_val_loss": pre_loss,
        "pre_quant_val_bpb": pre_bpb,
        "pre_quant_val_bpb_std": pre_bpb_std,
        "roundtrip_val_bpb": rt_bpb,
        "quant_gap_bpb": rt_bpb - pre_bpb,
        "mean_val_loss": val_loss,
        "mean_val_bpb": val_bpb,
        "bytes_total": bytes_code + bytes_model,
        "bytes_code": bytes_code,
        "bytes_model": bytes_model,
        "bytes_code_plain": len(code["plain"]),
        "bytes_code_compressed": len(code["compressed"]),
        "code_compressed": compressed,
        "cap_bytes": cap_bytes,
        "params": params,
        "bytes_per_param": bytes_model / max(params, 1),
        "seeds": [r.seed for r in runs],
        "seed_results": seed_results,
        "hardware": _joined([_hardware(r.summary) for r in runs]),
        "pytorch_version": _joined([str(r.summary.get("versions", {}).get("torch", "unknown")) for r in runs]),
        "technique_summary": technique_summary(ref.config),
        "preset": ref.config.get("preset"),
        "jepa": bool(ref.summary.get("jepa")),
        "config_hash": config_from_dict(ref.config).hash(),
        "run_source_hashes": list(dict.fromkeys(str(r.summary.get("source_hash", "")) for r in runs)),
        "export_source_hash": source_hash,
    }


def _fmt_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def budget_section(sub: dict[str, Any], runs: Sequence[RunRecord]) -> list[str]:
    """README lines on how the training-time budget was spent: everything that read training data
    (the training steps and the GPTQ calibration) against the wall-clock cap."""
    cap = float(runs[0].config["train"]["max_wallclock_seconds"])
    lines = ["## Time budget", ""]
    if any(sub["seed_results"][str(r.seed)]["budget_seconds"] is None for r in runs):
        return lines + ["Some runs predate the train/calibration split: their GPTQ calibration (if any) ran after "
                        "the training clock stopped and is not counted.", ""]
    lines.append("Everything that read training data ran on the training clock: the optimizer steps, then the "
                 "GPTQ calibration (whose cost was measured on a slice before the clock started and kept out of "
                 "the steps' share). Validation, export and the round-trip evaluation are not training time."
                 if runs[0].config.get("export", {}).get("gptq") else
                 "Everything that read training data ran on the training clock: only the optimizer steps (no "
                 "calibration). Validation, export and the round-trip evaluation are not training time.")
    lines += ["", _fmt_row(["seed", "training steps s", "calibration s", "total s", "cap s"]),
              _fmt_row(["---", "---:", "---:", "---:", "---:"])]
    for r in runs:
        x = sub["seed_results"][str(r.seed)]
        lines.append(_fmt_row([str(r.seed), f"{x['train_seconds']:.1f}", f"{x['calibration_seconds']:.1f}",
                               f"{x['budget_seconds']:.1f}", f"{cap:g}" if cap else "none"]))
    return lines + [""]


def render_readme(sub: dict[str, Any], runs: Sequence[RunRecord], size: SizeReport, warnings: Sequence[str]) -> str:
    """README.md from the submission and the size report."""
    cfg = runs[0].config
    n = len(runs)
    lines = [f"# {sub['name']}", "", sub["blurb"], ""]
    lines.append(
        f"**val_bpb {sub['val_bpb']:.4f}** (the score: {sub['score_kind']}; mean of {n} seed{'s' if n > 1 else ''}"
        + (f", std {sub['val_bpb_std']:.4f}" if n > 1 else "")
        + f") -- {sub['bytes_total']:,} bytes of the {sub['cap_bytes']:,}-byte cap. "
        f"Track `{sub['track']}`, {sub['hardware']}, PyTorch {sub['pytorch_version']}."
    )
    lines += ["", "## Results", ""]
    head = ["seed", "val_bpb (score)", "round trip, non-overlapping", "pre-quant val_bpb", "quant gap", "val_loss",
            "steps", "train s", "ms/step", "artifact bytes"]
    lines += [_fmt_row(head), _fmt_row(["---"] * len(head))]
    for r in runs:
        x = sub["seed_results"][str(r.seed)]
        lines.append(_fmt_row([str(r.seed), f"{x['val_bpb']:.6f}", f"{x['roundtrip_val_bpb']:.6f}",
                               f"{x['pre_quant_val_bpb']:.6f}", f"{x['quant_gap_bpb']:+.6f}", f"{x['val_loss']:.6f}",
                               str(x["steps"]), f"{x['train_seconds']:.1f}", f"{x['ms_per_step']:.1f}",
                               f"{x['bytes_model']:,}"]))
    lines.append(_fmt_row(["**mean**", f"**{sub['val_bpb']:.6f}**", f"{sub['roundtrip_val_bpb']:.6f}",
                           f"{sub['pre_quant_val_bpb']:.6f}", f"{sub['quant_gap_bpb']:+.6f}", f"{sub['val_loss']:.6f}",
                           "", "", "", ""]))
    if n > 1:
        lines.append(_fmt_row(["std", f"{sub['val_bpb_std']:.6f}", "", f"{sub['pre_quant_val_bpb_std']:.6f}", "",
                               f"{sub['val_loss_std']:.6f}", "", "", "", ""]))
    lines += ["", "val_bpb and val_loss are the score, what the challenge evaluates: " + sub["score_kind"] + ". The "
              "round trip, pre-quant figures and the quantisation gap (round trip - pre-quant) use non-overlapping "
              "windows of the training length. Standard deviations are sample standard deviations (n-1).", ""]
    lines += budget_section(sub, runs)
    lines += ["## Sizes", "", _fmt_row(["", "bytes"]), _fmt_row(["---", "---:"])]
    kind = "compressed, self-extracting" if sub["code_compressed"] else "plain"
    lines += [
        _fmt_row([f"`{SCRIPT_NAME}` as shipped ({kind})", f"{sub['bytes_code']:,}"]),
        _fmt_row([f"`{SCRIPT_NAME}` plain / compressed",
                  f"{sub['bytes_code_plain']:,} / {sub['bytes_code_compressed']:,}"]),
        _fmt_row(["model artifact (largest seed)", f"{sub['bytes_model']:,}"]),
        _fmt_row(["**total**", f"**{sub['bytes_total']:,}**"]),
        _fmt_row(["cap", f"{sub['cap_bytes']:,}"]),
        _fmt_row(["headroom", f"{sub['cap_bytes'] - sub['bytes_total']:,}"]),
        _fmt_row(["parameters / artifact bytes per parameter", f"{sub['params']:,} / {sub['bytes_per_param']:.3f}"]),
        "",
        "Largest artifact by tensor group (each group's share of the file: the group LZMA-compressed on its own,",
        "scaled so the groups add up to the file's tensor bytes; overhead is the header and the framing):",
        "",
        "```",
        size.table(),
        "```",
        "",
    ]
    lines += ["## Configuration", "", sub["technique_summary"] + ".", ""]
    lines += [_fmt_row(["section", "settings"]), _fmt_row(["---", "---"])]
    for section, values in cfg.items():
        if isinstance(values, dict):
            lines.append(_fmt_row([section, ", ".join(f"`{k.upper()}={v}`" for k, v in sorted(values.items()))]))
    lines += ["", f"Preset `{cfg.get('preset')}`, config hash `{sub['config_hash']}`, exported code "
              f"`{sub['export_source_hash']}` (runs: {', '.join(f'`{h}`' for h in sub['run_source_hashes'])}).", ""]
    data_note = ("The runs used the offline demo corpus (`jepagolf data demo`; the script builds it on first use)."
                 if not cfg["data"]["data_path"] else
                 f"The runs read `{cfg['data']['data_path']}`; point `DATA_PATH` / `TOKENIZER_PATH` at your copy.")
    seeds = " ".join(str(r.seed) for r in runs)
    lines += [
        "## Reproduce", "",
        f"`{SCRIPT_NAME}` is the jepagolf package's own code with this configuration baked in; every setting "
        "can be overridden by its environment variable (names above). " + data_note, "",
        "```bash",
        "pip install -r requirements.txt",
        f"for SEED in {seeds}; do",
        f"  SEED=$SEED OUT_DIR=seed$SEED torchrun --standalone --nproc_per_node=8 {SCRIPT_NAME}",
        "done",
        "```", "",
        f"`python {SCRIPT_NAME}` runs on one device. Each run writes `train.log`, `metrics.jsonl`, `summary.json` and "
        f"`{ARTIFACT_NAMES[artifact_file_scheme(runs[0].artifact)]}`; `jepagolf eval` re-scores an artifact.", "",
    ]
    lines += ["## Files", ""]
    lines.append(f"- `{SCRIPT_NAME}`: the single-file trainer (counted code bytes)")
    lines.append("- `submission.json`: results and sizes")
    for r in runs:
        lines.append(f"- `train_seed{r.seed}.log`: the training log of seed {r.seed}")
    if sub.get("artifacts_included"):
        for r in runs:
            lines.append(f"- `{r.shipped_artifact}`: the artifact of seed {r.seed}")
    lines.append("- `requirements.txt`: the versions the runs used")
    if warnings:
        lines += ["", "## Notes", ""] + [f"- {w}" for w in warnings]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the command


def _check_shipped_sizes(folder: Path, runs: Sequence[RunRecord], sub: dict[str, Any], artifacts: bool) -> None:
    """The sizes reported must be the sizes of the files shipped (re-read from disk)."""
    shipped_code = (folder / SCRIPT_NAME).stat().st_size
    if shipped_code != sub["bytes_code"]:
        raise ExportError(f"{SCRIPT_NAME} is {shipped_code} bytes on disk, {sub['bytes_code']} accounted")
    if artifacts:
        shipped_model = max((folder / r.shipped_artifact).stat().st_size for r in runs)
        if shipped_model != sub["bytes_model"]:
            raise ExportError(f"largest artifact is {shipped_model} bytes on disk, {sub['bytes_model']} accounted")


EXPORT_COMMAND = "jepagolf export"  # names the records folder's ownership marker (outputs.claim_dir)


def export_records(
    run_dirs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    name: str | None = None,
    author: str = "",
    github_id: str = "",
    blurb: str | None = None,
    track: str | None = None,
    date: str | None = None,
    compress: bool | None = None,
    cap_bytes: int = CAP_BYTES,
    include_artifacts: bool = True,
    overwrite: bool = False,
    rescore: Rescore | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Write the records folder; return (submission dict, warnings). Nothing is written on refusal.

    ``rescore`` evaluates a run's artifact afresh (see ``verify_scores``); None publishes the stored
    scores unverified, with a warning."""
    if not run_dirs:
        raise ExportError("no run folder given")
    out = Path(out_dir)
    check_output_dir(out, command=EXPORT_COMMAND, overwrite=overwrite, own_needs_overwrite=True,
                     inputs=[Path(d) for d in run_dirs])
    runs = [read_run(d) for d in run_dirs]
    check_same_config(runs)
    for run in runs:
        verify_artifact(run)
        check_summary_numbers(run)  # cheap; the fresh evaluation comes last

    code = script_variants(runs[0].config)
    if compress is None:
        compress = len(code["compressed"]) < len(code["plain"])
    script = code["compressed" if compress else "plain"]
    largest = max(runs, key=lambda r: r.artifact_bytes)
    size = artifact_size_report(largest.artifact, code_bytes=len(script), cap_bytes=cap_bytes, codecs=True)
    if size.total_bytes > cap_bytes:
        raise OverCapError(over_cap_message(size), size)
    score_notes = [note for run in runs for note in verify_scores(run, rescore)]  # evaluates: the costly check last

    here = source_hash()
    warnings = list(score_notes)
    stale = [r for r in runs if r.summary.get("source_hash") not in (None, here)]
    if stale:
        warnings.append(
            f"the package code changed since {len(stale)} of the runs (run source "
            f"{_joined([str(r.summary.get('source_hash')) for r in stale])}, now {here}): {SCRIPT_NAME} is today's "
            "code, so re-run it to confirm the scores"
        )
    cfg0 = runs[0].config
    sub = build_submission(
        runs, code=code, compressed=compress, name=name or f"jepagolf {cfg0.get('preset', 'custom')}",
        author=author, github_id=github_id, blurb=blurb or default_blurb(runs[0]),
        track=track or default_track(cfg0),
        date=date or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), cap_bytes=cap_bytes, source_hash=here,
    )
    sub["artifacts_included"] = include_artifacts
    sub["score_verified"] = rescore is not None
    if len(runs) > 1 and len({r.summary.get("source_hash") for r in runs}) > 1:
        warnings.append("the runs were trained by different versions of the package code")

    # Build the folder beside its destination, then move it into place: a failure leaves no half folder,
    # and an earlier records folder stays until the new one is complete.
    tmp = temp_sibling(out)
    try:
        (tmp / SCRIPT_NAME).write_bytes(script)
        for r in runs:
            shutil.copyfile(r.log, tmp / f"train_seed{r.seed}.log")
            if include_artifacts:
                shutil.copyfile(r.artifact, tmp / r.shipped_artifact)
        (tmp / "requirements.txt").write_text(_requirements(runs[0].summary), encoding="utf-8")
        # allow_nan=False: a non-finite number would make invalid JSON (checked above; this is the last guard).
        (tmp / "submission.json").write_text(json.dumps(sub, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(render_readme(sub, runs, size, warnings), encoding="utf-8")
        _check_shipped_sizes(tmp, runs, sub, include_artifacts)
        os.chmod(tmp, 0o755)
        claim_dir(tmp, EXPORT_COMMAND)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sub, warnings
