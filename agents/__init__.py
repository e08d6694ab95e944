"""Agent profiles (TOML), shipped inside the package as cfn._agents (see cfn/agents/profiles.py)."""
