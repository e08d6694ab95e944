"""Per-agent records kept in a Redis stream, read without consuming them.

Results and completions are both streams whose entries carry an `agent`
field; an agent's latest entry wins. Waiting for N distinct agents blocks on
XREAD, so any number of readers can wait and read again, and nothing is lost.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from cfn import defaults

if TYPE_CHECKING:
    import redis


def add(pipe: redis.client.Pipeline, key: str, fields: dict[str, str], ttl: int,
        maxlen: int | None = None) -> None:
    """Queue an entry and a refresh of the stream's TTL on a transaction pipeline."""
    pipe.xadd(key, fields, maxlen=maxlen, approximate=maxlen is not None)
    pipe.expire(key, ttl)


def append(r: redis.Redis, key: str, fields: dict[str, str], ttl: int,
           maxlen: int | None = None) -> str:
    """Add an entry and refresh the stream's TTL in one transaction; returns the entry ID."""
    pipe = r.pipeline(transaction=True)
    add(pipe, key, fields, ttl, maxlen)
    entry_id, _ = pipe.execute()
    return entry_id


def block_ms(remaining: float) -> int:
    """How long one blocking read may wait: never 0 (forever to Redis), never longer than
    a slice (see defaults.MAX_BLOCK_S)."""
    return max(1, int(min(remaining, defaults.MAX_BLOCK_S) * 1000))


def latest_by_agent(
    r: redis.Redis, key: str, *, expected: int = 0, timeout: float = 0.0
) -> tuple[dict[str, tuple[str, dict[str, str]]], bool]:
    """Each agent's latest entry, waiting up to `timeout` s until `expected` agents have one.

    Returns ({agent: (entry ID, fields)}, timed_out). Entries without an agent field
    are skipped.
    """
    deadline = time.monotonic() + timeout
    latest: dict[str, tuple[str, dict[str, str]]] = {}
    last_id = "0-0"
    wait_ms: int | None = None  # the first read returns what is there at once
    while True:
        reply = r.xread({key: last_id}, block=wait_ms)
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                last_id = entry_id
                if fields.get("agent"):
                    latest[fields["agent"]] = (entry_id, fields)
        if len(latest) >= expected:
            return latest, False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return latest, True
        wait_ms = block_ms(remaining)
