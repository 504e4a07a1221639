"""Command line: ``jepagolf train | eval | data | export | size | bench | ablate | ladder | report``.

The top of the house: it may import every wing (research, train, export, data) and the ground; nothing imports
it but ``jepagolf.__main__``. ``flags`` (flag types, shared config options) -> ``commands`` (one function per
command) -> ``parser`` (the argument parser) -> here (``main``: expected failures print one clear line and exit
with status 2; anything else is a bug and keeps its traceback).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from jepagolf.config import ConfigError

if TYPE_CHECKING:
    from jepagolf.train.preempt import Preempted

# The names that tests and scripts import from jepagolf.cli.
from jepagolf.cli.commands import _research_common  # noqa: F401
from jepagolf.cli.flags import overrides_from_args  # noqa: F401
from jepagolf.cli.parser import build_parser


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
