"""cfn as an MCP server (issue 17, first part): `cfn mcp serve` over stdio (docs/mcp.md)."""
