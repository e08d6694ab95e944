"""`cfn history`: what the project database recorded about a task."""

from __future__ import annotations

import click

from cfn.cli._common import json_option, print_json, project_of, task_option
from cfn.errors import NegativeOutcome


@click.command()
@task_option
@json_option
@click.pass_context
def history(ctx, task_id: str, as_json: bool) -> None:
    """Show TASK's recorded results, decisions, iterations, agents and costs.

    Answers from SQLite, so it works after Redis was flushed.
    """
    found = project_of(ctx).history(task_id)
    if found is None:
        raise NegativeOutcome(f"nothing is recorded for task {task_id}")
    if as_json:
        print_json(found)
        return
    click.echo(f"task {task_id}  status {found['task']['status']}  "
               f"created {found['task']['created_at']}")
    for row in found["results"]:
        confidence = "-" if row["confidence"] is None else f"{row['confidence']:.2f}"
        click.echo(f"result    {row['agent_id']}\t{row['status']}\t{confidence}")
    for row in found["decisions"]:
        click.echo(f"decision  {row['decision']}\titeration {row['iteration'] or '-'}\t"
                   f"{row['reason'] or ''}")
