"""cfn: coordinate many AI coding agents through Redis.

    from cfn import Project
    with Project.open() as project:
        project.send_signal("T", "ready")

See docs/python.md. Names load on first use, so `import cfn` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["Project", "SpawnRequest", "LoopSpec", "Decision", "CfnError", "ExitCode",
           "InvalidInput", "NegativeOutcome", "TimedOut", "BackendUnavailable"]

_HOMES = {
    "Project": "cfn.project", "SpawnRequest": "cfn.agents.spawn", "LoopSpec": "cfn.loop.spec",
    "Decision": "cfn.coordination.decisions", "CfnError": "cfn.errors",
    "ExitCode": "cfn.errors", "InvalidInput": "cfn.errors", "NegativeOutcome": "cfn.errors",
    "TimedOut": "cfn.errors", "BackendUnavailable": "cfn.errors",
}

if TYPE_CHECKING:
    from cfn.agents.spawn import SpawnRequest
    from cfn.coordination.decisions import Decision
    from cfn.errors import (
        BackendUnavailable,
        CfnError,
        ExitCode,
        InvalidInput,
        NegativeOutcome,
        TimedOut,
    )
    from cfn.loop.spec import LoopSpec
    from cfn.project import Project


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module 'cfn' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
