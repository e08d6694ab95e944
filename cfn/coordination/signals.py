"""Signals: a FIFO list per task and channel, delivered effectively once.

A signal sent before anyone waits stays queued until a waiter takes it; each signal goes to
exactly one waiter, even when replies are lost and commands retried (cfn.outage):
- a send carries an ID, and a retried send with the same ID is a no-op;
- a waiter moves the signal into its own `taking` list (BLMOVE, blocking on the server)
  and acknowledges it once it has it; a retry after a lost reply finds it there. A waiter
  that dies before acknowledging lets its lease run out, and the next waiter puts the
  signal back at the head of the channel.
Plain clients still take part: RPUSH sends, BLPOP takes (without those guarantees).
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING

from cfn import defaults, keys, outage, validate
from cfn.coordination import streams
from cfn.coordination.lua import Lua
from cfn.errors import TimedOut

if TYPE_CHECKING:
    import redis

# KEYS[1] channel, KEYS[2] the send's marker; ARGV[1] payload, ARGV[2] ttl s, ARGV[3] marker
# ttl s. Queues the payload unless this send already did; returns the channel's length.
# RPUSH comes first: on a key of another type it fails before anything is written.
_SEND = Lua("""
if redis.call('EXISTS', KEYS[2]) == 1 then return redis.call('LLEN', KEYS[1]) end
local queued = redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], '1', 'EX', ARGV[3])
return queued
""")

# KEYS[1] channel, KEYS[2] this waiter's taking list, KEYS[3] the channel's waiters;
# ARGV[1] waiter, ARGV[2] lease ms, ARGV[3] the taking lists' prefix, ARGV[4] ttl s.
# Puts back what waiters whose lease ran out had taken, renews this waiter's lease, and
# returns the signal this waiter holds (taken by a try whose reply was lost), or takes the
# next one without blocking; false when there is none.
_TAKE = Lua("""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, waiter in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do
  if waiter ~= ARGV[1] then
    while redis.call('LMOVE', ARGV[3] .. waiter, KEYS[1], 'RIGHT', 'LEFT') do end
    redis.call('ZREM', KEYS[3], waiter)
  end
end
local held = redis.call('LINDEX', KEYS[2], 0)
if not held then
  held = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')  -- fails first on a wrong type
  if held then redis.call('EXPIRE', KEYS[2], ARGV[4]) end
end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[4])
return held
""")

# KEYS[1] this waiter's taking list, KEYS[2] the channel's waiters; ARGV[1] waiter,
# ARGV[2] lease ms. Empties the taking list; the waiter stays listed for one more lease, so
# that a blocking move still under way for a connection it gave up on (a signal landing in
# its taking list after this) is put back by the next waiter, not stranded.
_ACK = Lua("""
local t = redis.call('TIME')
redis.call('DEL', KEYS[1])
redis.call('ZADD', KEYS[2], tonumber(t[1]) * 1000 + tonumber(ARGV[2]), ARGV[1])
return 1
""")

LEASE_GRACE_S = 10.0  # a waiter's lease outlasts its blocking read by this much
SENT_MARKER_TTL_S = 3600  # a retried send is recognised for this long


def send(r: redis.Redis, task_id: str, channel: str, payload: str, *, ttl: int,
         max_bytes: int, signal_id: str | None = None) -> int:
    """Queue a signal; returns how many signals now wait on the channel. Retrying with the
    same `signal_id` (one is made when none is given) never queues it twice."""
    key = keys.signal(task_id, channel)
    validate.payload(payload, max_bytes)
    marker = keys.signal_sent(task_id, channel, signal_id or secrets.token_hex(12))
    return int(_SEND(r, [key, marker], [payload, ttl, min(ttl, SENT_MARKER_TTL_S)]))


def wait(r: redis.Redis, task_id: str, channel: str, *, timeout: float,
         ttl: int = defaults.KEY_TTL_S) -> str:
    """Take the oldest signal, blocking up to `timeout` seconds (0: do not block); Redis
    outages are ridden out until then."""
    timeout = validate.timeout(timeout)
    deadline = time.monotonic() + timeout
    waiter = _Waiter(r, task_id, channel, ttl)
    while (payload := outage.ride(lambda: waiter.take(deadline), deadline)) is None:
        if deadline - time.monotonic() <= 0:
            raise TimedOut(f"no signal on channel {channel!r} of task {task_id} within "
                           f"{timeout:g}s")  # its lease runs out; nothing is held
    outage.ride(waiter.acknowledge, time.monotonic() + defaults.MAX_BLOCK_S)
    return payload


class _Waiter:
    """One `wait`'s identity on the channel: its taking list and its lease."""

    def __init__(self, r: redis.Redis, task_id: str, channel: str, ttl: int):
        self.r, self.ttl, self.name = r, ttl, secrets.token_hex(8)
        self.channel = keys.signal(task_id, channel)
        self.taking = keys.signal_taking(task_id, channel, self.name)
        self.waiters = keys.signal_waiters(task_id, channel)

    def take(self, deadline: float) -> str | None:
        """A signal, blocking for what is left of the wait (one slice at most)."""
        remaining = deadline - time.monotonic()
        block_s = streams.block_ms(remaining) / 1000
        lease_ms = int((block_s + LEASE_GRACE_S) * 1000)
        prefix = self.taking[:-len(self.name)]
        held = _TAKE(self.r, [self.channel, self.taking, self.waiters],
                     [self.name, lease_ms, prefix, self.ttl])
        if held is None and remaining > 0:
            held = self.r.execute_command("BLMOVE", self.channel, self.taking, "LEFT",
                                          "RIGHT", block_s)
        return held

    def acknowledge(self) -> None:
        lease_ms = int((defaults.MAX_BLOCK_S + LEASE_GRACE_S) * 1000)
        _ACK(self.r, [self.taking, self.waiters], [self.name, lease_ms])
