"""The `cfn` command line: a thin adapter over the library.

`main` (the `cfn` console script and `python -m cfn`) serves the hot commands (signal
send|wait, report, completion signal, context store|get) through the fast path
(cfn.cli.fast), which imports neither click nor redis-py; anything else, and anything
the fast path does not fully recognise, goes to the click application (cfn.cli.app).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Entry point: run one command, turn its outcome into an exit code, and leave at once."""
    from cfn.cli import fast
    from cfn.exit import leave

    args = sys.argv[1:] if argv is None else list(argv)
    if (code := fast.serve(args)) is not None:
        leave(code)
    from cfn.cli import app

    app.main(args)
