"""Exit codes and the typed exceptions that map onto them.

The core raises these; the CLI converts them to exit codes in one place
(cfn.cli.output.failed). Messages end with how to fix the problem.
"""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    NEGATIVE = 1  # the operation ran and its outcome is negative
    USAGE = 2  # bad input or usage; nothing was written
    TIMEOUT = 3
    BACKEND = 4  # coordination backend unreachable or refused us
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it


class CfnError(Exception):
    """Base of every error cfn reports to a user."""

    exit_code = ExitCode.NEGATIVE


class NegativeOutcome(CfnError):
    """The operation ran, and the answer is no (missing key, lock held, ...)."""

    exit_code = ExitCode.NEGATIVE


class InvalidInput(CfnError):
    """Bad input: an invalid ID, malformed JSON, a number out of range."""

    exit_code = ExitCode.USAGE


class TimedOut(CfnError):
    """A wait reached its deadline. `partial` holds what arrived before it."""

    exit_code = ExitCode.TIMEOUT

    def __init__(self, message: str, partial: object = None):
        super().__init__(message)
        self.partial = partial


class BackendUnavailable(CfnError):
    """Redis could not be reached, or refused our credentials or command."""

    exit_code = ExitCode.BACKEND
