"""`cfn mcp`: cfn as an MCP server for Claude Code and other MCP clients (cfn.mcp)."""

from __future__ import annotations

import click

from cfn.cli._common import config_of, print_json
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
def config() -> None:
    """Print the JSON that adds cfn to Claude Code:
    claude mcp add-json cfn "$(cfn mcp config)"."""
    import shutil
    import sys

    from cfn.mcp.server import config as server_config

    print_json(server_config(shutil.which("cfn") or f"{sys.executable} -m cfn"))
