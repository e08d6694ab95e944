"""`cfn session`: a container that lives for a session, tasks run into it in turn."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cfn.cli._common import LEASE, POSITIVE, checked_id, config_of, json_option, print_json
from cfn.cli.output import duration, print_table
from cfn.errors import ExitCode


@click.group()
def session() -> None:
    """Sessions: start a container, run tasks in it in turn, stop it (or let it time out)."""


@session.command()
@click.option("--id", "session_id", callback=checked_id("session ID"), help="Session ID.")
@click.option("--workspace", type=click.Path(file_okay=False, path_type=Path),
              help="Directory mounted at /workspace (default: here).")
@click.option("--repo", help="Clone this git repository (on the host) as the workspace.")
@click.option("--image", help="Image (default: agent_image setting).")
@click.option("--timeout", type=LEASE, default=3600,
              show_default=True, metavar="SECONDS", help="The session ends by itself then.")
@click.option("--memory", help="Memory limit, e.g. 1g.")
@click.option("--cpus", type=POSITIVE, help="CPU limit.")
@click.option("--network", help="Container network.")
@json_option
@click.pass_context
def start(ctx, session_id, workspace, repo, image, timeout, memory, cpus, network,
          as_json) -> None:
    """Start a session; prints its ID."""
    from cfn.agents import sessions

    config = config_of(ctx)
    started = sessions.start(config.home, image=image or config.agent_image, timeout=timeout,
                             workspace=workspace, repo=repo, session_id=session_id,
                             memory=memory, cpus=cpus, network=network)
    if as_json:
        print_json(started.to_dict())
    else:
        click.echo(started.id)


@session.command(name="exec")
@click.argument("session_id", callback=checked_id("session ID"))
@click.argument("command", nargs=-1, required=True)
@click.pass_context
def exec_(ctx, session_id, command) -> None:
    """Run COMMAND in the session (after `--`), streaming its output.

    Exit 0 when the command succeeded, 1 when it failed (its code is on stderr).
    """
    from cfn.agents import sessions

    for item in sessions.run(config_of(ctx).home, session_id, list(command)):
        if isinstance(item, int):
            if item != 0:
                click.echo(f"cfn: task exited with {item}", err=True)
            ctx.exit(ExitCode.OK if item == 0 else ExitCode.NEGATIVE)
        sys.stdout.buffer.write(item)
        sys.stdout.flush()


@session.command()
@click.argument("session_id", callback=checked_id("session ID"))
def stop(session_id) -> None:
    """End the session now (its container is removed)."""
    from cfn.agents import sessions

    sessions.stop(session_id)


@session.command(name="ls")
@json_option
def ls(as_json) -> None:
    """List running sessions."""
    import time

    from cfn.agents import sessions

    found = sessions.list_sessions()
    if as_json:
        print_json([s.to_dict() for s in found])
        return
    print_table(("session", "status", "left", "workspace"),
                [(s.id, s.status, duration(max(0, s.expires_at - time.time())) + " left",
                  s.workspace) for s in found])
