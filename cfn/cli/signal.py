"""`cfn signal`: send and wait for signals between agents."""

from __future__ import annotations

import click

from cfn.cli import hot
from cfn.cli._common import (
    checked_id,
    feedback_of,
    json_option,
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
    hot.signal_send(project_of(ctx), task_id, channel, payload, as_json)


@signal.command()
@task_option
@click.option(
    "--channel", required=True, metavar="NAME", callback=checked_id("channel"),
    help="Channel to wait on.",
)
@timeout_option(hot.SIGNAL_WAIT_TIMEOUT, "a signal")
@json_option
@click.pass_context
def wait(ctx, task_id: str, channel: str, timeout: float, as_json: bool) -> None:
    """Wait for one signal on CHANNEL and print its payload."""
    hot.signal_wait(project_of(ctx), task_id, channel, timeout, as_json, feedback_of(ctx))
