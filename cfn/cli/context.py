"""`cfn context`: store, get, list and delete a task's shared context."""

from __future__ import annotations

import click

from cfn.cli import hot
from cfn.cli._common import (
    TTL,
    checked_id,
    json_option,
    print_json,
    project_of,
    task_option,
)

key_option = click.option(
    "--key", required=True, metavar="KEY", callback=checked_id("context key"),
    help="Context key, e.g. deliverables.",
)


@click.group()
def context() -> None:
    """Shared named values per task: deliverables, metadata, anything."""


@context.command()
@task_option
@key_option
@click.option("--value", required=True, help="The value (any text, e.g. JSON).")
@click.option("--ttl", type=TTL, metavar="SECONDS", help="Expire after this many seconds.")
@json_option
@click.pass_context
def store(ctx, task_id: str, key: str, value: str, ttl: int | None, as_json: bool) -> None:
    """Store VALUE under KEY for the task."""
    hot.context_store(project_of(ctx), task_id, key, value, ttl, as_json)


@context.command()
@task_option
@key_option
@json_option
@click.pass_context
def get(ctx, task_id: str, key: str, as_json: bool) -> None:
    """Print the value of KEY (exit 1 if it has none)."""
    hot.context_get(project_of(ctx), task_id, key, as_json)


@context.command(name="list")
@task_option
@json_option
@click.pass_context
def list_(ctx, task_id: str, as_json: bool) -> None:
    """List the task's context keys, one per line."""
    names = project_of(ctx).list_context(task_id)
    if as_json:
        print_json({"task_id": task_id, "keys": names})
    else:
        for name in names:
            click.echo(name)


@context.command()
@task_option
@key_option
@json_option
@click.pass_context
def delete(ctx, task_id: str, key: str, as_json: bool) -> None:
    """Delete KEY (exit 1 if it had no value)."""
    project_of(ctx).delete_context(task_id, key)
    if as_json:
        print_json({"task_id": task_id, "key": key, "deleted": True})
