"""Per-agent records kept in a Redis stream, read without consuming them.

Results and completions are both streams whose entries carry an `agent`
field; an agent's latest entry wins. Waiting for N distinct agents blocks on
XREAD, so any number of readers can wait and read again, and nothing is lost.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from cfn import defaults, keys, outage
from cfn.coordination.lua import Lua

if TYPE_CHECKING:
    import redis


def add(pipe: redis.client.Pipeline, key: str, fields: dict[str, str], ttl: int,
        maxlen: int | None = None) -> None:
    """Queue an entry and a refresh of the stream's TTL on a transaction pipeline."""
    pipe.xadd(key, fields, maxlen=maxlen, approximate=maxlen is not None)
    pipe.expire(key, ttl)


# KEYS[1] stream, KEYS[2] the append's marker; ARGV[1] ttl s, ARGV[2] marker ttl s,
# ARGV[3] MAXLEN (0: none), ARGV[4..] fields and values. Adds the entry unless this append
# already did (then returns that entry's ID). XADD comes first: on a key of another type it
# fails before anything is written.
_APPEND = Lua("""
local done = redis.call('GET', KEYS[2])
if done then return done end
local id
if tonumber(ARGV[3]) > 0 then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
else
  id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 4))
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], id, 'EX', ARGV[2])
return id
""")
APPEND_MARKER_TTL_S = 3600  # a retried append is recognised for this long


def append(r: redis.Redis, key: str, fields: dict[str, str], ttl: int,
           maxlen: int | None = None, append_id: str | None = None) -> str:
    """Add an entry and refresh the stream's TTL; returns the entry ID. Retrying with the
    same `append_id` (one is made when none is given) adds nothing and returns the same ID."""
    marker = keys.appended(key, append_id or secrets.token_hex(12))
    pairs = [part for pair in fields.items() for part in pair]
    return _APPEND(r, [key, marker], [ttl, min(ttl, APPEND_MARKER_TTL_S), maxlen or 0, *pairs])


def block_ms(remaining: float) -> int:
    """How long one blocking read may wait: never 0 (forever to Redis), never longer than
    a slice (see defaults.MAX_BLOCK_S)."""
    return max(1, int(min(remaining, defaults.MAX_BLOCK_S) * 1000))


def latest_by_agent(
    r: redis.Redis, key: str, *, expected: int = 0, timeout: float = 0.0,
    keep: Callable[[str, dict[str, str]], bool] | None = None,
    on_entry: Callable[[str, dict[str, str], int], None] | None = None,
) -> tuple[dict[str, tuple[str, dict[str, str]]], bool]:
    """Each agent's latest entry, waiting up to `timeout` s until `expected` agents have one.

    Returns ({agent: (entry ID, fields)}, timed_out). Entries without an agent field, and
    those `keep(entry ID, fields)` refuses, are skipped: they neither count nor hide an
    agent's earlier entry. `on_entry(entry ID, fields, agents so far)` hears of each entry
    kept as it is read, so a caller can show arrivals while the wait goes on.
    """
    deadline = time.monotonic() + timeout
    latest: dict[str, tuple[str, dict[str, str]]] = {}
    last_id, first = "0-0", True
    while True:
        reply = read_after(r, key, last_id, deadline, block=not first)
        first = False
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                last_id = entry_id
                if fields.get("agent") and (keep is None or keep(entry_id, fields)):
                    latest[fields["agent"]] = (entry_id, fields)
                    if on_entry:
                        on_entry(entry_id, fields, len(latest))
        if len(latest) >= expected:
            return latest, False
        if deadline - time.monotonic() <= 0:
            return latest, True


def read_after(r: redis.Redis, key: str, last_id: str, deadline: float, *,
               block: bool = True, slice_s: float = defaults.MAX_BLOCK_S) -> list:
    """The entries of `key` after `last_id`, blocking up to `slice_s` until some come or
    `deadline`; Redis outages are ridden out until the deadline (cfn.outage)."""
    def read() -> list:
        remaining = min(deadline - time.monotonic(), slice_s)
        return r.xread({key: last_id}, block=block_ms(remaining) if block else None)

    return outage.ride(read, deadline)
