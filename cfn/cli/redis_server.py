"""`cfn redis`: the project's embedded redis-server."""

from __future__ import annotations

import click

from cfn import embedded
from cfn.cli._common import config_of, json_option, print_json
from cfn.errors import InvalidInput, NegativeOutcome


@click.group(name="redis")
def redis_group() -> None:
    """Manage the embedded redis-server used when no Redis URL is configured.

    It listens on a unix socket in the state directory (no TCP port), keeps its
    data in an append-only file there, and runs until `cfn redis stop`.
    """


def _describe(state: embedded.Status) -> dict:
    return {"url": state.url, "pid": state.pid, "running": state.running}


def _embedded_home(ctx: click.Context):
    config = config_of(ctx)
    if config.redis_url:
        raise InvalidInput(
            f"a Redis URL is configured ({config.sources['redis_url']}), so no embedded "
            "server is used; unset it to manage the embedded one"
        )
    return config.home


@redis_group.command()
@json_option
@click.pass_context
def status(ctx, as_json: bool) -> None:
    """Show whether the embedded server runs (exit 1 if not)."""
    state = embedded.status(_embedded_home(ctx))
    if as_json:
        print_json(_describe(state))
    else:
        click.echo(f"{'running' if state.running else 'stopped'}\t{state.url}\tpid {state.pid}")
    if not state.running:
        ctx.exit(1)


@redis_group.command()
@json_option
@click.pass_context
def start(ctx, as_json: bool) -> None:
    """Start the embedded server (no-op if it runs)."""
    state = embedded.start(_embedded_home(ctx))
    if as_json:
        print_json(_describe(state))
    else:
        click.echo(state.url)


@redis_group.command()
@click.pass_context
def stop(ctx) -> None:
    """Stop the embedded server; its data stays for the next start."""
    if not embedded.stop(_embedded_home(ctx)):
        raise NegativeOutcome("the embedded redis-server is not running")
