"""``python -m jepagolf`` and the ``jepagolf`` script: the CLI, with a Ctrl-C at any moment (even while
torch is still being imported) ending in one ``interrupted`` line and status 130, not a traceback."""

import sys


def run() -> int:
    try:
        from jepagolf.cli import main

        return main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(run())
