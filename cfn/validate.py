"""Checks on user input shared by the core; each raises InvalidInput (exit 2)."""

from __future__ import annotations

import json
import math

from cfn.errors import InvalidInput


def timeout(seconds: float, name: str = "timeout") -> float:
    """A wait in seconds: 0 means check once without blocking."""
    if not isinstance(seconds, (int, float)) or math.isnan(seconds) or seconds < 0:
        raise InvalidInput(f"{name} must be 0 or more seconds, got {seconds!r}")
    if math.isinf(seconds):
        raise InvalidInput(f"{name} must be finite; give a number of seconds")
    return float(seconds)


def positive_seconds(seconds: float, name: str) -> float:
    if not isinstance(seconds, (int, float)) or not 0 < seconds < math.inf:
        raise InvalidInput(f"{name} must be a number of seconds greater than 0, got {seconds!r}")
    return float(seconds)


def positive_int(value: int, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidInput(f"{name} must be a whole number greater than 0, got {value!r}")
    return value


def fraction(value: float, name: str) -> float:
    """A number in [0, 1], such as a confidence or a threshold."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
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


def choice(value: str, allowed: tuple[str, ...], name: str) -> str:
    if value not in allowed:
        raise InvalidInput(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value
