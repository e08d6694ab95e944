"""The MCP servers a spawned Claude agent is given: cfn's own, and those its profile's skills
map to (`[mcp]` of cfn.toml; the seed's table by default).

They reach Claude Code as one --mcp-config document on argv, which is safe because it holds
no secret: each server's token for the agent (signed with that server's own key, audience
cfn-mcp:NAME, the agent's name, task and lifetime) travels in the agent's environment as
CFN_MCP_<NAME>_TOKEN, and the document only names it as ${CFN_MCP_<NAME>_TOKEN}, which
Claude Code fills in. A server can check its tokens but mint none for cfn or for another
server, and none is the seed's guessable agent-ID-TASK-TIME.

cfn's own server runs inside the agent (a stdio child of Claude Code, with the agent's
environment), so it acts with the agent's credentials only (cfn.mcp.server.Scope).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable

from cfn import tokens
from cfn.config import OWN_MCP_SERVER, Config, mcp_token_variable
from cfn.errors import InvalidInput

STDIO_TOKEN_ENV = "CFN_MCP_TOKEN"  # where a stdio server finds the agent's token


def server_names(config: Config, skills: Iterable[str]) -> list[str]:
    """The servers the skills map to, in order, each once; InvalidInput for a skill the
    mapping does not know."""
    names: dict[str, None] = {}
    for skill in skills:
        if skill not in config.mcp.skills:
            raise InvalidInput(f"skill {skill!r} maps to no MCP server; known skills: "
                               f"{', '.join(sorted(config.mcp.skills))} (add it under "
                               "[mcp.skills] of cfn.toml)")
        names.update(dict.fromkeys(config.mcp.skills[skill]))
    return list(names)


def own_server(runtime: str) -> dict | None:
    """cfn's own server as the agent starts it: by this Python for a process agent (none
    when the MCP SDK is not installed: pip install 'cfn[mcp]'), by the agent image's cfn
    otherwise."""
    if runtime != "process":
        return {"type": "stdio", "command": "cfn", "args": ["mcp", "serve"]}
    if importlib.util.find_spec("mcp") is None:
        return None
    return {"type": "stdio", "command": sys.executable, "args": ["-m", "cfn", "mcp", "serve"]}


def document(config: Config, skills: Iterable[str], runtime: str) -> dict:
    """Claude Code's --mcp-config for an agent: {"mcpServers": {name: entry}}, each skill
    server's token by reference."""
    servers: dict[str, dict] = {}
    if config.agent_mcp and (own := own_server(runtime)):
        servers[OWN_MCP_SERVER] = own
    for name in server_names(config, skills):
        servers[name] = _with_token(dict(config.mcp.servers[name]),
                                    "${" + mcp_token_variable(name) + "}")
    return {"mcpServers": servers}


def token_env(config: Config, skills: Iterable[str], *, secret: str, agent_id: str,
              task_id: str, role: str, ttl: float) -> dict[str, str]:
    """The agent's tokens for its skill servers, as the environment variables the document
    names."""
    return {mcp_token_variable(name): tokens.issue(
        tokens.mcp_key(secret, name), agent_id=agent_id, task_id=task_id, ttl=ttl, role=role,
        audience=tokens.mcp_audience(name)) for name in server_names(config, skills)}


def _with_token(entry: dict, reference: str) -> dict:
    """The entry with the agent's token: a stdio server's CFN_MCP_TOKEN, an http or sse
    server's bearer token."""
    if entry["type"] == "stdio":
        return {**entry, "env": {**entry.get("env", {}), STDIO_TOKEN_ENV: reference}}
    return {**entry, "headers": {**entry.get("headers", {}),
                                 "Authorization": f"Bearer {reference}"}}
