"""SIGTERM / SIGINT during training: finish the step, save a checkpoint, exit with a resume hint.

Spot instances and schedulers send SIGTERM some seconds before they kill a job; Ctrl-C sends
SIGINT. While the step loop runs, the first signal only sets a flag that the loop reads at the end
of each step (agreed by every rank, see ``Trainer._control``), so the checkpoint holds a
consistent state. A second SIGINT stops at once without saving (the user insists); a second
SIGTERM is ignored, because torchrun answers a Ctrl-C by sending SIGTERM to its workers and that
must not abort the save the SIGINT started. Outside the loop (final evaluation and export) a
signal stops the process at once, with the same kind of message.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(RuntimeError):
    """Training stopped on a signal; the message says what was saved and how to resume."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum  # the shell's convention: 143 for SIGTERM, 130 for SIGINT


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class StopRequest:
    """Holds the first stop signal received while ``armed``; see the module docstring."""

    def __init__(self, announce: bool = True) -> None:
        self.signum: int | None = None
        self.armed = False
        self.announce = announce
        # Called (and expected to raise) for a signal that arrives while not armed.
        self.on_unarmed: Callable[[int], None] | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.armed:
            if self.on_unarmed is not None:
                self.on_unarmed(signum)
            raise KeyboardInterrupt
        if self.signum is None:
            self.signum = signum
            if self.announce:
                print(f"received {signal_name(signum)}: stopping after this step and saving a checkpoint "
                      "(send SIGINT / Ctrl-C again to stop at once without saving)", file=sys.stderr, flush=True)
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Install the handlers for the duration of the block (main thread only; else a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.getsignal(s) for s in SIGNALS}
        for s in SIGNALS:
            signal.signal(s, self._handle)
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h if h is not None else signal.SIG_DFL)
