"""The `syncline` console script (and `python -m syncline`): the Rust command line itself."""

from __future__ import annotations

import signal
import sys
from typing import Optional, Sequence

from . import _native, _sqlite


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the syncline command line with `argv` (default: sys.argv[1:]); returns the exit code."""
    if argv is None:
        argv = sys.argv[1:]
        # Run as a program: the command runs in Rust with the GIL released, so let Ctrl-C
        # stop it the usual way rather than wait for a Python signal handler.
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
    args = list(argv)
    # The command runs on the SQLite of this Python's sqlite3 module, as the engine does.
    try:
        _sqlite.ensure_shared()
    except _native.SynclineError as e:
        print(f"syncline: error: {e}", file=sys.stderr)
        return 1
    sys.stdout.flush()
    return _native.cli_main(["syncline", *args])


if __name__ == "__main__":
    sys.exit(main())
