"""`cfn signal`: send and wait for signals between agents."""

from __future__ import annotations

import click

from cfn.cli._common import (
    checked_id,
    json_option,
    print_json,
    project_of,
    task_option,
    timeout_option,
)


@click.group()
def signal() -> None:
    """Queue signals on a channel; each signal reaches exactly one waiter.

    A signal sent before anyone waits stays queued until a waiter takes it.
    """


@signal.command()
@task_option
@click.option(
    "--channel", required=True, metavar="NAME", callback=checked_id("channel"),
    help="Channel, e.g. start-loop2.",
)
@click.option("--payload", default="", help="Text delivered to the waiter (e.g. JSON).")
@json_option
@click.pass_context
def send(ctx, task_id: str, channel: str, payload: str, as_json: bool) -> None:
    """Send a signal on CHANNEL."""
    queued = project_of(ctx).send_signal(task_id, channel, payload)
    if as_json:
        print_json({"task_id": task_id, "channel": channel, "queued": queued})


@signal.command()
@task_option
@click.option(
    "--channel", required=True, metavar="NAME", callback=checked_id("channel"),
    help="Channel to wait on.",
)
@timeout_option(300, "a signal")
@json_option
@click.pass_context
def wait(ctx, task_id: str, channel: str, timeout: float, as_json: bool) -> None:
    """Wait for one signal on CHANNEL and print its payload."""
    payload = project_of(ctx).wait_signal(task_id, channel, timeout=timeout)
    if as_json:
        print_json({"task_id": task_id, "channel": channel, "payload": payload})
    else:
        click.echo(payload)
