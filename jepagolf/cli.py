"""Command line: ``jepagolf train | eval | data | export | size``.

Expected failures (bad config, bad data, corrupt artifact, divergence) print one clear line and exit
with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from jepagolf.config import PRESETS, ConfigError, build_config, field_index, parse_set_args


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


def config_from_args(args: argparse.Namespace):
    overrides = parse_set_args(args.overrides)
    if args.seed is not None:
        overrides["seed"] = str(args.seed)
    if args.data:
        overrides["data_path"] = args.data
    if args.tokenizer:
        overrides["tokenizer_path"] = args.tokenizer
    return build_config(args.preset or _default_preset(), overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from jepagolf.train.loop import train
    from jepagolf.train.runtime import setup_runtime, teardown_runtime

    if args.list_keys:
        for name, (section, typ) in field_index().items():
            print(f"{section}.{name} ({typ.__name__})  env {name.upper()}")
        return 0
    cfg = config_from_args(args)
    rt = setup_runtime(cfg.train.device)
    try:
        summary = train(cfg, rt, Path(args.out) if args.out else None)
    finally:
        teardown_runtime(rt)
    if rt.is_main:
        print(f"val_bpb:{summary['roundtrip_val_bpb']:.4f} (pre-quant {summary['val_bpb']:.4f}, "
              f"unigram reference {summary['unigram_val_bpb']:.4f}) artifact_bytes:{summary['artifact_bytes']}")
        print(f"run folder: {summary['run_dir']}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from jepagolf.data.dataset import resolve_dataset
    from jepagolf.eval import evaluate
    from jepagolf.export.artifact import load_gpt_from_artifact
    from jepagolf.train.loop import load_val_data
    from jepagolf.train.runtime import setup_runtime

    rt = setup_runtime(args.device)
    gpt = load_gpt_from_artifact(Path(args.artifact), rt.device)
    cfg = build_config("v3", {"vocab_size": gpt.cfg.vocab_size, "train_seq_len": args.seq_len or
                              gpt.max_len, "jepa": "false"}, environ={})
    paths = resolve_dataset(args.data, args.tokenizer)
    val = load_val_data(cfg, paths, rt.device)
    res = evaluate(gpt, val.tokens, val.byte_tables, cfg.train.train_seq_len, args.batch_tokens, rt.device,
                   autocast_dtype=rt.autocast_dtype)
    out = {"val_loss": res.loss, "val_bpb": res.bpb, "tokens": res.tokens, "bytes": res.bytes,
           "unigram_val_bpb": val.unigram_bpb}
    print(json.dumps(out, indent=2))
    return 0


def cmd_data_demo(args: argparse.Namespace) -> int:
    from jepagolf.data.corpus import build_demo_corpus, default_cache_dir, ensure_demo_corpus

    if args.if_missing and not args.out:
        paths = ensure_demo_corpus()
        print(f"demo corpus: {paths.data_dir} tokenizer: {paths.tokenizer}")
        return 0
    out = Path(args.out) if args.out else default_cache_dir() / "demo_sp1024"
    paths = build_demo_corpus(out, vocab_size=args.vocab_size)
    print(f"demo corpus: {paths.data_dir} tokenizer: {paths.tokenizer}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from jepagolf.export.records import export_records

    sub, warnings = export_records(
        args.run_dirs, args.out, name=args.name, author=args.author, github_id=args.github_id, blurb=args.blurb,
        track=args.track, compress=args.compress, cap_bytes=args.cap_bytes, include_artifacts=args.artifacts,
        overwrite=args.overwrite,
    )
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"val_bpb:{sub['val_bpb']:.6f} (std {sub['val_bpb_std']:.6f}, seeds {sub['seeds']}) "
          f"bytes_total:{sub['bytes_total']} = code {sub['bytes_code']} + model {sub['bytes_model']} "
          f"(headroom {sub['cap_bytes'] - sub['bytes_total']})")
    print(f"records folder: {args.out}")
    return 0


def cmd_size(args: argparse.Namespace) -> int:
    from jepagolf.export.bundle import build_script
    from jepagolf.export.size import artifact_size_report, predict_size, report_json

    if args.artifact:
        beside = Path(args.artifact).parent / "config.json"
        code = len(build_script(json.loads(beside.read_text()))) if beside.is_file() else 0
        report = artifact_size_report(args.artifact, code_bytes=code, cap_bytes=args.cap_bytes, codecs=True)
        if not beside.is_file():
            report.notes.append("no config.json beside the artifact: code bytes not counted")
    else:
        report = predict_size(config_from_args(args), cap_bytes=args.cap_bytes)
    print(report_json(report) if args.json else report.table())
    return 0 if report.headroom >= 0 else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jepagolf", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model, evaluate it, write the artifact and summary")
    _add_config_args(p)
    p.add_argument("--out", help="run folder (default: runs/<preset>-<time>-seed<seed>)")
    p.add_argument("--list-keys", action="store_true", help="list every config key and exit")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="val_bpb of an artifact on a dataset's validation split")
    p.add_argument("artifact")
    p.add_argument("--data", help="dataset folder (default: the offline demo corpus)")
    p.add_argument("--tokenizer")
    p.add_argument("--seq-len", type=int, default=0, help="evaluation sequence length (default: training's)")
    p.add_argument("--batch-tokens", type=int, default=65_536)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("data", help="datasets: the offline demo corpus")
    dsub = p.add_subparsers(dest="data_command", required=True)
    d = dsub.add_parser("demo", help="build the offline demo corpus from Python's own documentation")
    d.add_argument("--out", help="output folder (default: the cache folder)")
    d.add_argument("--vocab-size", type=int, default=1024)
    d.add_argument("--if-missing", action="store_true", help="reuse the cached corpus when it is valid")
    d.set_defaults(func=cmd_data_demo)

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
    p.add_argument("--cap-bytes", type=int, default=16_000_000, help="size cap, code + model (default 16,000,000)")
    p.add_argument("--no-artifacts", dest="artifacts", action="store_false", help="do not copy the artifacts")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("size", help="bytes against the cap by tensor group: predicted for a config, or measured "
                                    "for an artifact (exit 1 when over the cap)")
    _add_config_args(p)
    p.add_argument("--artifact", help="measure this artifact instead of predicting")
    p.add_argument("--cap-bytes", type=int, default=16_000_000)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_size)
    return parser


def _expected_errors() -> tuple[type[BaseException], ...]:
    from jepagolf.data.shards import ShardError
    from jepagolf.export.bundle import BundleError
    from jepagolf.export.container import ArtifactError
    from jepagolf.export.records import ExportError
    from jepagolf.train.loop import TrainingDiverged

    return (ConfigError, ShardError, ArtifactError, TrainingDiverged, FileNotFoundError, ExportError, BundleError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except _expected_errors() as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
