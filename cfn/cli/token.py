"""`cfn token`: issue and verify signed agent tokens."""

from __future__ import annotations

import sys

import click

from cfn.cli._common import (
    LEASE,
    agent_option,
    checked_id,
    config_of,
    json_option,
    print_json,
    task_option,
)
from cfn.cli.output import moment


def _secret(ctx) -> str:
    from cfn.tokens import signing_secret

    config = config_of(ctx)
    return signing_secret(config.token_secret, config.home)


@click.group()
def token() -> None:
    """Signed agent tokens (JWT, audience cfn-agents)."""


@token.command()
@agent_option
@task_option
@click.option("--ttl", type=LEASE, default=3600,
              show_default=True, metavar="SECONDS", help="Lifetime.")
@click.option("--role", default="agent", show_default=True, callback=checked_id("role"),
              help="Role claim, e.g. agent or operator.")
@json_option
@click.pass_context
def issue(ctx, agent_id, task_id, ttl, role, as_json) -> None:
    """Print a token for AGENT on TASK (hand it over by environment, never argv)."""
    from cfn import tokens

    signed = tokens.issue(_secret(ctx), agent_id=agent_id, task_id=task_id, ttl=ttl, role=role)
    if as_json:
        print_json({"token": signed, "agent_id": agent_id, "task_id": task_id, "role": role})
    else:
        click.echo(signed)


@token.command()
@click.argument("value", metavar="[TOKEN]", required=False)
@click.option("--mcp-server", callback=checked_id("MCP server"),
              help="Check a token an agent was given for this MCP server (audience "
                   "cfn-mcp:NAME) instead of one for cfn itself.")
@json_option
@click.pass_context
def verify(ctx, value: str | None, mcp_server: str | None, as_json: bool) -> None:
    """Check a token and print its claims; exit 1 with the reason if it is invalid.

    Reads the token from stdin when TOKEN is omitted (preferred: argv is visible to `ps`).
    """
    from cfn import tokens

    secret, audience = _secret(ctx), tokens.AUDIENCE
    if mcp_server:
        secret, audience = tokens.mcp_key(secret, mcp_server), tokens.mcp_audience(mcp_server)
    claims = tokens.verify(secret, value if value is not None else sys.stdin.read(), audience)
    if as_json:
        print_json(claims)
    else:
        click.echo(f"valid: agent {claims['sub']}, task {claims['task_id']}, "
                   f"role {claims.get('role')}, expires {moment(claims['exp'])}")


@token.command(name="mcp-key")
@click.argument("server", callback=checked_id("MCP server"))
@click.pass_context
def mcp_key(ctx, server: str) -> None:
    """Print the key the MCP server SERVER verifies agents' tokens with (HS256, audience
    cfn-mcp:SERVER). Derived from the project's secret: with it, that server can check
    tokens but mint none for cfn or for another server. Hand it over as a secret."""
    from cfn import tokens

    click.echo(tokens.mcp_key(_secret(ctx), server))
