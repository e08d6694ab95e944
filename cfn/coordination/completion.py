"""Agent completion: the seed's signal_completion and wait_for_loop_completion.

Each finished agent appends (agent, status[, payload]) to the task's
completion stream, optionally per phase (e.g. loop3). Waiting blocks on the
server until the expected number of distinct agents completed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from cfn import keys, validate
from cfn.coordination import streams
from cfn.ids import validate_id

if TYPE_CHECKING:
    import redis

STATUSES = ("success", "failure")


@dataclass(frozen=True)
class Completion:
    task_id: str
    phase: str | None
    expected: int
    count: int
    timed_out: bool
    agents: dict[str, dict[str, str | None]]  # agent -> {"status", "payload"}

    def to_dict(self) -> dict:
        return asdict(self)


def completion_fields(agent_id: str, *, status: str = "success", payload: str | None = None,
                      max_bytes: int) -> dict[str, str]:
    """A completion's stream fields, validated."""
    fields = {
        "agent": validate_id(agent_id, "agent ID"),
        "status": validate.choice(status, STATUSES, "status"),
    }
    if payload is not None:
        fields["payload"] = validate.payload(payload, max_bytes)
    return fields


def signal_completion(
    r: redis.Redis,
    task_id: str,
    agent_id: str,
    *,
    status: str = "success",
    payload: str | None = None,
    phase: str | None = None,
    ttl: int,
    max_bytes: int,
) -> str:
    """Record that an agent finished; returns the stream entry ID."""
    key = keys.completion(task_id, phase)
    fields = completion_fields(agent_id, status=status, payload=payload, max_bytes=max_bytes)
    return streams.append(r, key, fields, ttl)


# hears of each completion as a wait reads it: the agent, its record (status, payload), and
# how many agents have completed so far
OnCompletion = Callable[[str, dict, int], None]


def wait_for_completion(
    r: redis.Redis, task_id: str, *, expected: int, timeout: float, phase: str | None = None,
    on_completion: OnCompletion | None = None,
) -> Completion:
    """Block until `expected` distinct agents completed or `timeout` seconds passed;
    `on_completion` hears of each completion as it arrives."""
    key = keys.completion(task_id, phase)
    validate.positive_int(expected, "expected")
    timeout = validate.timeout(timeout)

    def heard(_entry_id: str, fields: dict[str, str], count: int) -> None:
        on_completion(fields["agent"], _record(fields), count)

    latest, timed_out = streams.latest_by_agent(r, key, expected=expected, timeout=timeout,
                                                on_entry=heard if on_completion else None)
    agents = {agent: _record(fields) for agent, (_entry_id, fields) in sorted(latest.items())}
    return Completion(task_id, phase, expected, len(agents), timed_out, agents)


def _record(fields: dict[str, str]) -> dict[str, str | None]:
    return {"status": fields.get("status"), "payload": fields.get("payload")}
