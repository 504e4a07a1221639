"""The entry point of the generated single-file ``train_gpt.py`` (see :mod:`jepagolf.sources`).

The script bakes a run's resolved configuration in and calls :func:`bundle_main`; environment
variables override it with the same names and parsing as ``jepagolf train``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jepagolf.config import Config, ConfigError, config_from_dict, override_config
from jepagolf.data.shards import ShardError
from jepagolf.export.container import ArtifactError
from jepagolf.outputs import OutputError
from jepagolf.train.checkpoint import CheckpointError
from jepagolf.train.reliability import TrainingDiverged
from jepagolf.train.run import train
from jepagolf.train.runtime import setup_runtime, teardown_runtime


def config_from_run(config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """The baked config with environment overrides applied (same names and parsing as ``train``)."""
    return override_config(config_from_dict(config), environ=os.environ if environ is None else environ)


def bundle_main(config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> int:
    """What ``python train_gpt.py`` runs: train, evaluate, export, round trip; 2 on expected errors."""
    env = os.environ if environ is None else environ
    try:
        cfg = config_from_run(config, env)
        rt = setup_runtime(cfg.train.device)
        try:
            summary = train(cfg, rt, Path(env.get("OUT_DIR", ".")))
        finally:
            teardown_runtime(rt)
    except (ConfigError, ShardError, ArtifactError, TrainingDiverged, FileNotFoundError, OutputError,
            CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if rt.is_main:
        print(f"score val_bpb:{summary['score_val_bpb']:.8f} ({summary['score_desc']}; pre-quant "
              f"{summary['prequant_val_bpb']:.8f}) "
              f"artifact_bytes:{summary['artifact_bytes']} code_bytes:{summary['code_bytes']} "
              f"total_bytes:{summary['total_bytes']}")
        if summary.get("score_note"):
            print(f"note: the score uses {summary['score_note']}")
    return 0
