"""Per-agent records kept in a Redis stream, read without consuming them.

Results and completions are both streams whose entries carry an `agent`
field; an agent's latest entry wins. Waiting for N distinct agents blocks on
XREAD, so any number of readers can wait and read again, and nothing is lost.
"""

from __future__ import annotations

import time

import redis


def append(r: redis.Redis, key: str, fields: dict[str, str], ttl: int) -> str:
    """Add an entry and refresh the stream's TTL in one transaction; returns the entry ID."""
    pipe = r.pipeline(transaction=True)
    pipe.xadd(key, fields)
    pipe.expire(key, ttl)
    entry_id, _ = pipe.execute()
    return entry_id


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
    block_ms: int | None = None  # the first read returns what is there at once
    while True:
        reply = r.xread({key: last_id}, block=block_ms)
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
        # XREAD BLOCK 0 would wait forever: never ask for less than 1 ms
        block_ms = max(1, int(remaining * 1000))
