"""Command line: ``jepagolf train | eval | data``.

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
        summary = train(cfg, rt, Path(args.out) if args.out else None,
                        Path(args.dump_rank_state) if args.dump_rank_state else None)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jepagolf", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model, evaluate it, write the artifact and summary")
    _add_config_args(p)
    p.add_argument("--out", help="run folder (default: runs/<preset>-<time>-seed<seed>)")
    p.add_argument("--list-keys", action="store_true", help="list every config key and exit")
    p.add_argument("--dump-rank-state", metavar="DIR",
                   help="debug: every process writes its final weights and EMAs to DIR/rank<R>.npz")
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
    return parser


def _expected_errors() -> tuple[type[BaseException], ...]:
    from jepagolf.data.shards import ShardError
    from jepagolf.export.container import ArtifactError
    from jepagolf.train.loop import TrainingDiverged

    return (ConfigError, ShardError, ArtifactError, TrainingDiverged, FileNotFoundError)


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
