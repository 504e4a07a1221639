"""Run outputs: train.log (grep-able key:value lines), metrics.jsonl, JSON files, a progress bar, and
optionally TensorBoard event files.

Only rank 0 writes (``enabled``). On an interactive terminal a tqdm bar shows progress and the log
lines go to the files only; otherwise every log line is also printed. With ``tensorboard``, every
numeric value of every metrics.jsonl record also goes to an event file in the run folder, tagged
``KIND/KEY`` (``train/train_loss``, ``val/val_bpb``, ``train/lr_scale``...) at its step.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from jepagolf.config import ConfigError
from jepagolf.data.shards import atomic_write

try:
    from tqdm import tqdm
except ImportError:  # optional: the single-file train_gpt.py needs only torch, numpy, sentencepiece
    tqdm = None

# Keys shown on the console line, in this order, when present.
CONSOLE_KEYS = (
    "train_loss", "jepa_loss", "jepa_mse", "pred_std", "target_std", "val_loss", "val_bpb",
    "lr_scale", "step_ms", "tokens_per_s", "train_time_s",
)


TENSORBOARD_MISSING = ("--tensorboard (tensorboard=true) needs the tensorboard package, an optional extra: "
                       "pip install 'jepagolf[tensorboard]'")
TENSORBOARD_FLUSH_SECONDS = 10  # live curves: events reach the file at least this often


def require_tensorboard() -> None:
    """ConfigError (one line naming the extra) unless TensorBoard event files can be written."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401  (needs the tensorboard package)
    except ImportError:
        raise ConfigError(TENSORBOARD_MISSING) from None


def _tensorboard_writer(out_dir: Path) -> Any:
    require_tensorboard()
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(out_dir), flush_secs=TENSORBOARD_FLUSH_SECONDS)


def atomic_write_text(path: Path, text: str) -> None:
    data = text.encode("utf-8")
    atomic_write(path, lambda f: f.write(data))


def _append(f: TextIO, line: str) -> None:
    """Write one line and flush it; a failure (disk full) names the file."""
    try:
        f.write(line + "\n")
        f.flush()
    except OSError as e:
        if e.errno is None:
            raise
        raise OSError(e.errno, e.strerror, f.name) from e


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"
    return str(v)


class _Progress:
    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = tqdm(total=total, unit="step", dynamic_ncols=True, file=sys.stderr) if enabled else None
        self.n = 0

    def update(self, step: int, record: dict[str, Any]) -> None:
        if self.bar is None:
            return
        self.bar.update(step - self.n)
        self.n = step
        self.bar.set_postfix(loss=f"{record.get('train_loss', float('nan')):.3f}",
                             tok_s=f"{record.get('tokens_per_s', 0):.0f}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class RunLogger:
    def __init__(self, out_dir: Path, enabled: bool = True, interactive: bool | None = None,
                 tensorboard: bool = False) -> None:
        self.out_dir = out_dir
        self.enabled = enabled
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self.interactive = self.interactive and tqdm is not None  # no tqdm: plain lines, no bar
        self._log: TextIO | None = None
        self._metrics: TextIO | None = None
        self._tb: Any = None
        if enabled:
            if tensorboard:
                require_tensorboard()  # before any file is opened
            out_dir.mkdir(parents=True, exist_ok=True)
            self._log = open(out_dir / "train.log", "a", encoding="utf-8")
            self._metrics = open(out_dir / "metrics.jsonl", "a", encoding="utf-8")
            if tensorboard:
                self._tb = _tensorboard_writer(out_dir)

    def line(self, text: str, console: bool = True) -> None:
        if not self.enabled:
            return
        self._log_write(text)
        if console:
            if self.interactive:
                tqdm.write(text, file=sys.stderr)
            else:
                print(text, flush=True)

    def metrics(self, kind: str, record: dict[str, Any], total: int | None = None) -> None:
        if not self.enabled:
            return
        assert self._metrics is not None
        _append(self._metrics, json.dumps({"kind": kind, **record}, sort_keys=True))
        step = record.get("step")
        if self._tb is not None:
            self._scalars(kind, record, step)
        head = f"step:{step}/{total}" if total else f"{kind} step:{step}"
        keys = [k for k in CONSOLE_KEYS if k in record]
        full = " ".join([head] + [f"{k}:{fmt(record[k])}" for k in sorted(record) if k not in ("step",)])
        short = " ".join([head] + [f"{k}:{fmt(record[k])}" for k in keys])
        # The file gets every key; the console the readable subset (all of it when not a TTY).
        self._log_write(full)
        if self.interactive:
            if kind != "train":
                tqdm.write(short, file=sys.stderr)
        else:
            print(short, flush=True)

    def _scalars(self, kind: str, record: dict[str, Any], step: Any) -> None:
        """The record's numbers as TensorBoard scalars ``KIND/KEY`` at its step (strings and flags are left out)."""
        at = step if isinstance(step, int) and not isinstance(step, bool) else None
        for key, v in record.items():
            if key != "step" and isinstance(v, int | float) and not isinstance(v, bool):
                self._tb.add_scalar(f"{kind}/{key}", v, global_step=at)

    def _log_write(self, text: str) -> None:
        assert self._log is not None
        _append(self._log, text)

    def write_json(self, name: str, obj: Any, sort_keys: bool = True) -> None:
        """``sort_keys=False`` keeps the object's own order (summary.json leads with the score)."""
        if self.enabled:
            # allow_nan=False: NaN/Infinity are not JSON; a result file must stay readable by any parser.
            text = json.dumps(obj, indent=2, sort_keys=sort_keys, allow_nan=False)
            atomic_write_text(self.out_dir / name, text + "\n")

    def progress(self, total: int) -> _Progress:
        return _Progress(total, self.enabled and self.interactive)

    def close(self) -> None:
        error: OSError | None = None
        for f in (self._log, self._metrics):
            if f is not None:
                try:
                    f.close()  # closes the file even when the final flush fails (disk full)
                except OSError as e:
                    error = error or (OSError(e.errno, e.strerror, f.name) if e.errno is not None else e)
        self._log = self._metrics = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if error is not None:
            raise error
