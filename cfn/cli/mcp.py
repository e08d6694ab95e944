"""`cfn mcp`: cfn as an MCP server for Claude Code and other MCP clients (cfn.mcp)."""

from __future__ import annotations

import click

from cfn.cli._common import RUNTIME, checked_id, config_of, print_json
from cfn.errors import InvalidInput


@click.group(name="mcp")
def mcp_group() -> None:
    """cfn's coordination as MCP tools: context, signals, reports, quorums, barriers and
    (for the operator) spawning agents. Inside an agent it acts with that agent's rights
    only (docs/mcp.md)."""


def _require() -> None:
    import importlib.util

    if importlib.util.find_spec("mcp") is None:
        raise InvalidInput("cfn's MCP server needs the MCP SDK: pip install 'cfn[mcp]'")


@mcp_group.command()
@click.pass_context
def serve(ctx) -> None:
    """Serve MCP over stdin and stdout (an MCP client starts it; it is not for a terminal)."""
    _require()
    config_of(ctx)  # a bad setting is said now, not on the first tool call
    from cfn.mcp.server import serve as run

    run()


@mcp_group.command()
@click.option("--profile", "profile_id", callback=checked_id("agent profile"),
              help="Print instead the --mcp-config a spawned agent of this profile gets: "
                   "cfn's own server and those its skills map to (tokens by reference).")
@click.option("--runtime", type=RUNTIME, default="process", show_default=True,
              help="With --profile: the runtime the agent would run on.")
@click.pass_context
def config(ctx, profile_id, runtime) -> None:
    """Print the JSON that adds cfn to Claude Code:
    claude mcp add-json cfn "$(cfn mcp config)"."""
    if profile_id is None:
        from cfn.mcp.server import config as server_config

        print_json(server_config())
        return
    from cfn import tokens
    from cfn.agents.profiles import get
    from cfn.mcp.agents import for_agent

    settings = config_of(ctx)
    profile = get(profile_id, settings.root)
    # a stand-in secret: the document names each token's variable, never a token
    print_json(for_agent(settings, profile.skills, runtime, secret="x" * tokens.MIN_SECRET_BYTES,
                         agent_id="preview", task_id="preview", role=profile.role,
                         ttl=60).document)
