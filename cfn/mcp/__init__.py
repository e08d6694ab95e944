"""cfn and MCP: `cfn mcp serve` over stdio (server), and the MCP servers spawned agents are
given by skill (agents); docs/mcp.md."""
