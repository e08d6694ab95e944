"""`cfn barrier` (formerly `cfn completion`, which still works): agents announce they
finished; orchestrators wait for N of them."""

from __future__ import annotations

import click

from cfn.cli import hot
from cfn.cli._common import (
    COUNT,
    agent_option,
    checked_id,
    feedback_of,
    json_option,
    print_json,
    project_of,
    task_option,
    timeout_option,
)
from cfn.cli.feedback import Waiting
from cfn.coordination import completion as completions
from cfn.errors import ExitCode

phase_option = click.option(
    "--phase", metavar="NAME", callback=checked_id("phase"),
    help="Scope, e.g. loop3 (key coord:{T}:loop3:complete).",
)


@click.group()
def completion() -> None:
    """The completion barrier: signal that an agent finished, and wait until N have.

    \b
    cfn barrier signal --task-id T --agent-id coder-1 --phase loop3
    cfn barrier wait --task-id T --expected 3 --phase loop3 --timeout 600
    """


@completion.command(name="signal")
@task_option
@agent_option
@click.option("--status", type=click.Choice(completions.STATUSES), default="success",
              show_default=True, help="How the agent finished.")
@click.option("--payload", help="Optional text kept with the completion.")
@phase_option
@json_option
@click.pass_context
def signal_(ctx, task_id, agent_id, status, payload, phase, as_json) -> None:
    """Record that AGENT finished the task (signal_completion in the design documents)."""
    hot.completion_signal(project_of(ctx), task_id, agent_id, status, payload, phase, as_json)


@completion.command()
@task_option
@click.option("--expected", type=COUNT, required=True, help="Agents expected.")
@timeout_option(600, "the agents")
@phase_option
@json_option
@click.pass_context
def wait(ctx, task_id, expected, timeout, phase, as_json) -> None:
    """Block until EXPECTED agents completed (wait_for_loop_completion in the design
    documents).

    Prints one line per agent (agent, status); exit 3 at the timeout.
    """
    project = project_of(ctx)
    project.connect()  # the wait's clock starts once Redis is reached
    with Waiting(feedback_of(ctx), f"0 of {expected} completed") as waiting:
        waiting.note(f"waiting for {expected} agents of task {task_id}"
                     f"{f' in phase {phase}' if phase else ''} (timeout {timeout:g} s)")
        outcome = project.wait_completion(task_id, expected=expected, timeout=timeout,
                                          phase=phase, on_completion=_announcer(waiting, expected))
    if as_json:
        print_json(outcome.to_dict())
    else:
        for agent, record in outcome.agents.items():
            click.echo(f"{agent}\t{record['status']}")
    if outcome.timed_out:
        click.echo(
            f"cfn: timed out after {timeout:g}s with {outcome.count} of {expected} completions",
            err=True,
        )
        ctx.exit(ExitCode.TIMEOUT)


def _announcer(waiting: Waiting, expected: int) -> completions.OnCompletion:
    """Says each completion as it arrives, and how far the wait has come."""
    def heard(agent: str, record: dict, count: int) -> None:
        waiting.state = f"{count} of {expected} completed"
        waiting.arrived(f"{agent} completed: {record['status']} — {count} of {expected}",
                        record["status"])

    return heard
