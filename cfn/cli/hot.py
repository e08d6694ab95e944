"""The hot commands' bodies, after their options were parsed and checked: one call into the
project and what the command prints. Their click commands and the fast path
(cfn.cli.fast) both run these, so a command does and says the same whichever parsed it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cfn.cli.output import echo, print_json

if TYPE_CHECKING:
    from cfn.cli.feedback import Settings
    from cfn.project import Project

SIGNAL_WAIT_TIMEOUT = 300  # seconds `cfn signal wait` waits by default


def signal_send(project: Project, task_id: str, channel: str, payload: str,
                as_json: bool) -> None:
    queued = project.send_signal(task_id, channel, payload)
    if as_json:
        print_json({"task_id": task_id, "channel": channel, "queued": queued})


def signal_wait(project: Project, task_id: str, channel: str, timeout: float,
                as_json: bool, feedback: Settings | None = None) -> None:
    """`feedback`: the global --quiet/--verbose/--color (the fast path serves none of them:
    the defaults). Plain lines only, on a terminal too, so both paths say the same."""
    from cfn.cli.feedback import Settings, Waiting

    project.connect()  # the heartbeat counts the wait, not the connection (redis-py's import)
    with Waiting(feedback or Settings(), f"no signal on {channel}", live=False) as waiting:
        waiting.note(f"waiting for a signal on channel {channel} of task {task_id} "
                     f"(timeout {timeout:g} s)")
        payload = project.wait_signal(task_id, channel, timeout=timeout)
        waiting.state = f"got a signal on {channel}"
    if as_json:
        print_json({"task_id": task_id, "channel": channel, "payload": payload})
    else:
        echo(payload)


def report(project: Project, task_id: str, agent_id: str, status: str,
           confidence: float | None, result: object | None, as_json: bool) -> None:
    """`result` is the parsed --result (cfn.validate.json_text), None when not given."""
    entry = project.report(task_id, agent_id, status=status, confidence=confidence,
                           result=result)
    if as_json:
        print_json({"task_id": task_id, "agent_id": agent_id, "entry_id": entry})


def completion_signal(project: Project, task_id: str, agent_id: str, status: str,
                      payload: str | None, phase: str | None, as_json: bool) -> None:
    entry = project.signal_completion(task_id, agent_id, status=status, payload=payload,
                                      phase=phase)
    if as_json:
        print_json({"task_id": task_id, "agent_id": agent_id, "entry_id": entry})


def context_store(project: Project, task_id: str, key: str, value: str, ttl: int | None,
                  as_json: bool) -> None:
    project.store_context(task_id, key, value, ttl=ttl)
    if as_json:
        print_json({"task_id": task_id, "key": key, "ttl": ttl, "stored": True})


def context_get(project: Project, task_id: str, key: str, as_json: bool) -> None:
    value = project.get_context(task_id, key)
    if as_json:
        print_json({"task_id": task_id, "key": key, "value": value})
    else:
        echo(value)
