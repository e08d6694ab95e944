"""`cfn mcp`: cfn as an MCP server for Claude Code and other MCP clients (cfn.mcp)."""

from __future__ import annotations

import click

from cfn.cli._common import RUNTIME, checked_id, config_of, json_option, print_json
from cfn.errors import InvalidInput


@click.group(name="mcp")
def mcp_group() -> None:
    """cfn and MCP: `serve` gives MCP clients cfn's tools (coordination, agents, Claude Code
    in containers, loops; run inside an agent, that agent's rights only); `config` prints
    how to add it to Claude Code, or what a spawned agent is given; `skills` lists the MCP
    servers agents get by skill (docs/mcp.md)."""


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
    from cfn.mcp.agents import document, own_server

    if profile_id is None:
        _require()
        print_json(own_server("process"))  # this Python's cfn, whatever PATH Claude Code has
        return
    from cfn.agents.profiles import get

    settings = config_of(ctx)
    profile = get(profile_id, settings.root)
    if not profile.runs_claude_code:
        raise InvalidInput(f"profile {profile.id} runs its own command; only agents that "
                           "run Claude Code are given MCP servers")
    print_json(document(settings, profile.skills, runtime))


@mcp_group.command()
@json_option
@click.pass_context
def skills(ctx, as_json) -> None:
    """The skills agent profiles may list, and the MCP servers each gives an agent
    ([mcp] of cfn.toml; the seed's table by default)."""
    from cfn.cli.output import print_table

    table = config_of(ctx).mcp
    found = {skill: {name: dict(table.servers[name]) for name in names}
             for skill, names in sorted(table.skills.items())}
    if as_json:
        print_json(found)
        return
    print_table(("skill", "server", "reached at"),
                [(skill, name, entry.get("url") or " ".join([entry["command"],
                                                             *entry.get("args", [])]))
                 for skill, servers in found.items() for name, entry in servers.items()])
