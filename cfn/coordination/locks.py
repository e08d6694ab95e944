"""Leased locks with holder tokens and fencing numbers.

Acquire sets the lock only if free, with a TTL, and increments a fencing
counter in the same script: every acquisition gets a larger number, so a
resource can reject writes from a holder whose lease already lapsed. Only
the token's holder can release or extend. Waiters block on a wake list that
release pushes to, and otherwise sleep no longer than the lock's remaining TTL.

The scripts are registered once, at import: each runs by EVALSHA (loaded on first use
per server) on whichever client is passed.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass

import redis
from redis.commands.core import Script

from cfn import failover, keys, outage, validate
from cfn.coordination import streams
from cfn.errors import NegativeOutcome, TimedOut

# KEYS[1] lock, KEYS[2] fencing counter; ARGV[1] token, ARGV[2] ttl in ms, ARGV[3] the
# failover epoch (cfn.failover; 0 without a fallback). Returns the new fencing number, or
# -(remaining ttl in ms) when the lock is held. A retry by the holder (its reply was lost)
# gets its fencing number again. Numbers of epoch e start above e * 10^12, so they keep
# growing when the fallback, whose counters lag, takes over.
_ACQUIRE = Script(None, b"""
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local fence = redis.call('INCR', KEYS[2])
  local floor = tonumber(ARGV[3]) * 1000000000000
  if fence <= floor then
    fence = floor + 1
    redis.call('SET', KEYS[2], string.format('%d', fence))
  end
  return fence
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return tonumber(redis.call('GET', KEYS[2]))
end
return -math.max(redis.call('PTTL', KEYS[1]), 1)
""")

# KEYS[1] lock, KEYS[2] wake list; ARGV[1] token. Returns 1 if released, 0 if not the holder.
_RELEASE = Script(None, b"""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('RPUSH', KEYS[2], '1')
  redis.call('PEXPIRE', KEYS[2], 60000)
  return 1
end
return 0
""")

# KEYS[1] lock; ARGV[1] token, ARGV[2] new ttl in ms. Returns 1 if extended, 0 if not the holder.
_EXTEND = Script(None, b"""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
""")


@dataclass(frozen=True)
class Lock:
    task_id: str
    name: str
    token: str
    fence: int
    ttl: float

    def to_dict(self) -> dict:
        return asdict(self)


def _ttl_ms(ttl: float) -> int:
    return max(1, int(validate.positive_seconds(ttl, "ttl") * 1000))


def acquire(r: redis.Redis, task_id: str, name: str, *, ttl: float, wait: float = 0.0) -> Lock:
    """Take the lock for `ttl` seconds, waiting up to `wait` seconds for its holder."""
    lock_key, fence_key, wake_key = (
        keys.lock(task_id, name), keys.lock_fence(task_id, name), keys.lock_wake(task_id, name)
    )
    ttl_ms = _ttl_ms(ttl)
    wait = validate.timeout(wait, "wait")
    token = secrets.token_hex(16)
    deadline = time.monotonic() + wait
    while True:
        outcome = _ACQUIRE([lock_key, fence_key], [token, ttl_ms, failover.epoch(r)],
                           client=r)
        if outcome > 0:
            return Lock(task_id, name, token, outcome, ttl)
        remaining = deadline - time.monotonic()
        if wait == 0:
            raise NegativeOutcome(f"lock {name!r} of task {task_id} is held by another holder")
        if remaining <= 0:
            raise TimedOut(f"lock {name!r} of task {task_id} still held after {wait:g}s")
        outage.ride(lambda held_s=-outcome / 1000: r.blpop([wake_key], timeout=streams.block_ms(
            min(deadline - time.monotonic(), held_s)) / 1000), deadline)


def release(r: redis.Redis, task_id: str, name: str, token: str) -> None:
    """Release the lock; NegativeOutcome if `token` does not hold it (any more)."""
    keys_ = (keys.lock(task_id, name), keys.lock_wake(task_id, name))
    if not _RELEASE(keys_, [token], client=r):
        raise NegativeOutcome(f"token does not hold lock {name!r} of task {task_id}")


def extend(r: redis.Redis, task_id: str, name: str, token: str, *, ttl: float) -> None:
    """Reset the lock's TTL to `ttl` seconds; NegativeOutcome if `token` does not hold it."""
    if not _EXTEND([keys.lock(task_id, name)], [token, _ttl_ms(ttl)], client=r):
        raise NegativeOutcome(f"token does not hold lock {name!r} of task {task_id}")
