"""Shared context: named values per task, optionally with a TTL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cfn import defaults, keys, validate
from cfn.errors import NegativeOutcome

if TYPE_CHECKING:
    import redis


def store(
    r: redis.Redis, task_id: str, key: str, value: str, *, ttl: int | None, max_bytes: int
) -> None:
    """Set a context value; with `ttl` it expires after that many seconds."""
    name = keys.context(task_id, key)
    validate.payload(value, max_bytes, "value")
    if ttl is not None:
        validate.positive_int(ttl, "ttl", defaults.MAX_SECONDS)
    r.set(name, value, ex=ttl)


def get(r: redis.Redis, task_id: str, key: str) -> str:
    """The value; NegativeOutcome if there is none."""
    value = r.get(keys.context(task_id, key))
    if value is None:
        raise NegativeOutcome(f"task {task_id} has no context key {key!r}")
    return value


def list_keys(r: redis.Redis, task_id: str) -> list[str]:
    """The context keys of a task, sorted."""
    prefix = keys.context_prefix(task_id)
    return sorted(k[len(prefix):] for k in r.scan_iter(match=prefix + "*", count=1000))


def delete(r: redis.Redis, task_id: str, key: str) -> None:
    """Remove a context value; NegativeOutcome if there was none."""
    if not r.delete(keys.context(task_id, key)):
        raise NegativeOutcome(f"task {task_id} has no context key {key!r}")
