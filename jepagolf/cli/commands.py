"""One function per command (``cmd_train``, ``cmd_eval``, ``cmd_data_*``, ``cmd_ablate`` ...): each takes the
parsed arguments and returns the exit status; the work itself is in the wings below."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from jepagolf.config import (
    ConfigError,
    build_config,
    field_index,
    parse_set_args,
    read_config_json,
)

if TYPE_CHECKING:
    pass

from jepagolf.cli.flags import (
    _default_preset,
    config_from_args,
    overrides_from_args,
)


def cmd_train(args: argparse.Namespace) -> int:
    from jepagolf.train.run import train
    from jepagolf.train.runtime import setup_runtime, teardown_runtime
    from jepagolf.train.setup import refuse_used_run_folder

    if args.list_keys:
        for name, (section, typ) in field_index().items():
            print(f"{section}.{name} ({typ.__name__})  env {name.upper()}")
        from jepagolf.recipes import RECIPES

        print("\nJEPA recipes (--set jepa_recipe=NAME; ablate --arm NAME:jepa_recipe=NAME; keys set explicitly win):")
        for recipe in RECIPES.values():
            print(f"  {recipe.name}: {recipe.summary} [{recipe.source}]")
        return 0
    if args.resume and args.config:
        raise ConfigError(f"--resume {args.resume} and --config {args.config}: a resumed run uses its own config.json; "
                          "start a new run from a config with --config and --out")
    if args.resume:
        cfg, out = _resume_config(args), Path(args.resume)
    else:
        cfg, out = config_from_args(args), Path(args.out) if args.out else None
        if out is not None:
            refuse_used_run_folder(out)
            _folder_for_output(out, "--out")  # a read-only place fails now, not after the data and model load
    if cfg.train.tensorboard:
        from jepagolf.train.logger import require_tensorboard

        require_tensorboard()  # at once, not after the data and the model are loaded
    if args.dump_rank_state:  # before training, not after it
        _folder_for_output(Path(args.dump_rank_state), "--dump-rank-state")
    rt = setup_runtime(cfg.train.device)
    try:
        summary = train(cfg, rt, out, resume=bool(args.resume),
                        dump_rank_state=Path(args.dump_rank_state) if args.dump_rank_state else None)
    finally:
        teardown_runtime(rt)
    if rt.is_main and summary.get("already_finished"):
        print(f"{out} is a finished run (its checkpoint is past training, its summary.json and artifact are "
              "written): nothing to resume, nothing rewritten; start a new run with --out", file=sys.stderr)
        return 0
    if rt.is_main:
        print(f"score val_bpb:{summary['score_val_bpb']:.4f} ({summary['score_desc']}; non-overlapping round "
              f"trip {summary['roundtrip_val_bpb']:.4f}, pre-quant {summary['prequant_val_bpb']:.4f}, unigram "
              f"reference {summary['unigram_val_bpb']:.4f}) artifact_bytes:{summary['artifact_bytes']}")
        if summary.get("score_note"):
            print(f"note: the score uses {summary['score_note']}")
        print(f"run folder: {summary['run_dir']}")
    return 0


def _folder_for_output(path: Path, flag: str) -> None:
    """Refuse, before any long work, a folder argument that is a file (or lies under one) or that could
    not be written (a read-only place)."""
    from jepagolf.outputs import require_writable

    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise ConfigError(f"{flag} {path}: {p} is a file, not a folder; choose a folder")
            break
    require_writable(path, flag)


def _resume_config(args: argparse.Namespace):
    """The run folder's own config; --set / env / --seed / --data may only repeat it or change
    operational settings (see resume_config)."""
    from jepagolf.train.resume import resume_config

    if args.out and Path(args.out).resolve() != Path(args.resume).resolve():
        raise ConfigError(f"--out {args.out} and --resume {args.resume} differ; a resumed run continues in "
                          "its own folder, so drop --out")
    return resume_config(Path(args.resume), overrides_from_args(args), preset=args.preset)


def cmd_eval(args: argparse.Namespace) -> int:
    import os

    from jepagolf.data.dataset import resolve_dataset
    from jepagolf.export.artifact import load_gpt_from_artifact
    from jepagolf.export.container import ArtifactError
    from jepagolf.model.eval import evaluate
    from jepagolf.summary import score_kind
    from jepagolf.train.runtime import setup_runtime
    from jepagolf.train.validation import load_val_data

    rt = setup_runtime(args.device)
    gpt = load_gpt_from_artifact(Path(args.artifact), rt.device)
    # --seq-len / --stride, else EVAL_SEQ_LEN / EVAL_STRIDE, else the training length, non-overlapping.
    seq_len = args.seq_len if args.seq_len is not None else os.environ.get("EVAL_SEQ_LEN", "0")
    stride = args.stride if args.stride is not None else os.environ.get("EVAL_STRIDE", "0")
    T = gpt.max_len
    cfg = build_config("v3", {"vocab_size": gpt.cfg.vocab_size, "train_seq_len": T, "micro_batch_tokens": T,
                              "train_batch_tokens": T, "val_batch_tokens": max(args.batch_tokens, T),
                              "eval_seq_len": seq_len, "eval_stride": stride, "jepa": "false"}, environ={})
    paths = resolve_dataset(args.data, args.tokenizer)
    tokenizer_check = _check_eval_tokenizer(Path(args.artifact), paths.tokenizer)
    if args.val_slice is not None:  # from the shard headers, before the split is read
        from jepagolf.data.shards import split_tokens

        start, end = args.val_slice
        available = split_tokens(paths.data_dir, "val")
        if end > available or end - start < cfg.train.scoring_seq_len + 1:
            raise ConfigError(f"--val-slice {start}:{end}: the validation split of {paths.data_dir} has "
                              f"{available:,} tokens, and a slice needs at least one window "
                              f"({cfg.train.scoring_seq_len + 1} tokens) inside it")
    val = load_val_data(cfg, paths, rt.device, token_range=args.val_slice)
    kind = score_kind(cfg)
    res = evaluate(gpt, val.tokens, val.byte_tables, kind.seq_len, args.batch_tokens, rt.device,
                   stride=cfg.train.eval_stride, autocast_dtype=rt.autocast_dtype)
    if not math.isfinite(res.bpb):
        raise ArtifactError(f"{args.artifact}: the model evaluates to val_bpb {res.bpb} (loss {res.loss}): its "
                            "weights overflow; this artifact gives no score")
    out = {"val_loss": res.loss, "val_bpb": res.bpb, "tokens": res.tokens, "bytes": res.bytes,
           "seq_len": kind.seq_len, "stride": kind.stride, "windows": kind.describe(),
           "comparable_to_sliding_leaderboard": kind.comparable_to_sliding_leaderboard,
           **({"note": kind.note()} if kind.note() else {}), "unigram_val_bpb": val.unigram_bpb,
           "tokenizer_check": tokenizer_check,
           **({"val_slice": list(args.val_slice)} if args.val_slice is not None else {})}
    print(json.dumps(out, indent=2))
    return 0


def _check_eval_tokenizer(artifact: Path, tokenizer: Path) -> str:
    """Refuse (DataError) a tokenizer other than the one the artifact's run was trained with, when the run's
    folder (the artifact's own, holding summary.json) says which; otherwise warn that it cannot tell. The
    artifact itself records only the vocab size, and another tokenizer of that size gives a wrong val_bpb."""
    from jepagolf.data.errors import DataError
    from jepagolf.data.fingerprint import tokenizer_sha256
    from jepagolf.jsonfile import JsonFileError, read_json_object

    now = tokenizer_sha256(tokenizer)
    summary_path = artifact.parent / "summary.json"
    try:
        expected = read_json_object(summary_path).get("tokenizer_sha256") if summary_path.is_file() else None
    except JsonFileError:
        expected = None
    if not isinstance(expected, str):
        why = ("its summary.json does not record the tokenizer" if summary_path.is_file()
               else "no run folder (summary.json) beside it")
        print(f"warning: cannot check that {tokenizer} is the tokenizer {artifact} was trained with ({why}); a "
              "tokenizer of the same vocab size but other pieces gives a wrong val_bpb", file=sys.stderr)
        return f"unchecked: {why}"
    if expected != now:
        raise DataError(f"{tokenizer} (sha256 {now[:12]}...) is not the tokenizer {artifact} was trained with (sha256 "
                        f"{expected[:12]}... in {summary_path}); val_bpb would count the wrong bytes: pass the "
                        "run's --tokenizer / --data")
    return f"same as the run's (sha256 {now[:12]}...)"


def cmd_data_demo(args: argparse.Namespace) -> int:
    from jepagolf.data.corpus import DEMO_COMMAND, build_demo_corpus, demo_cache_dir, ensure_demo_corpus
    from jepagolf.outputs import check_output_dir

    if args.if_missing and not args.out:
        paths = ensure_demo_corpus()
        print(f"demo corpus: {paths.data_dir} tokenizer: {paths.tokenizer}")
        return 0
    out = Path(args.out) if args.out else demo_cache_dir()
    # The cache folder too: a file the user put there is not the command's to delete.
    check_output_dir(out, command=DEMO_COMMAND, overwrite=args.overwrite)
    paths = build_demo_corpus(out, vocab_size=args.vocab_size)
    print(f"demo corpus: {paths.data_dir} tokenizer: {paths.tokenizer}")
    return 0


def cmd_data_research(args: argparse.Namespace) -> int:
    from jepagolf.data.research import build_research_corpus

    paths = build_research_corpus(Path(args.out) if args.out else None, if_missing=args.if_missing,
                                  packages_dir=Path(args.packages) if args.packages else None,
                                  workers=args.workers, progress=not args.quiet, overwrite=args.overwrite)
    print(f"research corpus: {paths.data_dir} tokenizer: {paths.tokenizer}")
    print(f"train with: jepagolf train --data {paths.data_dir}")
    return 0


def cmd_data_fineweb(args: argparse.Namespace) -> int:
    from jepagolf.data.fineweb import fetch_fineweb

    ds = fetch_fineweb(Path(args.dir), variant=args.variant, train_shards=args.train_shards,
                       with_docs=args.with_docs, repo_id=args.repo_id, root=args.root, revision=args.revision,
                       endpoint=args.endpoint, progress=not args.quiet)
    print(f"fineweb {args.variant}: {ds.val_shards} val + {ds.train_shards} train shards in {ds.data_dir}, "
          f"tokenizer {ds.tokenizer}")
    print(f"train with: jepagolf train --data {ds.data_dir}")
    return 0


def cmd_data_build(args: argparse.Namespace) -> int:
    from jepagolf.data.build import build_dataset

    res = build_dataset(
        args.input, Path(args.out), vocab_size=args.vocab_size, val_docs=args.val_docs,
        val_fraction=args.val_fraction, tokenizer=args.tokenizer, blank_line_docs=args.blank_line_docs,
        text_field=args.text_field, input_format=args.format, prefix=args.prefix, shard_tokens=args.shard_tokens,
        min_chars=args.min_chars, workers=args.workers, tokenizer_sample_mb=args.tokenizer_sample_mb,
        overwrite=args.overwrite, progress=not args.quiet,
    )
    for split in ("train", "val"):
        st = res.splits[split]
        print(f"{split}: {st.documents:,} documents, {st.tokens:,} tokens, {len(res.shards[split])} shard(s)")
    print(f"built {res.data_dir} in {res.seconds:.1f}s ({res.input_bytes / 1e6:,.1f} MB, "
          f"{res.text_mb_per_s:.2f} MB/s); tokenizer {res.tokenizer}")
    print(f"train with: jepagolf train --data {res.data_dir}")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from jepagolf.data.check import check_dataset, print_report

    say = None if args.quiet else (lambda msg: print(f"check: {msg}", file=sys.stderr, flush=True))
    report = check_dataset(Path(args.dir), args.tokenizer, say=say)
    print_report(report)
    for problem in report.problems:
        print(f"problem: {problem}", file=sys.stderr)
    print("check: ok" if report.ok else f"check: {len(report.problems)} problem(s)")
    return 0 if report.ok else 1


def _research_common(args: argparse.Namespace) -> dict[str, str]:
    """The --set values of ``ablate`` and ``ladder``, with --tokenizer as an absolute path (a resumed ablation
    or ladder is recognised from any working directory) and --tensorboard as ``tensorboard=true``."""
    common = parse_set_args(args.overrides)
    if args.tokenizer:
        common["tokenizer_path"] = str(Path(args.tokenizer).resolve())
    if args.tensorboard:  # the operational key in every run's config: each run writes its own event files
        from jepagolf.train.logger import require_tensorboard

        require_tensorboard()  # before the first run
        common["tensorboard"] = "true"
    if args.threads:
        common["threads"] = str(args.threads)
    return common


def _research_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options ``ablate`` and ``ladder`` share, as keyword arguments of their main functions."""
    return {"calib_steps": args.calib_steps, "wallclock_slack": args.wallclock_slack, "vary": args.vary}


def _print_result(text: str, what: str, out: Path, files: str) -> int:
    if text:
        print()
        print(text)
        print(f"\n{what} folder: {out}  ({files})")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from jepagolf.research.ablate import default_ablation_dir, main_ablate

    common = _research_common(args)
    if args.data:
        common["data_path"] = str(Path(args.data).resolve())
    preset = args.preset or _default_preset()
    out = Path(args.out) if args.out else default_ablation_dir(preset)
    _folder_for_output(out, "--out")  # before calibrating or training
    tables = main_ablate(preset, args.arm, args.seeds, args.match, common, out, **_research_options(args))
    return _print_result(tables, "ablation", out, "ablation.md, runs.csv, plots/")


def cmd_ladder(args: argparse.Namespace) -> int:
    from jepagolf.research.ladder import DEFAULT_SEEDS, main_ladder

    out = Path(args.out) if args.out else Path("runs") / ("ladder-smoke" if args.smoke else "ladder")
    _folder_for_output(out, "--out")  # before calibrating
    text = main_ladder(args.arm, args.rung, args.seeds or DEFAULT_SEEDS, _research_common(args), out, data=args.data,
                       smoke=args.smoke, match=args.match, max_epochs=args.max_epochs,
                       add_points=[Path(p) for p in args.add_points], plan_only=args.plan_only,
                       val_tokens=args.val_tokens, **_research_options(args))
    return _print_result(text, "ladder", out, "plan.md" if args.plan_only else "ladder.md, ladder.png, runs.csv")


def cmd_report(args: argparse.Namespace) -> int:
    from jepagolf.research.report import arm_groups, plot_ablation, plot_runs

    runs = [Path(r) for r in args.runs]
    out = Path(args.out) if args.out else (runs[0] / "plots" if len(runs) == 1 else Path("report"))
    if not args.by_arm and (args.control or args.window):
        raise ConfigError("--control and --window go with --by-arm (an ablation's runs, paired by seed)")
    paths = plot_ablation(arm_groups(runs), out, args.control, args.window) if args.by_arm else plot_runs(runs, out)
    for path in paths:
        print(path)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import time

    from jepagolf.outputs import check_output_file
    from jepagolf.research.bench import VARIANTS, format_table, is_bench_json, run_bench, write_json
    from jepagolf.train.runtime import setup_runtime, teardown_runtime

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.ladder_shapes:
        return _bench_ladder_shapes(args)
    preset = args.preset or _default_preset()
    cfg = config_from_args(argparse.Namespace(**{**vars(args), "preset": preset}))
    rt = setup_runtime(cfg.train.device)
    if rt.distributed:
        teardown_runtime(rt)
        raise ConfigError("bench runs in one process; start it without torchrun")
    variants = args.variants.split(",") if args.variants else list(VARIANTS)
    overrides = overrides_from_args(args)
    out = Path(args.out) if args.out else Path("runs") / f"bench-{preset}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    check_output_file(out, command="jepagolf bench", is_own=is_bench_json)  # before minutes of measuring
    res = run_bench(preset, overrides, variants, repeats=args.repeats, warmup=args.warmup,
                    export_repeats=args.export_repeats, rt=rt)
    write_json(res, out)
    print(format_table(res))
    print(f"bench json: {out}")
    for w in res["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def _bench_ladder_shapes(args: argparse.Namespace) -> int:
    import time

    from jepagolf.outputs import check_output_file
    from jepagolf.research.bench import write_json
    from jepagolf.research.bench_shapes import (
        LADDER_SHAPE_VARIANTS,
        format_ladder_shapes,
        is_ladder_shapes_json,
        run_ladder_shapes,
    )
    from jepagolf.research.ladder import DEFAULT_RUNGS

    rungs = list(DEFAULT_RUNGS)
    if args.shapes:
        wanted = [s.strip() for s in args.shapes.split(",") if s.strip()]
        unknown = [s for s in wanted if s not in {r.name for r in rungs}]
        if unknown:
            raise ConfigError(f"bench --shapes: unknown rungs {unknown}; the default ladder has "
                              f"{', '.join(r.name for r in rungs)}")
        rungs = [r for r in rungs if r.name in wanted]
    preset = args.preset or "cpu-demo"  # the default ladder's preset
    variants = args.variants.split(",") if args.variants else list(LADDER_SHAPE_VARIANTS)
    out = Path(args.out) if args.out else Path("runs") / f"bench-ladder-shapes-{time.strftime('%Y%m%d-%H%M%S')}.json"
    check_output_file(out, command="jepagolf bench --ladder-shapes", is_own=is_ladder_shapes_json)
    res = run_ladder_shapes(rungs, variants, preset, overrides_from_args(args), repeats=args.repeats)
    write_json(res, out)
    print(format_ladder_shapes(res))
    print(f"bench json: {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from jepagolf.export.records import export_records

    sub, warnings = export_records(
        args.run_dirs, args.out, name=args.name, author=args.author, github_id=args.github_id, blurb=args.blurb,
        track=args.track, compress=args.compress, cap_bytes=args.cap_bytes, include_artifacts=args.artifacts,
        overwrite=args.overwrite, rescore=_rescorer(args) if args.verify_score else None,
    )
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"val_bpb:{sub['val_bpb']:.6f} (std {sub['val_bpb_std']:.6f}, seeds {sub['seeds']}) "
          f"bytes_total:{sub['bytes_total']} = code {sub['bytes_code']} + model {sub['bytes_model']} "
          f"(headroom {sub['cap_bytes'] - sub['bytes_total']})")
    print(f"records folder: {args.out}")
    return 0


# Largest difference between a run's stored score and a fresh evaluation of its artifact that export
# accepts: evaluation order (threads, processes) moves the last digits; bf16 on CUDA against fp32 on a
# CPU moves more.
SCORE_TOLERANCE_SAME_DEVICE = 1e-4
SCORE_TOLERANCE_OTHER_DEVICE = 3e-3


def _rescorer(args: argparse.Namespace):
    """export's fresh evaluation of a run's artifact (the trainer's scoring, run here in the CLI: export
    sits below train)."""
    from jepagolf.export.runs import FreshScore, RunRecord
    from jepagolf.train.rescore import rescore_artifact

    def rescore(run: RunRecord) -> tuple[FreshScore, float]:
        device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        expected = run.summary.get("tokenizer_sha256")
        rtrip, score = rescore_artifact(run.config, run.artifact, data=args.data, tokenizer=args.tokenizer,
                                        device=device, tokenizer_sha256=expected if isinstance(expected, str) else None)
        run_on_cpu = str(run.summary.get("device", "cpu")).startswith("cpu")
        same = run_on_cpu == (device == "cpu")
        tolerance = SCORE_TOLERANCE_SAME_DEVICE if same else SCORE_TOLERANCE_OTHER_DEVICE
        return FreshScore(rtrip.loss, rtrip.bpb, score.loss, score.bpb), tolerance

    return rescore


def cmd_size(args: argparse.Namespace) -> int:
    from jepagolf.export.size import artifact_size_report, predict_size, report_json
    from jepagolf.sources import build_script

    if args.artifact:
        beside = Path(args.artifact).parent / "config.json"
        code = len(build_script(read_config_json(beside))) if beside.is_file() else 0
        report = artifact_size_report(args.artifact, code_bytes=code, cap_bytes=args.cap_bytes, codecs=True)
        if not beside.is_file():
            report.notes.append("no config.json beside the artifact: code bytes not counted")
    else:
        report = predict_size(config_from_args(args), cap_bytes=args.cap_bytes)
    print(report_json(report) if args.json else report.table())
    return 0 if report.headroom >= 0 else 1


