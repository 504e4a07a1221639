"""Flag types and the options every training command shares: numeric and device flags are checked as they are
parsed, and the config comes from --preset, --config, --set and the environment."""

from __future__ import annotations

import argparse
import math
import re
from typing import TYPE_CHECKING

import torch

from jepagolf.config import (
    PRESETS,
    ConfigError,
    build_config,
    config_from_dict,
    override_config,
    parse_set_args,
    read_config_json,
)

if TYPE_CHECKING:
    pass


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


def val_slice_flag(text: str) -> tuple[int, int]:
    """START:END, 0 <= START < END: the validation tokens START..END-1 (END is checked against the split
    once it is read)."""
    start, sep, end = text.partition(":")
    try:
        lo, hi = int(start, 10), int(end, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not START:END (two integers)") from None
    if not sep or not 0 <= lo < hi:
        raise argparse.ArgumentTypeError(f"{text} must be START:END with 0 <= START < END")
    if hi > MAX_FLAG_INT:
        raise argparse.ArgumentTypeError(f"{text}: END must be at most {MAX_FLAG_INT:,}")
    return lo, hi


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
    """The preset (or, with ``--config``, a run's saved config.json), then the environment, then the flags."""
    saved = getattr(args, "config", None)
    if saved:
        if args.preset:
            raise ConfigError(f"--config {saved} and --preset {args.preset}: give one (the file holds its own preset)")
        return override_config(config_from_dict(read_config_json(saved)), overrides_from_args(args))
    return build_config(args.preset or _default_preset(), overrides_from_args(args))
