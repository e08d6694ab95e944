"""The worker daemon's shared state in Redis: the schedule, each worker's last run, the
daemons alive, and the headless budgets. Daemons on several machines share all of it (and
the rq queue), so every decision two of them could race on is one atomic script."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from cfn import keys

if TYPE_CHECKING:
    import redis

# KEYS[1] schedule zset; ARGV[1] worker, ARGV[2] now, ARGV[3] interval (s).
# The worker is due when it has no entry yet or its entry is not after now; the caller that
# moves it on to now + interval is the one that enqueues it, so no run is enqueued twice.
_CLAIM_DUE = """
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if due and tonumber(due) > tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], tonumber(ARGV[2]) + tonumber(ARGV[3]), ARGV[1])
return 1
"""

# KEYS[1] headless-runs zset, KEYS[2] today's spend; ARGV[1] job, ARGV[2] now,
# ARGV[3] per hour, ARGV[4] per day, ARGV[5] spend limit (USD, <0: none).
# A headless run starts only within every budget: counted and recorded in one step, so
# daemons starting runs at once cannot overshoot. Returns the budget that refused, or "".
_RESERVE = """
local now = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 86400)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return '' end
if redis.call('ZCOUNT', KEYS[1], now - 3600, '+inf') >= tonumber(ARGV[3]) then
  return 'runs_per_hour' end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 'runs_per_day' end
local limit = tonumber(ARGV[5])
if limit >= 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= limit then
  return 'spend_per_day' end
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('EXPIRE', KEYS[1], 172800)
return ''
"""


def claim_due(r: redis.Redis, namespace: str, worker: str, interval: float) -> bool:
    """True if `worker` is due and this caller won its run (the next is `interval` on)."""
    return bool(r.eval(_CLAIM_DUE, 1, keys.daemon_schedule(namespace), worker,
                       time.time(), interval))


def schedule(r: redis.Redis, namespace: str) -> dict[str, float]:
    """Worker -> when its next scheduled run is due."""
    return {w: float(s) for w, s in r.zrange(keys.daemon_schedule(namespace), 0, -1,
                                             withscores=True)}


def unschedule(r: redis.Redis, namespace: str, workers: list[str]) -> None:
    """Forget when these workers are due (they are no longer scheduled)."""
    if workers:
        r.zrem(keys.daemon_schedule(namespace), *workers)


def record_last(r: redis.Redis, namespace: str, worker: str, summary: dict) -> None:
    r.hset(keys.daemon_last(namespace), worker, json.dumps(summary))


def last_runs(r: redis.Redis, namespace: str) -> dict[str, dict]:
    return {w: json.loads(v) for w, v in r.hgetall(keys.daemon_last(namespace)).items()}


def beat(r: redis.Redis, namespace: str, daemon_id: str, state: dict, ttl: int) -> None:
    r.set(keys.daemon_alive(namespace, daemon_id), json.dumps(state), ex=ttl)


def gone(r: redis.Redis, namespace: str, daemon_id: str) -> None:
    r.delete(keys.daemon_alive(namespace, daemon_id))


def alive(r: redis.Redis, namespace: str) -> list[dict]:
    """The daemons serving the queue now, on any machine."""
    found = []
    for key in r.scan_iter(match=keys.daemon_alive_pattern(namespace), count=100):
        if (value := r.get(key)) is not None:
            found.append(json.loads(value))
    return sorted(found, key=lambda d: d.get("started_at", 0))


def reserve_headless(r: redis.Redis, namespace: str, job_id: str, *, per_hour: int,
                     per_day: int, spend_limit: float | None) -> str | None:
    """Count a headless run against the budgets; the name of the budget that refuses it,
    or None when it may run."""
    refused = r.eval(_RESERVE, 2, keys.daemon_headless_runs(namespace),
                     keys.daemon_spend(namespace, today()), job_id, time.time(), per_hour,
                     per_day, -1 if spend_limit is None else spend_limit)
    return refused or None


def add_spend(r: redis.Redis, namespace: str, cost_usd: float) -> None:
    key = keys.daemon_spend(namespace, today())
    pipe = r.pipeline()
    pipe.incrbyfloat(key, cost_usd)
    pipe.expire(key, 2 * 86400)
    pipe.execute()


def usage(r: redis.Redis, namespace: str) -> dict:
    """Headless runs in the last hour and day, and today's spend."""
    now = time.time()
    runs = keys.daemon_headless_runs(namespace)
    pipe = r.pipeline(transaction=False)
    pipe.zcount(runs, now - 3600, "+inf")
    pipe.zcount(runs, now - 86400, "+inf")
    pipe.get(keys.daemon_spend(namespace, today()))
    hour, day, spend = pipe.execute()
    return {"runs_last_hour": hour, "runs_last_day": day, "spend_today_usd": float(spend or 0)}


def today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())
