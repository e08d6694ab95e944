"""A loop's event stream and its phase signals, for anyone to follow (docs/keys.md)."""

from __future__ import annotations

import json

import redis

from cfn import defaults, keys
from cfn.coordination import streams


def append(r: redis.Redis, task_id: str, kind: str, iteration: int, data: dict, *,
           ttl: int) -> str:
    """Add an event (type, iteration, data JSON), trimmed to about EVENTS_MAXLEN entries,
    and refresh the stream's TTL, in one transaction; returns the entry ID."""
    fields = {"type": kind, "iteration": str(iteration), "data": json.dumps(data)}
    return streams.append(r, keys.events(task_id), fields, ttl, maxlen=defaults.EVENTS_MAXLEN)


def start_loop2(r: redis.Redis, task_id: str, iteration: int, *, ttl: int) -> None:
    """Tell validators waiting on coord:{T}:loop2:start that Loop 2 of `iteration` begins."""
    pipe = r.pipeline(transaction=True)
    pipe.rpush(keys.loop2_start(task_id), iteration)
    pipe.expire(keys.loop2_start(task_id), ttl)
    pipe.execute()
