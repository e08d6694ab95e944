"""Checks on user input shared by the core; each raises InvalidInput (exit 2)."""

from __future__ import annotations

import json

from cfn.defaults import MAX_COUNT, MAX_SECONDS
from cfn.errors import InvalidInput


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def timeout(seconds: float, name: str = "timeout") -> float:
    """A wait in seconds: 0 means check once without blocking. At most MAX_SECONDS: a
    longer one could not be kept (nan and infinity fail the comparison too)."""
    if not _number(seconds) or not 0 <= seconds <= MAX_SECONDS:
        raise InvalidInput(f"{name} must be 0 to {MAX_SECONDS} seconds (30 days), "
                           f"got {seconds!r}")
    return float(seconds)


def positive_seconds(seconds: float, name: str) -> float:
    """A lease or lifetime in seconds: more than 0, at most MAX_SECONDS."""
    if not _number(seconds) or not 0 < seconds <= MAX_SECONDS:
        raise InvalidInput(f"{name} must be more than 0 and at most {MAX_SECONDS} seconds "
                           f"(30 days), got {seconds!r}")
    return float(seconds)


def positive_int(value: int, name: str, maximum: int = MAX_COUNT) -> int:
    """A whole number from 1 to `maximum` (by default the largest SQLite stores)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= maximum:
        raise InvalidInput(f"{name} must be a whole number from 1 to {maximum}, got {value!r}")
    return value


def fraction(value: float, name: str) -> float:
    """A number in [0, 1], such as a confidence or a threshold."""
    if not _number(value) or not 0 <= value <= 1:  # nan and infinity fail it too
        raise InvalidInput(f"{name} must be a number from 0 to 1, got {value!r}")
    return float(value)


def payload(value: str, max_bytes: int, name: str = "payload") -> str:
    size = len(value.encode())
    if size > max_bytes:
        raise InvalidInput(
            f"{name} is {size} bytes, over the limit of {max_bytes}; store large data in "
            "a file and pass its path, or raise CFN_MAX_PAYLOAD"
        )
    return value


def json_text(text: str, name: str) -> object:
    """Parse JSON given on the command line."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidInput(
            f"{name} is not valid JSON ({exc}); quote it, e.g. '{{\"k\": 1}}'"
        ) from None
    except RecursionError:  # Python's parser recurses once per level
        raise InvalidInput(f"{name} is nested too deeply to read (about 1,000 levels at "
                           "most); flatten it, or store it in a file and pass the file's "
                           "path") from None


def text_args(args: list[str]) -> list[str]:
    """Command-line arguments that are text. Python keeps bytes that are not UTF-8 as lone
    surrogates, which Redis, JSON and SQLite cannot take, and a NUL (from a caller in
    Python: no command line has one) ends a path or an argv early: both are refused."""
    for number, arg in enumerate(args, 1):
        try:
            arg.encode()
        except UnicodeEncodeError:
            shown = arg.encode(errors="surrogateescape").decode(errors="backslashreplace")
            raise InvalidInput(f"argument {number} ({shown}) is not valid UTF-8; pass text "
                               "in UTF-8, or encode binary data first (e.g. base64)") from None
        if "\0" in arg:
            raise InvalidInput(f"argument {number} ({arg!r}) holds a NUL character; "
                               "remove it")
    return args


def choice(value: str, allowed: tuple[str, ...], name: str) -> str:
    if value not in allowed:
        raise InvalidInput(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value
