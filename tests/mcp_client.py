"""Driving `cfn mcp serve` with the MCP SDK's own client, over stdio."""

from __future__ import annotations

import os
import sys

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client


def call(project, env, steps):
    """Run `steps(session)` against a fresh `cfn mcp serve` in `project`; its result."""
    async def run():
        params = StdioServerParameters(command=sys.executable, args=["-m", "cfn", "mcp",
                                                                     "serve"],
                                       env=env, cwd=str(project))
        with open(os.devnull, "w") as quiet:
            async with stdio_client(params, errlog=quiet) as streams, \
                    ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                return await steps(session)

    return anyio.run(run)


def text(result) -> str:
    return result.content[0].text
