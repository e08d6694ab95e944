"""Product-owner decisions (PROCEED, ITERATE, ABORT), published at coord:{T}:decision."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from cfn import keys, validate
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


def publish(r: redis.Redis, decision: Decision, *, ttl: int) -> None:
    """Make `decision` (stamped with decided_at) the task's latest."""
    r.set(keys.decision(decision.task_id), json.dumps(decision.to_dict()), ex=ttl)


def latest(r: redis.Redis, task_id: str) -> Decision | None:
    """The task's latest decision, or None."""
    raw = r.get(keys.decision(task_id))
    return None if raw is None else Decision(**json.loads(raw))
