"""`cfn lock`: leased locks with holder tokens and fencing numbers."""

from __future__ import annotations

import click

from cfn.cli._common import (
    LEASE,
    SECONDS,
    checked_id,
    json_option,
    print_json,
    project_of,
    task_option,
)

name_option = click.option(
    "--name", required=True, metavar="NAME", callback=checked_id("lock name"),
    help="What the lock guards, e.g. deploy.",
)
token_option = click.option(
    "--token", envvar="CFN_LOCK_TOKEN", required=True, metavar="TOKEN",
    help="The token `acquire` printed (or CFN_LOCK_TOKEN).",
)
ttl_option = click.option(
    "--ttl", type=LEASE, required=True, metavar="SECONDS",
    help="Lease length; the lock frees itself when it runs out.",
)


@click.group()
def lock() -> None:
    """Leased locks: only the token's holder can release or extend.

    Each acquisition gets a larger fencing number; pass it to the guarded
    resource so writes from an expired holder can be rejected.
    """


@lock.command()
@task_option
@name_option
@ttl_option
@click.option(
    "--wait", type=SECONDS, default=0, show_default=True, metavar="SECONDS",
    help="Wait this long for the holder to release (exit 3 if it does not).",
)
@json_option
@click.pass_context
def acquire(ctx, task_id, name, ttl, wait, as_json) -> None:
    """Take the lock; prints the token and the fencing number (exit 1 if held)."""
    held = project_of(ctx).acquire_lock(task_id, name, ttl=ttl, wait=wait)
    if as_json:
        print_json(held.to_dict())
    else:
        click.echo(f"{held.token}\t{held.fence}")


@lock.command()
@task_option
@name_option
@token_option
@click.pass_context
def release(ctx, task_id, name, token) -> None:
    """Release the lock (exit 1 if TOKEN does not hold it)."""
    project_of(ctx).release_lock(task_id, name, token)


@lock.command()
@task_option
@name_option
@token_option
@ttl_option
@click.pass_context
def extend(ctx, task_id, name, token, ttl) -> None:
    """Reset the lease to TTL seconds (exit 1 if TOKEN does not hold it)."""
    project_of(ctx).extend_lock(task_id, name, token, ttl=ttl)
