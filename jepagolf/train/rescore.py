"""Score a run's artifact again, exactly as the trainer scored it at the end of the run.

``jepagolf export`` publishes a score only after this fresh evaluation agrees with the run's
summary.json (an edited summary must not reach submission.json). The evaluation is the trainer's own
(``evaluate_run``: the run's config, its evaluation settings, its validation split), on one
process, so nothing here can drift from how the run was scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from jepagolf.config import config_from_dict
from jepagolf.data.dataset import resolve_dataset
from jepagolf.data.errors import DataError
from jepagolf.data.fingerprint import tokenizer_sha256 as sha256_of
from jepagolf.export.artifact import load_gpt_from_artifact
from jepagolf.model.eval import EvalResult
from jepagolf.train.runtime import Runtime
from jepagolf.train.validation import evaluate_run, load_val_data


def rescore_artifact(
    config: dict[str, Any], artifact: Path, *, data: str | None = None, tokenizer: str | None = None,
    device: str = "auto", tokenizer_sha256: str | None = None,
) -> tuple[EvalResult, EvalResult]:
    """(round trip, score) of ``artifact`` under the run config ``config`` (a ``Config.to_dict()``):
    non-overlapping windows of train_seq_len, then the run's scoring windows (``evaluate_run``, what
    the trainer itself calls). ``data`` / ``tokenizer`` replace the run's dataset paths (same
    data, another place); ``tokenizer_sha256``, the run's own (summary.json), refuses another tokenizer."""
    cfg = config_from_dict(config)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    rt = Runtime(device=torch.device(device))
    paths = resolve_dataset(data or cfg.data.data_path or None, tokenizer or cfg.data.tokenizer_path or None,
                            announce=False)
    if tokenizer_sha256 is not None and (now := sha256_of(paths.tokenizer)) != tokenizer_sha256:
        raise DataError(f"{paths.tokenizer} (sha256 {now[:12]}...) is not the tokenizer the run was trained with "
                        f"(sha256 {tokenizer_sha256[:12]}...); its val_bpb would count the wrong bytes: pass the "
                        "run's --tokenizer / --data")
    val = load_val_data(cfg, paths, rt.device)
    gpt = load_gpt_from_artifact(artifact, rt.device)
    return evaluate_run(cfg, rt, val, gpt), evaluate_run(cfg, rt, val, gpt, scoring=True)
