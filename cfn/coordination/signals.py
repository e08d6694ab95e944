"""Signals: a FIFO list per task and channel.

A signal sent before anyone waits stays queued until a waiter takes it; each
signal goes to exactly one waiter. Waiting blocks on the server (BLPOP).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from cfn import keys, validate
from cfn.coordination import streams
from cfn.errors import TimedOut

if TYPE_CHECKING:
    import redis


def send(
    r: redis.Redis, task_id: str, channel: str, payload: str, *, ttl: int, max_bytes: int
) -> int:
    """Queue a signal; returns how many signals now wait on the channel."""
    key = keys.signal(task_id, channel)
    validate.payload(payload, max_bytes)
    pipe = r.pipeline(transaction=True)
    pipe.rpush(key, payload)
    pipe.expire(key, ttl)
    queued, _ = pipe.execute()
    return queued


def wait(r: redis.Redis, task_id: str, channel: str, *, timeout: float) -> str:
    """Take the oldest signal, blocking up to `timeout` seconds (0: do not block)."""
    key = keys.signal(task_id, channel)
    timeout = validate.timeout(timeout)
    deadline = time.monotonic() + timeout
    payload = r.lpop(key)
    while payload is None and (remaining := deadline - time.monotonic()) > 0:
        popped = r.blpop([key], timeout=streams.block_ms(remaining) / 1000)
        payload = popped[1] if popped else None
    if payload is None:
        raise TimedOut(f"no signal on channel {channel!r} of task {task_id} within {timeout:g}s")
    return payload
