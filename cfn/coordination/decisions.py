"""Product-owner decisions (PROCEED, ITERATE, ABORT), published at coord:{T}:decision."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from cfn import keys, validate
from cfn.coordination.lua import Lua
from cfn.errors import InvalidInput
from cfn.ids import validate_id

if TYPE_CHECKING:
    import redis

DECISIONS = ("PROCEED", "ITERATE", "ABORT")


@dataclass(frozen=True)
class Decision:
    task_id: str
    decision: str
    iteration: int | None = None
    decided_by: str | None = None
    confidence: float | None = None
    reason: str | None = None
    decided_at: float | None = None
    seq: int | None = None  # once recorded: its decisions.id, the order Redis keeps

    def __post_init__(self):
        validate_id(self.task_id, "task ID")
        validate.choice(self.decision, DECISIONS, "decision")
        if self.decided_by is not None:
            validate_id(self.decided_by, "agent ID")
        if self.confidence is not None:
            validate.fraction(self.confidence, "confidence")
        if self.iteration is not None:
            validate.positive_int(self.iteration, "iteration")

    def to_dict(self) -> dict:
        return asdict(self)


# KEYS[1] the task's decision; ARGV[1] the decision's JSON, ARGV[2] its seq, ARGV[3] ttl s.
# Sets it unless Redis holds a later decision (a higher seq), so of two processes publishing
# at once the older decision never wins. Returns 1 if it set it, 0 if not.
_PUBLISH = Lua("""
local ok, held = pcall(cjson.decode, redis.call('GET', KEYS[1]) or 'null')
if ok and type(held) == 'table' and (tonumber(held.seq) or 0) > tonumber(ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
""")


def publish(r: redis.Redis, decision: Decision, *, ttl: int) -> bool:
    """Make `decision` (as recorded: with its seq and decided_at) the task's latest, unless
    Redis holds a later one; True if it did."""
    return bool(_PUBLISH(r, [keys.decision(decision.task_id)],
                         [json.dumps(decision.to_dict()), decision.seq or 0, ttl]))


def latest(r: redis.Redis, task_id: str) -> Decision | None:
    """The task's latest decision, or None."""
    raw = r.get(keys.decision(task_id))
    if raw is None:
        return None
    try:
        return Decision(**json.loads(raw))
    except (ValueError, TypeError, InvalidInput) as exc:  # written by hand, e.g. redis-cli
        import logging

        logging.getLogger(__name__).warning("cfn: ignored the decision in %s: %s",
                                            keys.decision(task_id), exc)
        return None
