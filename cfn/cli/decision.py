"""`cfn decision`: the product owner's PROCEED / ITERATE / ABORT for a task."""

from __future__ import annotations

import click

from cfn.cli._common import (
    COUNT,
    FRACTION,
    checked_id,
    json_option,
    print_json,
    project_of,
    task_option,
)
from cfn.coordination import decisions
from cfn.errors import NegativeOutcome


@click.group()
def decision() -> None:
    """Publish and read a task's decision (Redis coord:{T}:decision, recorded in SQLite)."""


@decision.command(name="set")
@task_option
@click.option("--decision", "verdict", type=click.Choice(decisions.DECISIONS), required=True,
              help="The product owner's verdict.")
@click.option("--iteration", type=COUNT, help="Loop iteration it decides.")
@click.option("--agent-id", callback=checked_id("agent ID"), help="Who decided.")
@click.option("--confidence", type=FRACTION, help="0 to 1, if known.")
@click.option("--reason", help="Why, in a sentence.")
@json_option
@click.pass_context
def set_(ctx, task_id, verdict, iteration, agent_id, confidence, reason, as_json) -> None:
    """Publish the task's decision and record it durably."""
    made = project_of(ctx).decide(
        decisions.Decision(task_id, verdict, iteration, agent_id, confidence, reason))
    if as_json:
        print_json(made.to_dict())


@decision.command()
@task_option
@json_option
@click.pass_context
def get(ctx, task_id, as_json) -> None:
    """Print the task's latest decision (exit 1 if there is none)."""
    found = project_of(ctx).latest_decision(task_id)
    if found is None:
        raise NegativeOutcome(f"task {task_id} has no decision")
    if as_json:
        print_json(found.to_dict())
    else:
        click.echo(found.decision)
