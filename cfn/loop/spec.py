"""What a loop is asked to do, and the thresholds of its mode."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from cfn import validate
from cfn.errors import InvalidInput
from cfn.ids import validate_id


@dataclass(frozen=True)
class Mode:
    gate: float
    consensus: float
    max_iterations: int


MODES = {
    "mvp": Mode(0.70, 0.80, 5),
    "standard": Mode(0.95, 0.90, 10),
    "enterprise": Mode(0.98, 0.95, 15),
}


@dataclass(frozen=True)
class LoopSpec:
    task_id: str
    epic: str
    mode: str = "standard"
    loop3_agents: tuple[str, ...] = ("coder",)
    loop2_agents: tuple[str, ...] = ("code-reviewer", "tester", "security-specialist")
    product_owner: str = "product-owner"
    max_iterations: int | None = None  # None: the mode's
    gate_threshold: float | None = None
    consensus_threshold: float | None = None
    runtime: str = "process"
    workspace: str | None = None
    image: str | None = None  # container runtime: the agents' image (default: agent_image)
    network: str | None = None  # container runtime: the agents' network (default: agent_network)
    test_command: str | None = None  # shell command; its pass rate is the gate score
    budget_usd: float | None = None
    # a continued loop (--continue): the iterations of the rounds before it, whose ending
    # does not end it when it is resumed
    continued_after: int | None = None

    def __post_init__(self):
        validate_id(self.task_id, "task ID")
        if not self.epic.strip():
            raise InvalidInput("the epic is empty: say what the loop should build")
        validate.choice(self.mode, tuple(MODES), "mode")
        for name in (*self.loop3_agents, *self.loop2_agents, self.product_owner):
            validate_id(name, "agent profile")
        if not self.loop3_agents or not self.loop2_agents:
            raise InvalidInput("a loop needs at least one implementer and one validator")
        if self.max_iterations is not None:
            validate.positive_int(self.max_iterations, "max iterations")
        for value, name in ((self.gate_threshold, "gate threshold"),
                            (self.consensus_threshold, "consensus threshold")):
            if value is not None:
                validate.fraction(value, name)
        if self.budget_usd is not None and not self.budget_usd > 0:
            raise InvalidInput(f"budget must be more than 0 USD, got {self.budget_usd!r}")

    @property
    def gate(self) -> float:
        return self.gate_threshold if self.gate_threshold is not None else MODES[self.mode].gate

    @property
    def consensus(self) -> float:
        if self.consensus_threshold is not None:
            return self.consensus_threshold
        return MODES[self.mode].consensus

    @property
    def iterations(self) -> int:
        return self.max_iterations or MODES[self.mode].max_iterations

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LoopSpec:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v
                      for k, v in data.items() if k in known})
