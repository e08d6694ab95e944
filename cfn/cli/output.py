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


def duration(seconds: float) -> str:
    """A span as people read it: 0.4 s, 3.1 s, 30 s, 2 min 5 s, 1 h 3 min."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{int(seconds)} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    return f"{minutes // 60} h {minutes % 60} min"


def moment(epoch: float) -> str:
    """A Unix time as people read it: the local date and time, and how far from now."""
    import time

    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(epoch))
    delta = epoch - time.time()
    return f"{when} ({'in ' + duration(delta) if delta >= 0 else duration(-delta) + ' ago'})"


def failed(exc: Exception, as_json: bool = False) -> int:
    """Say on stderr, once, what went wrong (and, under --json, as a JSON object on stdout
    too, so a script reading stdout learns why); the exit code. CFN_DEBUG=1 raises `exc`
    instead, for its traceback."""
    if isinstance(exc, BrokenPipeError):
        return ExitCode.NEGATIVE  # the reader went away (e.g. `| head`); nothing more to say
    if os.environ.get("CFN_DEBUG"):
        raise exc
    if isinstance(exc, CfnError):
        message, code = str(exc), exc.exit_code
    elif _storage_refused(exc):
        message, code = (f"the state directory refused a write ({exc}); free space on its "
                         "disk, or make it writable (CFN_HOME says where it is)",
                         ExitCode.BACKEND)
    else:
        print(f"cfn: internal error: {type(exc).__name__}: {exc} (CFN_DEBUG=1 shows the "
              "traceback)", file=sys.stderr)
        return ExitCode.NEGATIVE
    return said(message, code, as_json)


def said(message: str, code: int, as_json: bool) -> int:
    """An error for the user: a line on stderr, and a JSON object on stdout under --json."""
    print(f"cfn: error: {message}", file=sys.stderr)
    if as_json:
        print(json.dumps({"error": message, "exit_code": int(code)}))
    return code


def _storage_refused(exc: Exception) -> bool:
    """SQLite or the file system refused to store what cfn writes: a full disk, a read-only
    mount, a file made read-only (SQLite commits all or nothing: nothing half-written)."""
    import errno

    if type(exc).__module__ == "sqlite3" and type(exc).__name__ == "OperationalError":
        said = str(exc)
        return "full" in said or "readonly" in said or "read-only" in said \
            or "disk I/O" in said or "unable to open" in said
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT)


def print_table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Rows on stdout: on a terminal in columns under their headers (as wide as their
    widest cell, the last one free); piped, tab-separated without headers, for scripts."""
    rows = [tuple(str(cell) for cell in row) for row in rows]
    if not sys.stdout.isatty():
        for row in rows:
            print("\t".join(row))
        return
    every = [headers, *rows]
    widths = [max(len(row[i]) for row in every) for i in range(len(headers) - 1)]
    for row in every:
        print("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)),
                         row[-1]]).rstrip())
