"""Leaving a cfn process once its work is done."""

from __future__ import annotations

import os
import sys

from cfn.errors import ExitCode


def leave(code: int) -> None:
    """Flush what was said and exit now. The work is done and its connections closed; the
    interpreter's own shutdown (tens of ms of module teardown) would only delay whoever
    waits on this process, e.g. `payload=$(cfn signal wait ...)`."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):  # a reader gone, or a stream already closed
            code = code or ExitCode.NEGATIVE
    os._exit(code)
