"""Upkeep of the coordination keys: expiries for keys that lost theirs, event streams
trimmed to their cap, and a private task's keys removed (the consolidate and benchmark
workers, cfn.daemon.local).

Keys are found with SCAN over cfn's own patterns (cfn.keys.scan_patterns), never KEYS, in
batches, so a large server is never blocked. Nothing here deletes a live key: an expiry
is only given to a key that has none (checked and set in one script, so a writer that set
one meanwhile keeps its own), at the lifetime docs/keys.md gives that kind of key.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cfn import defaults, keys
from cfn.coordination import signals, streams

if TYPE_CHECKING:
    import redis

BATCH = 500  # keys per SCAN step and per pipeline
LOCK_WAKE_TTL_S = 60  # as the release script sets it (cfn.coordination.locks)


def lifetime(kind: str, key_ttl: int) -> int | None:
    """The expiry a key of `kind` is written with (docs/keys.md), None for kinds that live
    without one by design: context stored without --ttl, a lock's fence (it must only
    grow), and a lock itself (its lease is its holder's, not ours to guess)."""
    return {
        "coord": key_ttl, "events": key_ttl,
        "sent": min(key_ttl, streams.APPEND_MARKER_TTL_S, signals.SENT_MARKER_TTL_S),
        "orchestrator": defaults.ORCHESTRATOR_TTL_S,
        # a claim lives STARTUP_GRACE_S, a supervisor's beat HEARTBEAT_TTL_S: the longer
        "heartbeat": max(defaults.STARTUP_GRACE_S, defaults.HEARTBEAT_TTL_S),
        "cooldown": defaults.PROVIDER_COOLDOWN_S,
        "lock-wake": LOCK_WAKE_TTL_S,
    }.get(kind)


@dataclass
class Upkeep:
    """What one pass found and changed, by kind of key."""

    scanned: int = 0
    expiry_given: Counter = field(default_factory=Counter)
    kept_without_expiry: Counter = field(default_factory=Counter)  # by design (lifetime None)
    streams_trimmed: int = 0
    entries_trimmed: int = 0

    def to_dict(self) -> dict:
        return {"scanned": self.scanned, "expiry_given": dict(self.expiry_given),
                "expiry_given_total": sum(self.expiry_given.values()),
                "kept_without_expiry": dict(self.kept_without_expiry),
                "streams_trimmed": self.streams_trimmed,
                "entries_trimmed": self.entries_trimmed}


def tidy(r: redis.Redis, *, key_ttl: int, events_maxlen: int = defaults.EVENTS_MAXLEN,
         batch: int = BATCH) -> Upkeep:
    """One pass over cfn's keys: each key without an expiry whose kind has a lifetime gets
    it; each event stream longer than `events_maxlen` is trimmed to it."""
    done = Upkeep()
    for pattern in keys.scan_patterns():
        chunk: list[str] = []
        for key in r.scan_iter(match=pattern, count=batch):
            chunk.append(key if isinstance(key, str) else key.decode())
            if len(chunk) >= batch:
                _tidy_batch(r, chunk, key_ttl, events_maxlen, done)
                chunk = []
        if chunk:
            _tidy_batch(r, chunk, key_ttl, events_maxlen, done)
    return done


# KEYS[1] a key; ARGV[1] seconds. Gives the key that expiry if it has none (the check and
# the expiry in one step, so a writer that set its own meanwhile keeps it; EXPIRE NX would
# need Redis 7). Returns 1 if it gave one.
_EXPIRE_BARE = """
if redis.call('TTL', KEYS[1]) == -1 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  return 1
end
return 0
"""


def _tidy_batch(r: redis.Redis, names: list[str], key_ttl: int, events_maxlen: int,
                done: Upkeep) -> None:
    kinds = {name: keys.kind(name) for name in names}
    names = [n for n in names if kinds[n] is not None]  # a name cfn does not make: not ours
    done.scanned += len(names)
    pipe = r.pipeline(transaction=False)
    for name in names:
        seconds = lifetime(kinds[name], key_ttl)
        if seconds is None:
            pipe.ttl(name)
        else:  # one script per key: each key is its own slot on a cluster
            pipe.execute_command("EVAL", _EXPIRE_BARE, 1, name, seconds)
    for name, result in zip(names, pipe.execute(raise_on_error=False), strict=True):
        if lifetime(kinds[name], key_ttl) is None:
            if result == -1:
                done.kept_without_expiry[kinds[name]] += 1
        elif result == 1:
            done.expiry_given[kinds[name]] += 1
    _trim(r, [n for n in names if kinds[n] == "events"], events_maxlen, done)


def _trim(r: redis.Redis, names: list[str], maxlen: int, done: Upkeep) -> None:
    """Trim the event streams longer than `maxlen` to exactly `maxlen` (appends trim only
    approximately, and older versions not at all; this runs rarely, so it can be exact)."""
    pipe = r.pipeline(transaction=False)
    for name in names:
        pipe.xlen(name)
    lengths = pipe.execute(raise_on_error=False)  # a key of another type: an error, skipped
    long = [n for n, length in zip(names, lengths, strict=True)
            if isinstance(length, int) and length > maxlen]
    pipe = r.pipeline(transaction=False)
    for name in long:
        pipe.xtrim(name, maxlen=maxlen, approximate=False)
    removed = [n for n in pipe.execute(raise_on_error=False) if isinstance(n, int)]
    done.streams_trimmed += sum(1 for n in removed if n > 0)
    done.entries_trimmed += sum(removed)


def delete_task(r: redis.Redis, task_id: str, *, batch: int = BATCH) -> int:
    """Delete every key of `task_id` (a private task such as the benchmark's); returns how
    many were deleted. All of them share the task's hash tag, so a cluster takes one DEL."""
    deleted = 0
    for pattern in keys.task_patterns(task_id):
        found = list(r.scan_iter(match=pattern, count=batch))
        for start in range(0, len(found), batch):
            deleted += r.delete(*found[start:start + batch])
    return deleted


def count_task(r: redis.Redis, task_id: str) -> int:
    """How many keys `task_id` has (what a cleanup left behind)."""
    return sum(1 for pattern in keys.task_patterns(task_id)
               for _ in r.scan_iter(match=pattern, count=BATCH))
