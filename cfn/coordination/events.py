"""A loop's event stream and its phase signals, for anyone to follow (docs/keys.md)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from cfn import defaults, keys
from cfn.coordination import streams
from cfn.coordination.lua import Lua

if TYPE_CHECKING:
    import redis


def append(r: redis.Redis, task_id: str, kind: str, iteration: int, data: dict, *,
           ttl: int) -> str:
    """Add an event (type, iteration, data JSON), trimmed to about EVENTS_MAXLEN entries,
    and refresh the stream's TTL, in one transaction; returns the entry ID."""
    fields = {"type": kind, "iteration": str(iteration), "data": json.dumps(data)}
    return streams.append(r, keys.events(task_id), fields, ttl, maxlen=defaults.EVENTS_MAXLEN)


LOOP2_CHANNEL = "start-loop2"


def start_loop2(r: redis.Redis, task_id: str, iteration: int, validators: int, *,
                ttl: int) -> None:
    """Signal each validator of `iteration` on the seed's channel, so that a validator running
    `signal.sh wait --task-id T --channel start-loop2` wakes (one signal each)."""
    import secrets

    from cfn.coordination import signals

    payload = json.dumps({"iteration": iteration})
    call = secrets.token_hex(6)  # a retried send adds nothing; a resume sends anew
    for number in range(validators):
        signals.send(r, task_id, LOOP2_CHANNEL, payload, ttl=ttl, max_bytes=len(payload),
                     signal_id=f"loop2-{iteration}-{call}-{number}")


def beat(r: redis.Redis, task_id: str, state: dict) -> None:
    """Refresh the orchestrator's heartbeat: its loop is driven while the key exists."""
    r.set(keys.orchestrator(task_id), json.dumps(state), ex=defaults.ORCHESTRATOR_TTL_S)


# replace a heartbeat only if it is still the one judged dead: of two takers, one wins
_TAKE_OVER = Lua("""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
""")


def claim_orchestrator(r: redis.Redis, task_id: str, state: dict,
                       dead: Callable[[dict], bool]) -> bool:
    """Become the loop's orchestrator: at once when no heartbeat is there; in place of the
    one there only when `dead` says its process is gone; else not."""
    key, mine = keys.orchestrator(task_id), json.dumps(state)
    ttl = defaults.ORCHESTRATOR_TTL_S
    if r.set(key, mine, ex=ttl, nx=True):
        return True
    held = r.get(key)
    if held is None:  # it expired in between
        return bool(r.set(key, mine, ex=ttl, nx=True))
    return dead(json.loads(held)) and bool(_TAKE_OVER(r, [key], [held, mine, ttl]))


def orchestrator(r: redis.Redis, task_id: str) -> dict | None:
    """The orchestrator's last heartbeat, None when no orchestrator drives the loop."""
    raw = r.get(keys.orchestrator(task_id))
    return json.loads(raw) if raw else None


def stop_beating(r: redis.Redis, task_id: str) -> None:
    r.delete(keys.orchestrator(task_id))
