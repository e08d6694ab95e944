"""What a command says: data on stdout, an error once on stderr with its exit code.

Shared by the click commands and the fast path (cfn.cli.fast), so both say the same; it
imports no click.
"""

from __future__ import annotations

import json
import os
import sys

from cfn.errors import CfnError, ExitCode


def echo(text: str) -> None:
    """One line of data on stdout, exactly as given (a value is data: nothing is stripped)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def print_json(document: object) -> None:
    echo(json.dumps(document, sort_keys=True))


def failed(exc: Exception) -> int:
    """Say on stderr, once, what went wrong; the exit code. CFN_DEBUG=1 raises `exc` instead,
    for its traceback."""
    if isinstance(exc, BrokenPipeError):
        return ExitCode.NEGATIVE  # the reader went away (e.g. `| head`); nothing more to say
    if os.environ.get("CFN_DEBUG"):
        raise exc
    if isinstance(exc, CfnError):
        print(f"cfn: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"cfn: internal error: {type(exc).__name__}: {exc} (CFN_DEBUG=1 shows the traceback)",
          file=sys.stderr)
    return ExitCode.NEGATIVE
