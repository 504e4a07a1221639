"""The score of a run: the number the challenge would score, named with how it was measured, and
read back the same way by every consumer of summary.json (ablate, records export, report), old
summaries included.

Summary versions: 2 (``summary_version``) leads with ``score_val_bpb`` / ``score_val_loss`` and
``score_kind``; ``val_bpb`` / ``val_loss`` repeat the score, ``prequant_*``, ``roundtrip_*`` and
``live_*`` are labelled figures. 1 (no ``summary_version``): ``val_bpb`` was the pre-quantisation
figure and ``roundtrip_val_bpb`` (non-overlapping windows of train_seq_len) the score.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jepagolf.config import Config

SUMMARY_VERSION = 2
# Said wherever a score by non-overlapping windows is reported (summary.json, train.log's last lines, the train
# and eval commands): the leaderboard's records score sliding windows, which read the same weights lower.
NON_OVERLAPPING_NOTE = ("non-overlapping windows (eval_stride=0): not comparable with sliding-window leaderboard "
                        "scores (the records score stride 64 at seq 1024: set eval_stride=64, or rescore the artifact "
                        "with `jepagolf eval ARTIFACT --stride 64`)")


class SummaryError(ValueError):
    """A summary.json that does not say what its run scored."""


@dataclass(frozen=True)
class ScoreKind:
    """How the score was measured: the round-tripped artifact, windows of ``seq_len`` advanced by
    ``stride`` (= seq_len: non-overlapping). seq_len 0: not recorded (a version-1 summary read alone)."""

    seq_len: int
    stride: int

    @property
    def sliding(self) -> bool:
        return 0 < self.stride < self.seq_len

    @property
    def name(self) -> str:
        return "roundtrip_sliding" if self.sliding else "roundtrip"

    def describe(self) -> str:
        if self.sliding:
            return f"round-trip artifact, sliding windows, stride {self.stride} at seq {self.seq_len}"
        return "round-trip artifact, non-overlapping windows" + (f" of {self.seq_len}" if self.seq_len else "")

    @property
    def comparable_to_sliding_leaderboard(self) -> bool:
        """Whether the score may stand beside the leaderboard's sliding-window scores."""
        return self.sliding

    def note(self) -> str:
        """What a reader of the score must know ("" for a sliding-window score)."""
        return "" if self.sliding else NON_OVERLAPPING_NOTE

    def fields(self) -> dict[str, Any]:
        return {"score_kind": self.name, "score_seq_len": self.seq_len, "score_stride": self.stride,
                "score_desc": self.describe(),
                "comparable_to_sliding_leaderboard": self.comparable_to_sliding_leaderboard,
                "score_note": self.note()}

    def log_fields(self) -> str:
        return f"score_kind:{self.name} eval_seq_len:{self.seq_len} eval_stride:{self.stride}"


def score_kind(cfg: Config) -> ScoreKind:
    """The scoring eval a run of ``cfg`` ends with."""
    t = cfg.train
    return ScoreKind(t.scoring_seq_len, t.eval_stride or t.scoring_seq_len)


@dataclass(frozen=True)
class RunScores:
    val_bpb: float  # the score (round trip, sliding window when set)
    val_loss: float
    kind: ScoreKind
    roundtrip_val_bpb: float  # round trip, non-overlapping windows of train_seq_len
    roundtrip_val_loss: float
    prequant_val_bpb: float  # the exported weights before quantisation, non-overlapping
    prequant_val_loss: float
    val_tokens: int
    val_bytes: int


def read_scores(summary: Mapping[str, Any], train_seq_len: int = 0, source: object = "summary.json") -> RunScores:
    """The scores of a summary of either version (``train_seq_len``, from the run's config, names the
    window of a version-1 summary, which did not record it; ``source`` names the file in errors)."""
    try:
        if "summary_version" in summary:
            return RunScores(
                val_bpb=float(summary["score_val_bpb"]), val_loss=float(summary["score_val_loss"]),
                kind=ScoreKind(int(summary["score_seq_len"]), int(summary["score_stride"])),
                roundtrip_val_bpb=float(summary["roundtrip_val_bpb"]),
                roundtrip_val_loss=float(summary["roundtrip_val_loss"]),
                prequant_val_bpb=float(summary["prequant_val_bpb"]),
                prequant_val_loss=float(summary["prequant_val_loss"]),
                val_tokens=int(summary["val_tokens"]), val_bytes=int(summary["val_bytes"]),
            )
        # Version 1: the round trip was the score and val_bpb / val_loss the pre-quantisation figures.
        return RunScores(
            val_bpb=float(summary["roundtrip_val_bpb"]), val_loss=float(summary["roundtrip_val_loss"]),
            kind=ScoreKind(train_seq_len, train_seq_len),
            roundtrip_val_bpb=float(summary["roundtrip_val_bpb"]),
            roundtrip_val_loss=float(summary["roundtrip_val_loss"]),
            prequant_val_bpb=float(summary["val_bpb"]), prequant_val_loss=float(summary["val_loss"]),
            val_tokens=int(summary["val_tokens"]), val_bytes=int(summary["val_bytes"]),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise SummaryError(f"{source} lacks or garbles {e} (summary_version "
                           f"{summary.get('summary_version', 1)}): not a finished jepagolf run's summary") from None
