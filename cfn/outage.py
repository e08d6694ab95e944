"""Riding out Redis outages: a restart of tens of seconds, or a connection dropped mid-wait.

Two policies, one for each kind of call:
- a blocking wait (`ride`) reconnects with capped backoff until its own deadline, and each
  retry blocks only for what is left, so a timeout stays a deadline across reconnects;
- any other command is retried by the client (cfn.backend's `Reconnecting` retry) until the
  reconnect window has passed since the first failure.
Waits tell the client not to retry on its own (`waiting`), so the two never stack.
Retrying is safe because every write that could be applied twice carries an ID (signals,
reports, completions) and a pop is acknowledged, not destroyed (cfn.coordination.signals).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

BACKOFF_FIRST_S = 0.05
BACKOFF_CAP_S = 1.0
waiting: contextvars.ContextVar[bool] = contextvars.ContextVar("cfn_waiting", default=False)
_last_failure = float("-inf")  # when this process last failed to reach Redis (monotonic)


def failed() -> None:
    """Note that Redis could not be reached just now."""
    global _last_failure
    _last_failure = time.monotonic()


def failed_since(moment: float) -> bool:
    """True if this process failed to reach Redis after `moment` (time.monotonic())."""
    return _last_failure > moment


def seen_within(seconds: float) -> bool:
    """True if this process failed to reach Redis in the last `seconds`: what Redis holds
    with a short TTL (heartbeats) may have lapsed meanwhile, through no one's fault."""
    return time.monotonic() - _last_failure < seconds


def is_connection_error(exc: BaseException) -> bool:
    """A failure to talk to Redis (as opposed to Redis refusing a command), either client."""
    if getattr(exc, "kind", None) == "connection":  # the small client's
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    refused = {"ResponseError", "AuthenticationError"}  # Redis answered: no use retrying
    return bool({"ConnectionError", "TimeoutError"} & names) and not refused & names


def backoff(failures: int) -> float:
    return min(BACKOFF_CAP_S, BACKOFF_FIRST_S * 2 ** max(0, failures - 1))


def ride(call: Callable[[], T], deadline: float) -> T:
    """`call()` (a blocking read that recomputes what is left before `deadline`), again and
    again while Redis cannot be reached and the deadline has not passed."""
    failures = 0
    token = waiting.set(True)
    try:
        while True:
            try:
                return call()
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                failed()
                failures += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise
                time.sleep(min(backoff(failures), remaining))
    finally:
        waiting.reset(token)
